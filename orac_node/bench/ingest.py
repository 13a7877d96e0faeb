"""The ``ingest`` scenario: 200 satellites x 20 ms chunks = 10,000 msg/s of non-speech.

What it answers: does the node take every chunk at the rate a house full of
satellites produces, and what does a chunk cost it? Half the satellites send
digital silence, half a quiet room's noise floor (-60 dBFS); each streams
5-second sessions ending with ``end`` so every session is answered by a final
that says how many chunks the node received.

The cost is compared with a bare subscriber (aiomqtt + msgpack unpack, nothing
else; baresub.py) fed the same load on a topic the node does not hear, in the
same run, so the ratio holds on a busy machine.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiomqtt
import numpy as np
import psutil

from orac_node.audio import float_to_s16
from orac_node.client import connect, transcripts
from orac_node.wire import SAMPLE_RATE, TRANSCRIPT_FILTER, AudioChunk, AudioFormat, Final

CHUNK_MS = 20
SESSION_S = 5.0
CONNECTIONS = 4
"""Publisher connections: one aiomqtt client tops out well below 10,000 QoS 1 msg/s."""
NOISE_DBFS = -60.0


@dataclass
class IngestResult:
    """Chunks offered and taken, and CPU per chunk of the node and of a bare subscriber."""

    devices: int
    seconds: float
    chunks_sent: int
    chunks_received: int
    sessions: int
    finals: int
    offered_per_s: float
    node_cpu_us_per_chunk: float
    bare_cpu_us_per_chunk: float
    bare_received: int


def _payloads(devices: int) -> list[bytes]:
    """One 20 ms s16le chunk per device: silence or -60 dBFS noise."""
    samples = SAMPLE_RATE * CHUNK_MS // 1000
    rng = np.random.default_rng(0)
    amplitude = 10 ** (NOISE_DBFS / 20)
    out = []
    for i in range(devices):
        audio = (
            np.zeros(samples, np.float32)
            if i % 2 == 0
            else rng.normal(0, amplitude, samples).astype(np.float32)
        )
        out.append(float_to_s16(audio))
    return out


async def offer_load(
    url_host: str, port: int, *, devices: int, seconds: float, prefix: str
) -> tuple[int, int]:
    """Publish the load in real time; return (chunks sent, sessions)."""
    pcm = _payloads(devices)
    per_session = int(SESSION_S * 1000 / CHUNK_MS)
    ticks = int(seconds * 1000 / CHUNK_MS)
    sessions = [uuid.uuid4().hex[:12] for _ in range(devices)]
    sent = 0
    session_count = devices

    async def connection(index: int) -> int:
        nonlocal session_count
        mine = range(index, devices, CONNECTIONS)
        count = 0
        async with aiomqtt.Client(
            url_host,
            port,
            identifier=f"bench-ingest-{index}-{uuid.uuid4().hex[:6]}",
            max_inflight_messages=1000,
            max_queued_outgoing_messages=0,
            logger=logging.getLogger("orac_node.mqtt"),
        ) as client:
            start = time.monotonic()
            for tick in range(ticks):
                seq = tick % per_session
                last = seq == per_session - 1 or tick == ticks - 1
                publishes = []
                for device in mine:
                    chunk = AudioChunk(
                        sessions[device],
                        seq,
                        SAMPLE_RATE,
                        1,
                        AudioFormat.S16LE,
                        pcm[device],
                        end=last,
                    )
                    publishes.append(
                        client.publish(f"{prefix}/ingest-{device}/chunk", chunk.encode(), qos=1)
                    )
                await asyncio.gather(*publishes)
                count += len(publishes)
                if last:
                    for device in mine:
                        sessions[device] = uuid.uuid4().hex[:12]
                    if tick != ticks - 1:
                        session_count += len(mine)
                delay = start + (tick + 1) * CHUNK_MS / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        return count

    counts = await asyncio.gather(*(connection(i) for i in range(CONNECTIONS)))
    sent = sum(counts)
    return sent, session_count


async def bare_subscriber_cost(
    host: str, port: int, devices: int, seconds: float
) -> tuple[float, int]:
    """CPU µs per message of a bare aiomqtt + msgpack subscriber under the same load."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orac_node.bench.baresub",
        host,
        str(port),
        "bare/#",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    await proc.stdout.readline()  # "subscribed"
    sampler = psutil.Process(proc.pid)
    before = sampler.cpu_times()
    await offer_load(host, port, devices=devices, seconds=seconds, prefix="bare")
    await asyncio.sleep(1.0)
    after = sampler.cpu_times()
    proc.terminate()
    out, _ = await proc.communicate()
    received = int(out.decode().strip().splitlines()[-1])
    cpu = (after.user + after.system) - (before.user + before.system)
    return cpu / max(received, 1) * 1e6, received


async def run_ingest(url: str, node_pid: int, *, devices: int, seconds: float) -> IngestResult:
    """The node under the load, then the bare subscriber under the same load."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 1883
    async with connect(url) as listener:
        await listener.subscribe(TRANSCRIPT_FILTER, qos=1)
        return await _measure(listener, host, port, node_pid, devices=devices, seconds=seconds)


async def _measure(
    listener: aiomqtt.Client, host: str, port: int, node_pid: int, *, devices: int, seconds: float
) -> IngestResult:
    finals: list[Final] = []

    async def collect() -> None:
        async for t in transcripts(listener):
            if isinstance(t, Final) and t.device.startswith("ingest-"):
                finals.append(t)

    collecting = asyncio.create_task(collect())
    node = psutil.Process(node_pid)
    before = node.cpu_times()
    started = time.monotonic()
    sent, sessions = await offer_load(host, port, devices=devices, seconds=seconds, prefix="audio")
    wall = time.monotonic() - started
    deadline = time.monotonic() + 15
    while len(finals) < sessions and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)  # finals of the last sessions are still being gated
    after = node.cpu_times()
    collecting.cancel()
    node_cpu = (after.user + after.system) - (before.user + before.system)
    received = sum(f.chunks for f in finals)
    bare_us, bare_received = await bare_subscriber_cost(host, port, devices, seconds)
    return IngestResult(
        devices=devices,
        seconds=round(wall, 2),
        chunks_sent=sent,
        chunks_received=received,
        sessions=sessions,
        finals=len(finals),
        offered_per_s=round(sent / wall, 1),
        node_cpu_us_per_chunk=round(node_cpu / max(received, 1) * 1e6, 1),
        bare_cpu_us_per_chunk=round(bare_us, 1),
        bare_received=bare_received,
    )
