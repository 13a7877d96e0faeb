"""``orac-node bench``: one run = scenarios against a node + baselines + report.

Order matters on a small machine: the node is measured first (nothing else
decoding), then it is stopped and the direct-decode baselines run on the same
clips, so neither competes with the other for the cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import math
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from orac_node import __version__
from orac_node.bench.accuracy import (
    OWN_WYOMING,
    AccuracyRow,
    GridEntry,
    as_json,
    format_accuracy,
    offline_grid,
    peer_speech_latency_ms,
    plot_accuracy,
    streamed_rows,
)
from orac_node.bench.baselines import run_baselines
from orac_node.bench.corpus import Clip, load_corpus
from orac_node.bench.ingest import NOISE_DBFS, IngestLoad
from orac_node.bench.report import (
    Target,
    accuracy_targets,
    check_targets,
    ends_at_speech,
    format_table,
    plot,
    summarize,
    write_json,
    wyoming_targets,
)
from orac_node.bench.runner import (
    DICTATION_SILENCE_MS,
    DICTATION_TOPIC,
    NODE_ID,
    ScenarioResult,
    bench_broker,
    run_scenarios,
    temporary_workdir,
)
from orac_node.bench.scoring import wer
from orac_node.config import load_config
from orac_node.decode.engine import WhisperEngine
from orac_node.ops.localbroker import free_port
from orac_node.ops.localredis import LocalRedis
from orac_node.ops.nodeproc import NodeProcess, start_node

log = logging.getLogger(__name__)

PRESETS = {
    "quick": ["single"],
    "standard": ["single", "concurrent-4", "burst"],
    "accuracy": ["single", "at-once", "accuracy"],
    "full": [
        "single",
        "concurrent-4",
        "concurrent-8",
        "burst",
        "throughput",
        "ingest",
        "dictation",
    ],
}
SMOKE_CLIPS = 3


@dataclass(frozen=True)
class BenchSettings:
    """What one ``orac-node bench`` run does."""

    audio: list[Path]
    model: Path
    scenarios: list[str]
    broker: str | None = None
    node_config: Path | None = None
    compare_wyoming: str | None = None
    smoke: bool = False
    out: Path = Path("bench-results.json")
    plot: Path | None = Path("bench-results.png")
    baselines: bool = True
    soak_minutes: float = 10.0
    ingest_seconds: float = 12.0
    ingest_devices: int = 200
    ingest_noise_dbfs: float = NOISE_DBFS
    accuracy_grid: tuple[str, ...] = ()  # MODEL:BEAM entries; () = the model greedy and at beam


def expand(scenarios: list[str]) -> list[str]:
    """Presets to scenario names, in order, without repeats."""
    names: list[str] = []
    for name in scenarios:
        for item in PRESETS.get(name, [name]):
            if item not in names:
                names.append(item)
    return names


def _node_config(settings: BenchSettings) -> tuple[dict[str, Any], str | None]:
    """The bench node's config, and the address of its own Wyoming server (if compared)."""
    # The node gets the file's contents as its config; the bench reads the same
    # settings (threads, decode options) for its baselines.
    config_data: dict[str, Any] = {}
    if settings.node_config:
        config_data = yaml.safe_load(settings.node_config.read_text()) or {}
    ingest = config_data.setdefault("ingest", {})
    # `throughput` streams audio as fast as the node takes it, which a fast machine
    # would otherwise see throttled by the per-device audio limit (its file can say).
    ingest.setdefault("device_audio_s_per_s", 0)
    # `at-once` sends ~90 recordings back to back from one device, as fast as the broker
    # takes them: ~180 messages/s, over the per-device message limit (150/s), which
    # would refuse its later sessions (rate_limited) as it should refuse such a device.
    ingest.setdefault("device_chunks_per_s", 0)
    # Scenarios stream the same clips again and again: cached finals would not be decoded.
    config_data.setdefault("cache", {}).setdefault("backend", "off")
    # `consumers` posts webhooks to a receiver on 127.0.0.1, which the default allowlist
    # refuses (loopback); a quick first retry keeps a lost POST from dominating its lag.
    webhooks = config_data.setdefault("webhooks", {})
    webhooks.setdefault("allow", ["127.0.0.0/8"])
    webhooks.setdefault("backoff_initial_s", 0.2)
    # Read speech is streamed as dictation, on a topic whose endpoint waits out its pauses.
    topics = config_data.setdefault("registry", {}).setdefault("topics", {})
    topics.setdefault(DICTATION_TOPIC, {"silence_ms": DICTATION_SILENCE_MS})
    own_uri = None
    if settings.compare_wyoming:  # the node's own Wyoming server: the third column
        wyoming = config_data.setdefault("wyoming", {})
        wyoming.setdefault("uri", f"tcp://127.0.0.1:{free_port()}")
        wyoming.setdefault("zeroconf", False)
        own_uri = wyoming["uri"]
    return config_data, own_uri


async def run(settings: BenchSettings) -> dict[str, Any]:
    """Run the benchmark; return the report (also written to ``settings.out``)."""
    clips = await asyncio.to_thread(load_corpus, settings.audio)
    if settings.smoke:
        clips = clips[:SMOKE_CLIPS]
    config_data, own_uri = _node_config(settings)
    config = load_config(None, config_data)
    scenarios = expand(settings.scenarios)
    grid = _grid(settings, config) if "accuracy" in scenarios else []
    peer_results: list[tuple[str, Clip, Any]] = []
    own_results: list[tuple[str, Clip, Any]] = []  # the same clips to the node over Wyoming
    peer = None
    if settings.compare_wyoming and own_uri:
        peer = _peer([(settings.compare_wyoming, peer_results), (own_uri, own_results)])
    peer_server = await _describe_peer(settings.compare_wyoming)
    with temporary_workdir() as tmp, contextlib.ExitStack() as stack:
        jobs_redis = None
        if "jobs" in scenarios:  # a private Redis for the job queue, the node taking jobs
            redis = LocalRedis(Path(tmp) / "redis").start()
            stack.callback(redis.stop)
            jobs_redis = redis.url
            config_data["jobs"] = {"enabled": True, "redis_url": jobs_redis}
        async with bench_broker(settings.broker, Path(tmp)) as url:
            node = await start_node(
                url, settings.model, Path(tmp), node_id=NODE_ID, config=config_data
            )
            log.info("node ready in %.2f s", node.time_to_ready_s)
            try:
                results = await run_scenarios(
                    url,
                    node,
                    clips,
                    scenarios,
                    peer=peer,
                    ingest_load=IngestLoad(20, 3.0)
                    if settings.smoke
                    else IngestLoad(
                        settings.ingest_devices, settings.ingest_seconds, settings.ingest_noise_dbfs
                    ),
                    soak_minutes=0.25 if settings.smoke else settings.soak_minutes,
                    jobs_redis=jobs_redis,
                    smoke=settings.smoke,
                    model=settings.model,
                    workdir=Path(tmp),
                )
            finally:
                code = await node.stop()
            if code != 0:
                log.error("node exited with %d:\n%s", code, node.log_path.read_text())
    model_load_s = await asyncio.to_thread(_model_load_time, settings.model, config)
    baselines = (
        await asyncio.to_thread(run_baselines, clips, settings.model, config)
        if settings.baselines
        else []
    )
    # Per-set accuracy of whatever streamed (single, at-once) and of the peer beside it;
    # the offline grid only when `accuracy` asks for it (it decodes every clip per entry).
    accuracy = streamed_rows(results, peer_results, peer_server, own_results)
    if "accuracy" in scenarios:
        models = {WhisperEngine.name_of(settings.model): settings.model, **config.model.extra}
        accuracy += await asyncio.to_thread(offline_grid, clips, config, models, grid)
    return _report(
        settings,
        clips=clips,
        scenarios=scenarios,
        results=results,
        baselines=baselines,
        peer_results=peer_results,
        own_results=own_results,
        own_uri=own_uri,
        peer_server=peer_server,
        node=node,
        model_load_s=model_load_s,
        accuracy=accuracy,
    )


def _grid(settings: BenchSettings, config: Any) -> list[GridEntry]:  # noqa: ANN401
    """The offline decoders of ``accuracy``: as asked, else the node's model greedy and beam."""
    if settings.accuracy_grid:
        return [GridEntry.parse(text) for text in settings.accuracy_grid]
    name = WhisperEngine.name_of(settings.model)
    beams = dict.fromkeys([1, config.decode.beam_size])
    return [GridEntry(name, beam) for beam in beams]


def _peer(servers: list[tuple[str, list[tuple[str, Clip, Any]]]]) -> Any:  # noqa: ANN401
    """Send each clip to every Wyoming server in turn (never at once: each gets the box)."""
    from orac_node.bench.wyoming_peer import wyoming_transcribe  # noqa: PLC0415

    async def send(clip: Clip, *, scenario: str, realtime: bool) -> None:
        for uri, sink in servers:
            result = await wyoming_transcribe(uri, clip.samples, realtime=realtime)
            sink.append((scenario, clip, result))

    return send


async def _describe_peer(uri: str | None) -> str | None:
    """What the peer runs (program and model), for the report; fails early if unreachable."""
    if uri is None:
        return None
    from orac_node.bench.wyoming_peer import wyoming_describe  # noqa: PLC0415

    return await wyoming_describe(uri)


def _model_load_time(model: Path, config: Any) -> float:  # noqa: ANN401
    """Seconds to load and warm one engine, as the node does before ``ready``."""
    started = time.perf_counter()
    engine = WhisperEngine(model, threads=config.model.resolved_threads())
    engine.warm_up()
    return time.perf_counter() - started


def _peer_summary(
    uri: str | None,
    peer_results: list[tuple[str, Clip, Any]],
    server: str | None,
    scenario: str,
) -> dict[str, Any] | None:
    """The peer's latency and WER on the clips it got in ``scenario``."""
    got = [(c, p) for name, c, p in peer_results if name == scenario]
    if not got:
        return None
    latencies = sorted(p.latency_ms for _, p in got)
    at_speech = [p.latency_ms for c, p in got if ends_at_speech(c)]
    realtime = scenario == "single"  # the peer is sent each scenario's way (run_scenarios)
    return {
        "speech_latency_ms_p50": statistics.median(
            peer_speech_latency_ms(c, p, realtime=realtime) for c, p in got
        ),
        "uri": uri,
        "server": server,
        "utterances": len(got),
        "latency_ms_p50": statistics.median(latencies),
        # P0's peer side, on the clips whose `end` is their end of speech (report.py)
        "ends_at_speech_latency_ms_p50": statistics.median(at_speech) if at_speech else None,
        "latency_ms_p95": latencies[max(0, math.ceil(0.95 * len(latencies)) - 1)],
        "wer": wer(
            [c.reference for c, _ in got if c.reference],
            [p.text for c, p in got if c.reference],
        ),
    }


def _report(
    settings: BenchSettings,
    *,
    clips: list[Clip],
    scenarios: list[str],
    results: list[ScenarioResult],
    baselines: list[Any],
    peer_results: list[tuple[str, Clip, Any]],
    own_results: list[tuple[str, Clip, Any]],
    own_uri: str | None,
    peer_server: str | None,
    node: NodeProcess,
    model_load_s: float,
    accuracy: list[AccuracyRow],
) -> dict[str, Any]:
    summaries = {r.name: summarize(r) for r in results}
    uri = settings.compare_wyoming
    peer = _peer_summary(uri, peer_results, peer_server, "single")
    peer_at_once = _peer_summary(uri, peer_results, peer_server, "at-once")
    own = {
        scenario: _peer_summary(own_uri, own_results, OWN_WYOMING, scenario)
        for scenario in ("single", "at-once")
    }
    startup = {"time_to_ready_s": node.time_to_ready_s, "model_load_s": model_load_s}
    targets: list[Target] = [
        *check_targets(results, summaries, baselines, peer, startup),
        *accuracy_targets(summaries, peer, peer_at_once, accuracy),
        *wyoming_targets(own, {"single": peer, "at-once": peer_at_once}, accuracy),
    ]
    baseline_summary = {}
    if baselines:
        by_name = {c.name: c for c in clips}
        refs = [by_name[b.clip].reference or "" for b in baselines if by_name[b.clip].reference]
        with_ref = [b for b in baselines if by_name[b.clip].reference]
        baseline_summary = {
            "default_ms_p50": statistics.median(b.default_ms for b in baselines),
            "node_params_ms_p50": statistics.median(b.node_ms for b in baselines),
            "default_wer": wer(refs, [b.default_text for b in with_ref]),
            "node_params_wer": wer(refs, [b.node_text for b in with_ref]),
        }
    report: dict[str, Any] = {
        "version": __version__,
        "date": datetime.date.today().isoformat(),
        "command": " ".join(sys.argv),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "settings": asdict(settings),
        "startup": startup,
        "scenarios": {name: asdict(s) for name, s in summaries.items()},
        "baselines": baseline_summary,
        "baseline_clips": [asdict(b) for b in baselines],
        "peer": peer,
        "peer_at_once": peer_at_once,
        "wyoming": own,  # the node's own Wyoming server, sent the same clips the same way
        "accuracy": as_json(accuracy),
        "targets": [asdict(t) for t in targets],
        "utterances": [
            {
                "scenario": r.scenario,
                "clip": r.clip.name,
                "device": r.device,
                "latency_ms": round(r.latency_ms, 1) if r.final else None,
                "text": r.final.text if r.final else None,
                "reference": r.clip.reference,
            }
            for result in results
            for r in result.records
        ],
    }
    write_json(settings.out, report)
    if settings.plot is not None:
        plot(settings.plot, results)
        if accuracy:
            plot_accuracy(settings.plot.with_name(f"{settings.plot.stem}-accuracy.png"), accuracy)
    print(format_table(summaries, targets))
    if accuracy:
        print("\naccuracy (WER: lower is better; values found, all right: higher)")
        print(format_accuracy(accuracy))
    if baseline_summary:
        print(
            f"\nbaselines (direct pywhispercpp, same clips): default params p50 "
            f"{baseline_summary['default_ms_p50']:.0f} ms, node params p50 "
            f"{baseline_summary['node_params_ms_p50']:.0f} ms"
        )
    for label, summary in (
        ("in real time", peer),
        ("at once", peer_at_once),
        ("in real time", own["single"]),
        ("at once", own["at-once"]),
    ):
        if summary:
            print(
                f"{summary['server']} at {summary['uri']}, {label}: final after audio-stop"
                f" p50 {summary['latency_ms_p50']:.0f} ms, WER {summary['wer']:.1%}"
            )
    print(f"startup: ready after {node.time_to_ready_s:.2f} s; model load {model_load_s:.2f} s")
    print(f"results: {settings.out}" + (f", plot: {settings.plot}" if settings.plot else ""))
    return report
