"""The ``orac-node`` command: the node, its tools, and the ops commands.

run, send, listen, transcribe, demo, bench, compare-builds; health, metrics,
cache, topics, satellite.

Each sub-command is a thin shell over the package: argument parsing and
printing here, behaviour in the modules they call.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiomqtt
import uvloop

from orac_node import __version__, access, topicadmin
from orac_node.audio import Samples, load_audio_file
from orac_node.client import Satellite, connect, format_transcript, stream_raw, transcripts
from orac_node.config import NodeConfig, load_config
from orac_node.contract import TRANSCRIPT_FILTER, Final, transcript_topic
from orac_node.demo import run_demo
from orac_node.engine import WhisperEngine
from orac_node.errors import BrokerError, OracNodeError
from orac_node.logsetup import setup_logging
from orac_node.models import resolve_model
from orac_node.node import Node
from orac_node.offline import transcribe
from orac_node.vad import SileroVad

log = logging.getLogger("orac_node")

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
RAW_QUIET_S = 4.0
"""``send --raw`` waits this long without transcripts before exiting: longer than
the node's 3 s idle timeout, after which any open raw utterance has its final."""


def _config(args: argparse.Namespace) -> NodeConfig:
    overrides: dict[str, Any] = {}
    if getattr(args, "broker", None):
        overrides.setdefault("broker", {})["url"] = args.broker
    if getattr(args, "model", None):
        overrides.setdefault("model", {})["path"] = args.model
    if getattr(args, "node_id", None):
        overrides.setdefault("node", {})["id"] = args.node_id
    return load_config(args.config, overrides)


def model_path(config: NodeConfig) -> Path:
    """The model file the config asks for (downloaded by name when needed)."""
    spec = config.model.path or config.model.name
    return resolve_model(spec, cache_dir=config.model.cache_dir, hub_url=config.model.hub_url)


def load_engines(config: NodeConfig, path: Path) -> list[WhisperEngine]:
    """Load and warm up one engine per worker (blocking: run it in a thread)."""
    use_gpu = config.model.device != "cpu"
    engines = []
    for _ in range(config.model.resolved_workers()):
        engine = WhisperEngine(path, threads=config.model.resolved_threads(), use_gpu=use_gpu)
        engine.warm_up()
        engines.append(engine)
    return engines


# -- run ----------------------------------------------------------------------


async def _run_node(config: NodeConfig) -> None:

    path = model_path(config)
    node = Node(
        config,
        model_name=path.stem.removeprefix("ggml-"),
        load_engines=lambda: load_engines(config, path),
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, node.stop)
    try:
        await node.run()
    except* OracNodeError as group:  # e.g. a model file whisper.cpp cannot load
        raise group.exceptions[0] from None


def cmd_run(args: argparse.Namespace) -> int:
    """Run the node until SIGINT/SIGTERM."""
    config = _config(args)
    setup_logging(config.logging.level, json_format=config.logging.format == "json")
    # systemd's watchdog kills a wedged node with SIGABRT: dump every thread's stack
    # to stderr (the journal) first, so the wedge can be diagnosed afterwards.
    faulthandler.enable()
    uvloop.run(_run_node(config))
    return 0


# -- send / listen ------------------------------------------------------------

PASSWORD_ENV = "ORAC_NODE_BROKER__PASSWORD"  # noqa: S105 - a variable name, not a secret
CA_FILE_ENV = "ORAC_NODE_BROKER__CA_FILE"


def _connect(args: argparse.Namespace) -> AbstractAsyncContextManager[aiomqtt.Client]:
    """The broker connection of send/listen.

    When ``--broker`` names a user but no password, the password comes from
    ORAC_NODE_BROKER__PASSWORD (the node's own setting), which keeps it out of
    ``ps`` and shell history.
    """
    return connect(args.broker, password=os.environ.get(PASSWORD_ENV), ca_file=args.ca_file)


async def _send(args: argparse.Namespace) -> int:
    samples = await asyncio.to_thread(load_audio_file, Path(args.file))
    async with _connect(args) as mqtt:
        await mqtt.subscribe(transcript_topic(args.topic) if args.topic else TRANSCRIPT_FILTER)
        if args.raw:
            finals = await _send_raw(mqtt, args, samples)
        elif args.no_wait:
            await Satellite(mqtt, args.device).stream(
                samples,
                session=args.session,
                topic=args.topic,
                chunk_ms=args.chunk_ms,
                realtime=args.realtime,
            )
            return 0
        else:
            try:
                final = await Satellite(mqtt, args.device).say(
                    samples,
                    session=args.session,
                    topic=args.topic,
                    chunk_ms=args.chunk_ms,
                    realtime=args.realtime,
                    timeout=args.timeout,
                    on_transcript=lambda t: print(format_transcript(t), flush=True),
                )
            except TimeoutError:
                print(f"no final within {args.timeout:g} s", file=sys.stderr)
                return 1
            finals = [final]
    if args.json:
        for final in finals:
            print(json.dumps(asdict(final), indent=2))
    return 0


async def _send_raw(
    mqtt: aiomqtt.Client, args: argparse.Namespace, samples: Samples
) -> list[Final]:
    """Publish bare PCM; print this device's raw-session transcripts until they stop."""
    seen = asyncio.Event()
    finals: list[Final] = []

    async def show() -> None:
        async for t in transcripts(mqtt):
            if t.device == args.device and t.session.startswith(f"raw-{args.device}-"):
                print(format_transcript(t), flush=True)
                seen.set()
                if isinstance(t, Final):
                    finals.append(t)

    printer = asyncio.create_task(show())
    try:
        await stream_raw(mqtt, args.device, samples, args.chunk_ms, realtime=args.realtime)
        await _until_quiet(seen, RAW_QUIET_S, args.timeout)
    finally:
        printer.cancel()
    return finals


async def _until_quiet(seen: asyncio.Event, quiet_s: float, limit_s: float) -> None:
    """Return once no transcript arrived for ``quiet_s`` (raw streams have no end)."""
    async with asyncio.timeout(limit_s):
        while True:
            seen.clear()
            try:
                await asyncio.wait_for(seen.wait(), quiet_s)
            except TimeoutError:
                return


async def _listen(args: argparse.Namespace) -> int:

    async with _connect(args) as mqtt:
        await mqtt.subscribe(transcript_topic(args.topic) if args.topic else TRANSCRIPT_FILTER)
        async for t in transcripts(mqtt):
            print(json.dumps(asdict(t)) if args.json else format_transcript(t), flush=True)
    return 0


async def _health(args: argparse.Namespace) -> int:
    from orac_node import ops  # noqa: PLC0415 - only this command needs it

    try:
        async with _connect(args) as mqtt:
            statuses = await ops.read_statuses(mqtt, args.timeout)
    except BrokerError as exc:
        print(f"orac-node health: {exc}", file=sys.stderr)
        return ops.UNREACHABLE
    health = ops.judge(statuses, args.node or [])
    now = time.time()
    print(health.to_json(now) if args.json else health.to_text(now))
    return health.code


def cmd_cache_clear(args: argparse.Namespace) -> int:
    """Empty the shared (Redis) response cache the config names."""
    from redis.exceptions import RedisError  # noqa: PLC0415

    from orac_node.cache import RedisCache  # noqa: PLC0415

    config = _config(args)
    if config.cache.backend != "redis":
        print(
            f"orac-node cache clear: the {config.cache.backend} cache lives inside each node"
            " process and empties when the node restarts; only a redis cache is shared",
            file=sys.stderr,
        )
        return 1

    async def clear() -> int:
        cache = RedisCache(config.cache.redis_url, config.cache.ttl_s)
        try:
            return await cache.clear()
        finally:
            await cache.close()

    try:
        removed = asyncio.run(clear())
    except (RedisError, OSError) as exc:
        print(f"orac-node cache clear: redis: {exc}", file=sys.stderr)
        return 2
    print(
        json.dumps({"removed": removed}) if args.json else f"removed {removed} cached transcript(s)"
    )
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    """Fetch a node's /metrics and print a summary (``--json`` for scripts)."""
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    from orac_node import ops  # noqa: PLC0415

    try:
        with urllib.request.urlopen(args.url, timeout=args.timeout) as response:  # noqa: S310
            text = response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        print(f"orac-node metrics: {args.url}: {exc}", file=sys.stderr)
        return ops.UNREACHABLE
    summary = ops.summarize_metrics(text)
    print(json.dumps(summary) if args.json else ops.format_metrics(summary))
    return 0


# -- transcribe ---------------------------------------------------------------


def cmd_transcribe(args: argparse.Namespace) -> int:
    """Transcribe files locally, no broker involved."""
    config = _config(args)
    setup_logging("WARNING")
    engine = WhisperEngine(model_path(config), threads=config.model.resolved_threads())
    vad = SileroVad()
    for name in args.files:
        result = transcribe(engine, load_audio_file(Path(name)), config, vad, prompt=args.prompt)
        if args.json:
            d = result.decoding
            print(
                json.dumps(
                    {
                        "file": name,
                        "text": result.text,
                        "rejected": result.rejected,
                        "confidence": d.confidence if d else 0.0,
                        "language": d.language if d else None,
                        "audio_s": round(result.audio_s, 3),
                        "speech_s": round(result.speech_s, 3),
                        "decode_ms": d.decode_ms if d else 0.0,
                        "words": [asdict(w) for w in d.words] if d and not result.rejected else [],
                    }
                )
            )
        else:
            print(result.text if not result.rejected else f"(no text: {result.rejected})")
    return 0


def _add_transcribe_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    node_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    tr = sub.add_parser("transcribe", help="transcribe files locally (no broker)")
    node_options(tr)
    tr.add_argument("files", nargs="+", help="audio files")
    tr.add_argument("--json", action="store_true", help="one JSON object per file")
    tr.add_argument(
        "--prompt", default="", help="initial prompt (vocabulary or context, as Core sends it)"
    )
    tr.set_defaults(func=cmd_transcribe)


def cmd_bench(args: argparse.Namespace) -> int:
    """Measure the node against baselines (see orac_node/bench)."""
    from orac_node.bench.main import BenchSettings, run  # noqa: PLC0415 - needs the bench extra

    setup_logging("INFO" if args.verbose else "WARNING")
    if not args.quiet:  # one line per utterance as it completes
        logging.getLogger("orac_node.bench").setLevel(logging.INFO)
    config = _config(args)
    settings = BenchSettings(
        audio=[Path(a) for a in args.audio],
        model=model_path(config),
        scenarios=args.scenario or ["standard"],
        broker=args.broker,
        node_config=args.config,
        compare_wyoming=args.compare_wyoming,
        smoke=args.smoke,
        out=args.out,
        plot=None if args.no_plot else args.plot,
        baselines=not args.no_baselines,
        soak_minutes=args.soak_minutes,
        ingest_seconds=args.ingest_seconds,
    )
    uvloop.run(run(settings))
    return 0


def cmd_compare_builds(args: argparse.Namespace) -> int:
    """Decode the same clips with several pywhispercpp builds (see bench/builds.py)."""
    from orac_node.bench.builds import compare_builds, format_builds  # noqa: PLC0415
    from orac_node.bench.corpus import load_corpus  # noqa: PLC0415

    config = _config(args)
    clips = load_corpus([Path(a) for a in args.audio])
    pythons = args.python or [sys.executable]
    results = compare_builds(pythons, clips, model_path(config), config)
    summaries = [r.summary(clips, results[0]) for r in results]
    print(format_builds(summaries))
    if args.out:
        args.out.write_text(json.dumps(summaries, indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Broker + node + a satellite streaming samples in real time, transcripts printed."""
    return asyncio.run(run_demo(args))


# -- parser -------------------------------------------------------------------


def _add_bench_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    node_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    bench = sub.add_parser("bench", help="benchmark the node against direct decoding")
    node_options(bench)
    bench.add_argument(
        "--audio",
        action="append",
        required=True,
        help="folder of WAVs (with refs.tsv for WER); repeat",
    )
    bench.add_argument(
        "--scenario",
        action="append",
        help="single, concurrent-4, concurrent-8, burst, throughput, ingest, soak, dictation,"
        " flood, consumers, or a preset:"
        " quick, standard (default), full; repeat",
    )
    bench.add_argument("--broker", help="use this broker instead of starting one")
    bench.add_argument(
        "--compare-wyoming",
        metavar="URI",
        help="also send each single-scenario utterance to this Wyoming ASR server",
    )
    bench.add_argument("--smoke", action="store_true", help="3 clips only: does it work?")
    bench.add_argument("--soak-minutes", type=float, default=10.0, help="length of `soak`")
    bench.add_argument(
        "--ingest-seconds", type=float, default=12.0, help="length of `ingest` (>= 10 s: P4)"
    )
    bench.add_argument("--out", type=Path, default=Path("bench-results.json"))
    bench.add_argument("--plot", type=Path, default=Path("bench-results.png"))
    bench.add_argument("--no-plot", action="store_true")
    bench.add_argument("--no-baselines", action="store_true", help="skip direct decodes")
    bench.add_argument("-v", "--verbose", action="store_true", help="log everything at INFO")
    bench.add_argument("-q", "--quiet", action="store_true", help="no per-utterance lines")
    bench.set_defaults(func=cmd_bench)

    """``orac-node health`` and ``metrics``: the fleet at a glance, for people and scripts."""


def _add_ops_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    health = sub.add_parser(
        "health",
        help="every node's status; exit 0 healthy, 1 no node ready, 2 broker unreachable",
    )
    _client_broker_options(health)
    health.add_argument("--node", action="append", help="require this node to be ready (repeat)")
    health.add_argument("--json", action="store_true", help="one JSON object")
    health.add_argument("--timeout", type=float, default=3.0, help="longest wait for statuses (s)")
    health.set_defaults(func=lambda a: asyncio.run(_health(a)))

    metrics = sub.add_parser("metrics", help="a node's Prometheus metrics, summarized")
    metrics.add_argument(
        "--url",
        default="http://127.0.0.1:9464/metrics",
        help="the node's metrics endpoint (config: metrics.host/port)",
    )
    metrics.add_argument("--json", action="store_true", help="one JSON object")
    metrics.add_argument("--timeout", type=float, default=5.0, help="HTTP timeout (s)")
    metrics.set_defaults(func=cmd_metrics)

    cache = sub.add_parser("cache", help="the response cache")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True)
    clear = cache_sub.add_parser("clear", help="empty the shared (redis) cache of config.cache")
    clear.add_argument("--config", type=Path, help="YAML config file (see config.yaml)")
    clear.add_argument("--json", action="store_true", help="one JSON object")
    clear.set_defaults(func=cmd_cache_clear)

    _add_topics_parser(sub)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every sub-command."""
    parser = argparse.ArgumentParser(
        prog="orac-node", description="Streaming speech-to-text node for home voice assistants."
    )
    parser.add_argument("--version", action="version", version=f"orac-node {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def node_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help="YAML config file (see config.yaml)")
        p.add_argument("--model", help="ggml model file or name (tiny.en, base.en, ...)")

    run = sub.add_parser("run", help="run the node until SIGINT/SIGTERM")
    node_options(run)
    run.add_argument(
        "--broker", help=f"mqtt://host:port or mqtts://host:port (default {DEFAULT_BROKER})"
    )
    run.add_argument("--node-id", help="node id (status topic, MQTT client id)")
    run.set_defaults(func=cmd_run)

    send = sub.add_parser("send", help="stream an audio file as a satellite would")
    send.add_argument("device", help="device name: publishes on audio/<device>/chunk")
    send.add_argument("file", help="WAV, or anything ffmpeg reads")
    _client_broker_options(send)
    send.add_argument("--realtime", action="store_true", help="pace chunks at capture speed")
    send.add_argument(
        "--raw", action="store_true", help="publish bare PCM on audio/<device>/raw instead"
    )
    send.add_argument("--chunk-ms", type=int, default=20, help="audio per chunk (default 20)")
    send.add_argument("--session", help="session id (default: random)")
    send.add_argument("--topic", help="transcript topic (default: the node's for this device)")
    send.add_argument("--timeout", type=float, default=60.0, help="wait this long for the final")
    send.add_argument("--no-wait", action="store_true", help="do not wait for the final")
    send.add_argument("--json", action="store_true", help="print the final(s) as JSON at the end")
    send.set_defaults(func=lambda a: asyncio.run(_send(a)))

    listen = sub.add_parser("listen", help="print transcripts as they arrive")
    listen.add_argument("topic", nargs="?", help="transcript topic (default: all)")
    _client_broker_options(listen)
    listen.add_argument("--json", action="store_true", help="one JSON object per line")
    listen.set_defaults(func=lambda a: asyncio.run(_listen(a)))

    _add_ops_parsers(sub)

    _add_transcribe_parser(sub, node_options)

    _add_bench_parser(sub, node_options)

    builds = sub.add_parser(
        "compare-builds", help="decode the same clips with several pywhispercpp builds"
    )
    node_options(builds)
    builds.add_argument("--audio", action="append", required=True, help="folder of WAVs; repeat")
    builds.add_argument(
        "--python",
        action="append",
        help="interpreter of a build (its venv has orac-node installed); repeat; the first"
        " is the baseline",
    )
    builds.add_argument("--out", type=Path, help="write the figures as JSON")
    builds.set_defaults(func=cmd_compare_builds)

    demo = sub.add_parser("demo", help="local broker + node + streamed samples")
    node_options(demo)
    demo.add_argument("--audio", action="append", required=True, help="file to stream (repeat)")
    demo.add_argument("--broker", help="use this broker instead of starting one")
    demo.set_defaults(func=cmd_demo)

    _add_satellite_parser(sub)
    return parser


def _client_broker_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--broker",
        default=DEFAULT_BROKER,
        help=f"mqtt://[user@]host:port, or mqtts://[user@]host:8883 for TLS (default"
        f" {DEFAULT_BROKER}); the password comes from ${PASSWORD_ENV}",
    )
    ca_file = os.environ.get(CA_FILE_ENV)
    p.add_argument(
        "--ca-file",
        type=Path,
        default=Path(ca_file) if ca_file else None,
        help=f"CA certificate of an mqtts:// broker (default ${CA_FILE_ENV}, else the"
        " system's trust store)",
    )


# -- satellite accounts ---------------------------------------------------------


def cmd_satellite(args: argparse.Namespace) -> int:
    """Add, remove or list satellite users in the broker's password file."""
    file = args.password_file
    if args.action == "list":
        for name in access.list_satellites(file):
            print(name)
        return 0
    if args.action == "remove":
        access.remove_satellite(args.name, file)
        print(f"removed satellite {args.name!r} from {file}")
    else:
        password = access.add_satellite(
            args.name, file, password=args.password, replace=args.replace
        )
        print(f"added satellite {args.name!r} to {file}")
        if args.password is None:  # never echo a password the user typed themselves
            print(f"password (shown only now; store it on the satellite): {password}")
        print(
            f"it may publish audio/{args.name}/# and read orac/device/{args.name}/error,"
            " connecting to mqtts://<broker>:8883 with the broker's CA certificate"
        )
    print("reload the broker to apply: sudo systemctl reload mosquitto (or SIGHUP mosquitto)")
    return 0


def _add_satellite_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sat = sub.add_parser("satellite", help="add, remove or list satellite accounts on the broker")
    actions = sat.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="create a broker user for a satellite")
    add.add_argument("name", help="satellite = user = device name (audio/<name>/...)")
    add.add_argument(
        "--password",
        help="use this password (at least 12 characters; visible in ps and shell history);"
        " default: generate one and print it once",
    )
    add.add_argument(
        "--replace", action="store_true", help="give an existing satellite a new password"
    )
    remove = actions.add_parser("remove", help="delete a satellite's broker user")
    remove.add_argument("name")
    listing = actions.add_parser("list", help="print the satellite users")
    for p in (add, remove, listing):
        p.add_argument(
            "--password-file",
            type=Path,
            default=access.DEFAULT_PASSWORD_FILE,
            help=f"Mosquitto password file (default {access.DEFAULT_PASSWORD_FILE},"
            " as in mosquitto/orac-node.conf)",
        )
        p.set_defaults(func=cmd_satellite)


# -- topics registry --------------------------------------------------------------

WEBHOOK_SECRET_ENV = "ORAC_WEBHOOK_SECRET"  # noqa: S105 - a variable name, not a secret


def cmd_topics(args: argparse.Namespace) -> int:
    """List, show, add, change or remove topic configs (behaviour in topicadmin.py)."""
    try:
        if args.name is not None:
            topicadmin.check_name(args.name)
        edit = _topic_edit(args) if args.action in ("add", "set") else topicadmin.ConfigEdit()
        outcome = asyncio.run(_topics(args, edit))
    except OracNodeError as exc:  # invalid input, broker unreachable
        print(f"orac-node topics: {exc}", file=sys.stderr)
        return topicadmin.FAILED
    if outcome.code != topicadmin.OK:
        print(f"orac-node topics: {outcome.text}", file=sys.stderr)
    else:
        print(json.dumps(outcome.data) if args.json else outcome.text)
    return outcome.code


async def _topics(args: argparse.Namespace, edit: topicadmin.ConfigEdit) -> topicadmin.Outcome:
    async with _connect(args) as mqtt:
        if args.action == "list":
            return await topicadmin.list_topics(mqtt, args.timeout)
        if args.action == "show":
            return await topicadmin.show_topic(mqtt, args.name, args.timeout)
        if args.action == "add":
            return await topicadmin.add_topic(mqtt, args.name, edit, args.timeout)
        if args.action == "set":
            return await topicadmin.set_topic(mqtt, args.name, edit, args.timeout)
        return await topicadmin.remove_topic(mqtt, args.name, args.timeout)


def _topic_edit(args: argparse.Namespace) -> topicadmin.ConfigEdit:
    """The changes asked for; the webhook secret from the option or, for new webhooks, the env."""
    text = sys.stdin.read() if args.config_json == "-" else args.config_json
    secret = args.secret
    if secret is None and args.webhook:
        secret = os.environ.get(WEBHOOK_SECRET_ENV)
    return topicadmin.ConfigEdit(
        enabled=args.enabled,
        model=args.model,
        language=args.language,
        prompt=args.prompt,
        wake_words=[] if args.no_wake_words else args.wake_word,
        webhooks=[] if args.no_webhooks else args.webhook,
        secret=secret,
        base=None if text is None else topicadmin.parse_config_json(text),
    )


def _add_topics_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    topics = sub.add_parser(
        "topics", help="the topics registry: list, show, add, set, rm topic configs"
    )
    actions = topics.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every topic with a config or used by a satellite")
    listing.set_defaults(name=None)
    show = actions.add_parser("show", help="one topic's config and the satellites using it")
    add = actions.add_parser("add", help="publish a new topic's config (exit 1 if it has one)")
    change = actions.add_parser(
        "set", help="change a topic's config: the options given, merged into the current one"
    )
    remove = actions.add_parser("rm", help="remove a topic's config (exit 1 if it has none)")
    for p in (show, add, change, remove):
        p.add_argument("name", metavar="TOPIC", help="topic name, as in transcript/<topic>")
    for p in (add, change):
        _topic_edit_options(p)
    for p in (listing, show, add, change, remove):
        _client_broker_options(p)
        p.add_argument("--json", action="store_true", help="print one JSON object")
        p.add_argument(
            "--timeout",
            type=float,
            default=3.0,
            help="longest wait for retained messages and for the broker to confirm (s)",
        )
        p.set_defaults(func=cmd_topics)


def _topic_edit_options(p: argparse.ArgumentParser) -> None:
    enabled = p.add_mutually_exclusive_group()
    enabled.add_argument(
        "--enable", dest="enabled", action="store_const", const=True, help="accept its audio"
    )
    enabled.add_argument(
        "--disable",
        dest="enabled",
        action="store_const",
        const=False,
        help="refuse its audio (topic_disabled)",
    )
    p.add_argument("--model", metavar="NAME", help='model for its finals ("": the node\'s)')
    p.add_argument("--language", metavar="CODE", help='language of its sessions ("": auto)')
    p.add_argument("--prompt", metavar="TEXT", help="vocabulary/prompt for its finals")
    words = p.add_mutually_exclusive_group()
    words.add_argument(
        "--wake-word", action="append", metavar="WORD", help="replaces the list; repeat"
    )
    words.add_argument("--no-wake-words", action="store_true", help="empty the list")
    hooks = p.add_mutually_exclusive_group()
    hooks.add_argument(
        "--webhook", action="append", metavar="URL", help="replaces the list; repeat"
    )
    hooks.add_argument("--no-webhooks", action="store_true", help="empty the list")
    p.add_argument(
        "--secret",
        metavar="S",
        help=f'HMAC key of the --webhook URLs (without --webhook: of the existing ones; "":'
        f" none); visible in ps and shell history, so prefer ${WEBHOOK_SECRET_ENV}, used for"
        " --webhook URLs when --secret is not given",
    )
    p.add_argument(
        "--config-json",
        metavar="JSON",
        help="a whole config as JSON ('-': read it from stdin) instead of the current one;"
        " the other options then change it",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``orac-node`` script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except OracNodeError as exc:
        print(f"orac-node: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
