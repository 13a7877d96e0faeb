"""The ``fleet`` scenario: several nodes on one broker, one of them killed mid-run.

For each fleet size (1, then 3 nodes; ``model.threads: 1`` and one worker per
node, so the box's cores are shared fairly), on a private broker of its own
(the bench's own node stays out of it):

- **throughput**, every node up: :data:`SATELLITES` satellites send clips at
  once, as fast as the fleet takes them; the audio decoded per second of wall
  time.
- **live**: the same satellites, each streaming clips in real time one
  after another through the SDK's ``Client.stream`` (which resends a session
  whose node dies). With three nodes, one is SIGKILLed :data:`KILL_AFTER_S`
  into the run. A listener counts every final per session: a session with none
  is *missing*, one with two is *doubled*; latency is from the end of a
  clip's audio to its final at the satellite.

No targets beyond missing 0 and doubled 0: the figures go in the report's
``fleet`` extra and the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from orac_node.bench.corpus import Clip
from orac_node.client import Client, RequestTimeoutError, StreamError, connect, transcripts
from orac_node.ops.localbroker import BROKER_QUEUES, LocalBroker
from orac_node.ops.nodeproc import NodeProcess, start_node
from orac_node.wire import SAMPLE_RATE, TRANSCRIPT_FILTER, Final

log = logging.getLogger(__name__)

SIZES = (1, 3)
SATELLITES = 6
"""A large household: more satellites than nodes, so every node has several."""
ROUNDS = 4
"""Clips each satellite streams in the live part (the smoke run: one)."""
KILL_AFTER_S = 4.0
"""Into the live part: every satellite is mid-utterance or between two."""
FINAL_TIMEOUT_S = 60.0
SETTLE_S = 2.0
"""After the last final: time for a second final of any session, were there one."""
NODE_CONFIG: dict[str, Any] = {
    "model": {"threads": 1, "workers": 1},
    "cache": {"backend": "off"},  # the same clips again and again: all would be cached
    "ingest": {"device_chunks_per_s": 0, "device_audio_s_per_s": 0},  # at once: unthrottled
}


class _Finals:
    """Every final on the broker, by session."""

    def __init__(self) -> None:
        self.by_session: Counter[str] = Counter()

    async def collect(self, url: str, ready: asyncio.Event) -> None:
        async with connect(url) as mqtt:
            await mqtt.subscribe(TRANSCRIPT_FILTER, qos=1)
            ready.set()
            async for heard in transcripts(mqtt):
                if isinstance(heard, Final):
                    self.by_session[heard.session] += 1


@contextlib.asynccontextmanager
async def _fleet(
    workdir: Path, model: Path, size: int
) -> AsyncIterator[tuple[str, list[NodeProcess], _Finals]]:
    broker = LocalBroker(workdir / f"fleet-{size}-broker", extra_config=BROKER_QUEUES).start()
    nodes: list[NodeProcess] = []
    finals = _Finals()
    ready = asyncio.Event()
    listener = asyncio.create_task(finals.collect(broker.url, ready))
    try:
        for i in range(size):
            node_id = f"bench-fleet-{size}-{i}"
            nodes.append(
                await start_node(broker.url, model, workdir, node_id=node_id, config=NODE_CONFIG)
            )
        await ready.wait()
        yield broker.url, nodes, finals
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        for node in nodes:
            await node.stop()
        broker.stop()


async def _satellite(
    url: str, device: str, clips: list[Clip], *, realtime: bool, out: dict[str, float | None]
) -> None:
    """Stream ``clips`` one after another; ``out``: session -> latency ms (None: no final)."""
    async with Client(url, device=device) as client:
        for clip in clips:
            session = uuid.uuid4().hex[:12]
            out[session] = None
            started = time.monotonic()
            try:
                async for heard in client.stream(
                    clip.samples, session=session, realtime=realtime, timeout=FINAL_TIMEOUT_S
                ):
                    if isinstance(heard, Final):
                        audio_end = started + clip.samples.size / SAMPLE_RATE
                        out[session] = (time.monotonic() - max(audio_end, started)) * 1000
            except (RequestTimeoutError, StreamError) as exc:
                log.warning("%s: session %s: %s", device, session, exc)
            await asyncio.sleep(0.3)


async def _live(
    url: str, nodes: list[NodeProcess], finals: _Finals, clips: list[Clip], rounds: int
) -> dict[str, Any]:
    results: dict[str, float | None] = {}
    per_satellite = [
        [clips[(k + j * SATELLITES) % len(clips)] for j in range(rounds)] for k in range(SATELLITES)
    ]

    async def kill_one() -> str | None:
        if len(nodes) < 2:
            return None
        await asyncio.sleep(KILL_AFTER_S)
        nodes[0].process.kill()
        log.info("killed %s", nodes[0].node_id)
        return nodes[0].node_id

    killer = asyncio.create_task(kill_one())
    await asyncio.gather(
        *(
            _satellite(url, f"sat-{k}", mine, realtime=True, out=results)
            for k, mine in enumerate(per_satellite)
        )
    )
    killed = await killer
    await asyncio.sleep(SETTLE_S)
    latencies = sorted(v for v in results.values() if v is not None)
    return {
        "sessions": len(results),
        "missing": sum(finals.by_session[s] == 0 for s in results),
        "doubled": sum(finals.by_session[s] > 1 for s in results),
        "latency_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
        "latency_ms_p95": round(latencies[int(0.95 * (len(latencies) - 1))], 1)
        if latencies
        else None,
        "killed": killed,
    }


async def _throughput(url: str, clips: list[Clip], rounds: int) -> dict[str, Any]:
    results: dict[str, float | None] = {}
    chosen = [
        [clips[(k + j * SATELLITES) % len(clips)] for j in range(rounds)] for k in range(SATELLITES)
    ]
    started = time.monotonic()
    await asyncio.gather(
        *(
            _satellite(url, f"bulk-{k}", mine, realtime=False, out=results)
            for k, mine in enumerate(chosen)
        )
    )
    wall = time.monotonic() - started
    audio_s = sum(c.samples.size for mine in chosen for c in mine) / SAMPLE_RATE
    return {
        "audio_s": round(audio_s, 1),
        "wall_s": round(wall, 1),
        "x_realtime": round(audio_s / wall, 2),
        "missing": sum(v is None for v in results.values()),
    }


async def run_fleet(
    model: Path, clips: list[Clip], workdir: Path, *, smoke: bool = False
) -> dict[str, Any]:
    """Each fleet size in turn; figures by size."""
    rounds = 1 if smoke else ROUNDS
    figures: dict[str, Any] = {}
    for size in SIZES:
        async with _fleet(workdir, model, size) as (url, nodes, finals):
            bulk = await _throughput(url, clips, rounds)  # every node up
            live = await _live(url, nodes, finals, clips, rounds)  # and one killed
        figures[str(size)] = {"live": live, "throughput": bulk}
        log.info("fleet of %d: %s", size, figures[str(size)])
    return figures


def format_fleet(extra: dict[str, Any]) -> list[str]:
    """The ``fleet`` scenario's lines for the bench's table."""
    lines = ["fleet (nodes on one broker, model.threads 1 each; missing and doubled must be 0):"]
    for size, f in extra.items():
        live, bulk = f["live"], f["throughput"]
        killed = f", {live['killed']} killed mid-run" if live["killed"] else ""
        lines.append(
            f"  {size} node(s){killed}: {live['sessions']} live sessions, missing"
            f" {live['missing']}, doubled {live['doubled']}, final p50 {live['latency_ms_p50']}"
            f" ms p95 {live['latency_ms_p95']} ms; at once {bulk['x_realtime']}x real time"
        )
    return lines
