"""Running benchmark scenarios against a real node process over a real broker.

Scenarios (each streams real audio in real time unless noted):

- ``single``: one satellite, one utterance at a time (the peer, when given,
  gets the same utterance right after, also in real time, so both see the
  same machine state).
- ``at-once``: the same, each utterance sent as fast as the broker takes it (a
  recording, a client that buffered, a satellite catching up); the peer gets
  it at once too.
- ``concurrent-4`` / ``concurrent-8``: N satellites with staggered starts,
  each streaming its share of the clips back to back.
- ``burst``: 20 utterances timed so that they all end at the same instant.
- ``throughput``: 8 satellites streaming as fast as the node takes it, for the
  aggregate audio-seconds per second the node can finalize.
- ``ingest``: 200 satellites of non-speech at 10,000 msg/s (ingest.py).
- ``soak``: 8 satellites talking (with a 0.3 s pause between utterances) for
  ``soak_minutes``: lost utterances and memory drift (RSS sampled every 0.5 s).
- ``dictation``: one 28 s utterance made of the referenced clips (pauses
  shortened), for what partials cost as an utterance grows (buffer trimming).
- ``flood``: the ``single`` clips once alone and once while another device
  floods at 10x a satellite's rate, for what a throttled flood costs (flood.py).
- ``consumers``: ORAC Core's interfaces on the same node: ``describe`` and
  ``retranscribe`` round trips, and webhook delivery of the clips' finals
  (streamed as fast as the node takes them) to a receiver in this process
  (consumers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from orac_node.bench.consumers import run_consumers
from orac_node.bench.corpus import Clip, dictation
from orac_node.bench.fleet import run_fleet
from orac_node.bench.flood import run_flood
from orac_node.bench.ingest import IngestLoad, run_ingest
from orac_node.bench.jobs import run_jobs
from orac_node.bench.procstats import ProcessSampler, ProcessStats
from orac_node.bench.rooms import run_rooms
from orac_node.bench.streams import Collector, StreamRecord, stream_clip
from orac_node.client import connect
from orac_node.ops.localbroker import BROKER_QUEUES, LocalBroker
from orac_node.ops.nodeproc import NodeProcess

log = logging.getLogger(__name__)

P4_LOAD = IngestLoad()
"""200 satellites for 12 s, half of them a quiet room's noise: the P4 target's load."""

NODE_ID = "bench-node"
BURST_SIZE = 20
DICTATION_S = 28.0
"""Just under the node's default 30 s utterance limit."""
GAP_S = 0.3
"""Pause between a satellite's utterances (a user does not speak back to back)."""
DICTATION_SETS = frozenset({"speech"})
"""Sets of read speech (LibriVox passages, jfk.wav): dictation, not commands. They
pause for a second between sentences, where a voice assistant's 0.7 s endpoint
would end the utterance and refuse the rest as late audio; they are streamed on
:data:`DICTATION_TOPIC`, whose endpoint waits as a dictation app's would."""
DICTATION_TOPIC = "dictation"
DICTATION_SILENCE_MS = 1500
"""The dictation topic's end-of-utterance silence (TopicConfig.silence_ms): longer
than the shared read speech's pauses (about 1 s)."""
SOAK_SATELLITES = 8
"""A large household all talking at once, for as long as the soak runs."""


OFFLINE_SCENARIOS = {"accuracy"}
"""Scenarios measured without the node (accuracy.py), after it has stopped."""
FIGURE_SCENARIOS = {"flood": run_flood, "consumers": run_consumers, "rooms": run_rooms}
"""Scenarios of their own module that return their streams and figures for ``extra``."""


@dataclass
class ScenarioResult:
    """One scenario's streams and what the node process used meanwhile."""

    name: str
    records: list[StreamRecord]
    stats: ProcessStats
    wall_s: float
    extra: dict[str, Any] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def bench_broker(url: str | None, workdir: Path) -> Any:  # noqa: ANN401
    """The broker to use: the given one, or a private Mosquitto."""
    if url is not None:
        yield url
        return
    broker = LocalBroker(workdir / "broker", extra_config=BROKER_QUEUES).start()
    try:
        yield broker.url
    finally:
        broker.stop()


async def _single(
    mqtt: aiomqtt.Client,
    collector: Collector,
    clips: list[Clip],
    peer: Any,  # noqa: ANN401
    *,
    realtime: bool,
) -> list[StreamRecord]:
    """One satellite, one utterance at a time; the peer gets each one the same way."""
    scenario = "single" if realtime else "at-once"
    records = []
    for clip in clips:
        topic = DICTATION_TOPIC if clip.set_name in DICTATION_SETS else None
        records.append(
            await stream_clip(
                mqtt,
                collector,
                clip,
                scenario=scenario,
                device="sat-0",
                realtime=realtime,
                topic=topic,
            )
        )
        if peer is not None:
            await peer(clip, scenario=scenario, realtime=realtime)
        await asyncio.sleep(GAP_S)
    return records


async def _concurrent(
    mqtt: aiomqtt.Client, collector: Collector, clips: list[Clip], n: int, *, realtime: bool
) -> list[StreamRecord]:
    name = f"concurrent-{n}" if realtime else "throughput"
    mean_s = sum(c.seconds for c in clips) / len(clips)

    async def satellite(i: int) -> list[StreamRecord]:
        own = clips[i::n] or clips[i % len(clips) :][:1]
        out = []
        start = time.monotonic() + (i * mean_s / n if realtime else 0.0)
        for clip in own:
            record = await stream_clip(
                mqtt,
                collector,
                clip,
                scenario=name,
                device=f"sat-{i}",
                start_at=start,
                realtime=realtime,
                chunk_ms=20 if realtime else 1000,
            )
            out.append(record)
            start = time.monotonic() + (GAP_S if realtime else 0.0)
        return out

    per_satellite = await asyncio.gather(*(satellite(i) for i in range(n)))
    return [record for records in per_satellite for record in records]


async def _burst(
    mqtt: aiomqtt.Client, collector: Collector, clips: list[Clip]
) -> list[StreamRecord]:
    chosen = [clips[i % len(clips)] for i in range(BURST_SIZE)]
    longest = max(c.seconds for c in chosen)
    end_at = time.monotonic() + longest + 0.5
    tasks = [
        stream_clip(
            mqtt,
            collector,
            clip,
            scenario="burst",
            device=f"burst-{i}",
            start_at=end_at - clip.seconds,
        )
        for i, clip in enumerate(chosen)
    ]
    return list(await asyncio.gather(*tasks))


async def _soak(
    mqtt: aiomqtt.Client, collector: Collector, clips: list[Clip], seconds: float
) -> list[StreamRecord]:
    deadline = time.monotonic() + seconds

    async def satellite(i: int) -> list[StreamRecord]:
        out = []
        k = i
        while time.monotonic() < deadline:
            clip = clips[k % len(clips)]
            out.append(
                await stream_clip(mqtt, collector, clip, scenario="soak", device=f"soak-{i}")
            )
            k += SOAK_SATELLITES
            await asyncio.sleep(GAP_S)
        return out

    per_satellite = await asyncio.gather(*(satellite(i) for i in range(SOAK_SATELLITES)))
    return [record for records in per_satellite for record in records]


async def _dictation(
    mqtt: aiomqtt.Client, collector: Collector, clips: list[Clip]
) -> list[StreamRecord]:
    long = dictation(clips, DICTATION_S)
    if long is None:
        log.warning("dictation skipped: it needs 14 s of clips with references")
        return []
    return [await stream_clip(mqtt, collector, long, scenario="dictation", device="d-0")]


@dataclass(frozen=True)
class _Run:
    """What every scenario of one bench run is given."""

    url: str
    node: NodeProcess | None
    pub: aiomqtt.Client
    collector: Collector
    clips: list[Clip]
    peer: Any
    ingest_load: IngestLoad
    soak_minutes: float
    jobs_redis: str | None
    smoke: bool
    model: Path
    workdir: Path


async def _scenario(name: str, run: _Run) -> tuple[list[StreamRecord], dict[str, Any]]:
    """One scenario's streams, and its figures for ``extra``."""
    pub, collector, clips = run.pub, run.collector, run.clips
    streams: dict[str, Callable[[], Awaitable[list[StreamRecord]]]] = {
        "single": lambda: _single(pub, collector, clips, run.peer, realtime=True),
        "at-once": lambda: _single(pub, collector, clips, run.peer, realtime=False),
        "soak": lambda: _soak(pub, collector, clips, run.soak_minutes * 60),
        "throughput": lambda: _concurrent(pub, collector, clips, 8, realtime=False),
        "burst": lambda: _burst(pub, collector, clips),
        "dictation": lambda: _dictation(pub, collector, clips),
    }
    if name.startswith("concurrent-"):
        n = int(name.split("-", 1)[1])
        streams[name] = lambda: _concurrent(pub, collector, clips, n, realtime=True)
    if name in streams:
        return await streams[name](), {}
    if name in FIGURE_SCENARIOS:
        return await FIGURE_SCENARIOS[name](run.url, pub, collector, clips)
    if name == "fleet":
        return [], await run_fleet(run.model, clips, run.workdir, smoke=run.smoke)
    if name == "jobs":
        assert run.jobs_redis is not None, "jobs needs the node's Redis: let bench start it"
        return [], await run_jobs(run.url, run.jobs_redis, clips, smoke=run.smoke)
    if name == "ingest":
        assert run.node is not None, "ingest measures the node process: let bench start it"
        ingest = await run_ingest(run.url, run.node.process.pid, run.ingest_load)
        return [], dataclasses.asdict(ingest)
    raise ValueError(f"unknown scenario {name!r}")


async def run_scenarios(
    url: str,
    node: NodeProcess | None,
    clips: list[Clip],
    scenarios: list[str],
    *,
    peer: Any = None,  # noqa: ANN401 - async callable(clip, *, scenario, realtime) or None
    ingest_load: IngestLoad = P4_LOAD,
    soak_minutes: float = 10.0,
    jobs_redis: str | None = None,
    smoke: bool = False,
    model: Path = Path(),
    workdir: Path = Path(),
) -> list[ScenarioResult]:
    """Run each scenario in turn against the node at ``url``."""
    results = []
    async with connect(url) as pub, connect(url) as sub:
        collector = Collector(sub)
        await collector.start()
        collecting = asyncio.create_task(collector.run(), name="collector")
        run = _Run(
            url,
            node,
            pub,
            collector,
            clips,
            peer,
            ingest_load,
            soak_minutes,
            jobs_redis,
            smoke,
            model,
            workdir,
        )
        try:
            # Offline ones are measured in-process once the node has stopped (main.py).
            for name in [n for n in scenarios if n not in OFFLINE_SCENARIOS]:
                sampler = ProcessSampler(node.process.pid) if node else None
                if sampler:
                    sampler.start()
                started = time.monotonic()
                log.info("scenario %s", name)
                records, extra = await _scenario(name, run)
                wall = time.monotonic() - started
                stats = await sampler.stop() if sampler else ProcessStats(wall_s=wall)
                results.append(ScenarioResult(name, records, stats, wall, extra))
                await asyncio.sleep(1.0)  # let stragglers land before the next scenario
        finally:
            collecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collecting
    return results


def temporary_workdir() -> tempfile.TemporaryDirectory[str]:
    """Where the bench keeps its broker and node files."""
    return tempfile.TemporaryDirectory(prefix="orac-bench-")
