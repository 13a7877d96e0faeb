"""The ``ingest`` scenario: 200 satellites x 20 ms chunks = 10,000 msg/s of non-speech.

What it answers: offered more than it can take, does the node keep every
session it admitted whole and refuse the rest up front (issue 13's overload
target), and what does a chunk cost it? Half the satellites send digital
silence, half a quiet room's noise floor (-60 dBFS); each streams 5-second
sessions ending with ``end``. Every session is answered: by a final that says
how many chunks the node took (complete when it took every chunk sent), or by
an ``overloaded`` error (the refused; the time from the session's first chunk
to the error is how long its satellite waited to be told). A session with
neither is lost.

The cost is compared with a bare subscriber (aiomqtt + msgpack unpack, nothing
else; baresub.py) fed the same load on a topic the node does not hear, in the
same run, so the ratio holds on a busy machine. The node's CPU is divided by
every chunk sent to it, refused sessions' included: it receives them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiomqtt
import numpy as np
import psutil

from orac_node.audio import float_to_s16
from orac_node.client import connect
from orac_node.errors import ContractError
from orac_node.wire import (
    SAMPLE_RATE,
    TRANSCRIPT_FILTER,
    AudioChunk,
    AudioFormat,
    ErrorCode,
    ErrorReport,
    Final,
    decode_transcript,
    error_topic,
)

CHUNK_MS = 20
SESSION_S = 5.0
CONNECTIONS = 4
"""Publisher connections: one aiomqtt client tops out well below 10,000 QoS 1 msg/s."""
NOISE_DBFS = -60.0
"""A quiet room's noise floor: below the VAD's quiet gate (vad.QUIET_RMS), so the node
skips Silero for it, as for most of a satellite's audio. -44 dBFS (a louder room)
makes the VAD score every window: ``--ingest-noise-dbfs``."""
TOLD_WITHIN_MS = 1000.0
"""The overload target: a refused satellite hears so within a second."""
ANSWER_WAIT_S = 30.0
"""After the load, how long the last sessions' finals and errors may take to come:
a node that fell behind answers late, and late is measured, not counted lost."""


@dataclass
class IngestResult:
    """What became of the sessions offered, and CPU per chunk of the node and a bare subscriber."""

    devices: int
    noise_dbfs: float
    seconds: float
    chunks_sent: int
    offered_per_s: float
    sessions: int
    admitted: int  # answered by a final
    complete: int  # ... that took every chunk sent
    refused: int  # answered by an `overloaded` error
    lost: int  # answered by neither
    other_errors: int
    told_ms_p50: float | None  # first chunk sent -> `overloaded` received
    told_ms_p95: float | None
    told_ms_max: float | None
    told_late: int  # refused sessions told after more than a second
    chunks_received: int  # chunks the finals say the node took
    node_cpu_us_per_chunk: float  # node CPU / chunks sent (it receives them all)
    bare_cpu_us_per_chunk: float
    bare_received: int


@dataclass(frozen=True)
class IngestLoad:
    """How many satellites, for how long, and how loud the noisy half's noise is."""

    devices: int = 200
    seconds: float = 12.0
    noise_dbfs: float = NOISE_DBFS


def _payloads(devices: int, noise_dbfs: float) -> list[bytes]:
    """One 20 ms s16le chunk per device: silence or -60 dBFS noise."""
    samples = SAMPLE_RATE * CHUNK_MS // 1000
    rng = np.random.default_rng(0)
    amplitude = 10 ** (noise_dbfs / 20)
    out = []
    for i in range(devices):
        audio = (
            np.zeros(samples, np.float32)
            if i % 2 == 0
            else rng.normal(0, amplitude, samples).astype(np.float32)
        )
        out.append(float_to_s16(audio))
    return out


@dataclass
class Offered:
    """What the satellites sent: chunks per session, and when each session began."""

    chunks: int = 0
    sessions: dict[tuple[str, str], int] = field(default_factory=dict)  # -> chunks sent
    began: dict[tuple[str, str], float] = field(default_factory=dict)  # -> monotonic


async def offer_load(url_host: str, port: int, load: IngestLoad, *, prefix: str) -> Offered:
    """Publish the load in real time; return what was sent."""
    devices, seconds = load.devices, load.seconds
    pcm = _payloads(devices, load.noise_dbfs)
    per_session = int(SESSION_S * 1000 / CHUNK_MS)
    ticks = int(seconds * 1000 / CHUNK_MS)
    sessions = [uuid.uuid4().hex[:12] for _ in range(devices)]
    offered = Offered()

    async def connection(index: int) -> None:
        mine = range(index, devices, CONNECTIONS)
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
                    key = (f"ingest-{device}", sessions[device])
                    if seq == 0:
                        offered.began[key] = time.monotonic()
                    offered.sessions[key] = seq + 1
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
                offered.chunks += len(publishes)
                if last:
                    for device in mine:
                        sessions[device] = uuid.uuid4().hex[:12]
                delay = start + (tick + 1) * CHUNK_MS / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)

    await asyncio.gather(*(connection(i) for i in range(CONNECTIONS)))
    return offered


async def bare_subscriber_cost(host: str, port: int, load: IngestLoad) -> tuple[float, int]:
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
    await offer_load(host, port, load, prefix="bare")
    await asyncio.sleep(1.0)
    after = sampler.cpu_times()
    proc.terminate()
    out, _ = await proc.communicate()
    received = int(out.decode().strip().splitlines()[-1])
    cpu = (after.user + after.system) - (before.user + before.system)
    return cpu / max(received, 1) * 1e6, received


async def run_ingest(url: str, node_pid: int, load: IngestLoad) -> IngestResult:
    """The node under the load, then the bare subscriber under the same load."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 1883
    async with connect(url) as listener:
        await listener.subscribe(TRANSCRIPT_FILTER, qos=1)
        await listener.subscribe(error_topic("+"), qos=1)
        return await _measure(listener, host, port, node_pid, load)


async def _measure(
    listener: aiomqtt.Client, host: str, port: int, node_pid: int, load: IngestLoad
) -> IngestResult:
    finals: dict[tuple[str, str], Final] = {}
    errors: dict[tuple[str, str], tuple[str, float]] = {}  # -> (code, received at)

    async def collect() -> None:
        async for message in listener.messages:
            if not isinstance(message.payload, bytes):
                continue
            with contextlib.suppress(ContractError):
                if message.topic.matches(TRANSCRIPT_FILTER):
                    t = decode_transcript(message.payload)
                    if isinstance(t, Final) and t.device.startswith("ingest-"):
                        finals[(t.device, t.session)] = t
                else:
                    report = ErrorReport.decode(message.payload)
                    if report.session is not None:
                        key = (report.device, report.session)
                        errors.setdefault(key, (report.code, time.monotonic()))

    collecting = asyncio.create_task(collect())
    node = psutil.Process(node_pid)
    before = node.cpu_times()
    started = time.monotonic()
    offered = await offer_load(host, port, load, prefix="audio")
    wall = time.monotonic() - started
    deadline = time.monotonic() + ANSWER_WAIT_S
    answered = offered.sessions.keys()
    while time.monotonic() < deadline and not answered <= finals.keys() | errors.keys():  # noqa: ASYNC110
        await asyncio.sleep(0.1)  # finals of the last sessions are still being gated
    after = node.cpu_times()
    collecting.cancel()
    node_cpu = (after.user + after.system) - (before.user + before.system)
    bare_us, bare_received = await bare_subscriber_cost(host, port, load)
    refused = {k for k, (code, _) in errors.items() if code == ErrorCode.OVERLOADED}
    told_ms = [(errors[k][1] - offered.began[k]) * 1000 for k in refused if k in offered.began]
    complete = [
        k
        for k, final in finals.items()
        if k in offered.sessions and final.chunks == offered.sessions[k] and not final.incomplete
    ]
    return IngestResult(
        devices=load.devices,
        noise_dbfs=load.noise_dbfs,
        seconds=round(wall, 2),
        chunks_sent=offered.chunks,
        offered_per_s=round(offered.chunks / wall, 1),
        sessions=len(offered.sessions),
        admitted=len(finals.keys() & offered.sessions.keys()),
        complete=len(complete),
        refused=len(refused),
        lost=len(offered.sessions.keys() - finals.keys() - errors.keys()),
        other_errors=len(errors.keys() - refused),
        told_ms_p50=round(float(np.percentile(told_ms, 50)), 1) if told_ms else None,
        told_ms_p95=round(float(np.percentile(told_ms, 95)), 1) if told_ms else None,
        told_ms_max=round(max(told_ms), 1) if told_ms else None,
        told_late=sum(ms > TOLD_WITHIN_MS for ms in told_ms),
        chunks_received=sum(f.chunks for f in finals.values()),
        node_cpu_us_per_chunk=round(node_cpu / max(offered.chunks, 1) * 1e6, 1),
        bare_cpu_us_per_chunk=round(bare_us, 1),
        bare_received=bare_received,
    )
