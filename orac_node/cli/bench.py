"""``orac-node bench`` and ``compare-builds``: measuring the node (orac_node/bench)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import uvloop

from orac_node.cli.common import Subparsers, config_from, model_path, node_options
from orac_node.ops.logsetup import setup_logging


def cmd_bench(args: argparse.Namespace) -> int:
    """Measure the node against baselines (see orac_node/bench)."""
    from orac_node.bench.main import BenchSettings, run  # noqa: PLC0415 - needs the bench extra

    setup_logging("INFO" if args.verbose else "WARNING")
    if not args.quiet:  # one line per utterance as it completes
        logging.getLogger("orac_node.bench").setLevel(logging.INFO)
    config = config_from(args)
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
        ingest_devices=args.ingest_devices,
        ingest_noise_dbfs=args.ingest_noise_dbfs,
        accuracy_grid=tuple(args.accuracy_grid or ()),
    )
    uvloop.run(run(settings))
    return 0


def cmd_compare_builds(args: argparse.Namespace) -> int:
    """Decode the same clips with several pywhispercpp builds (see bench/builds.py)."""
    from orac_node.bench.builds import compare_builds, format_builds  # noqa: PLC0415
    from orac_node.bench.corpus import load_corpus  # noqa: PLC0415

    config = config_from(args)
    clips = load_corpus([Path(a) for a in args.audio])
    pythons = args.python or [sys.executable]
    results = compare_builds(pythons, clips, model_path(config), config)
    summaries = [r.summary(clips, results[0]) for r in results]
    print(format_builds(summaries))
    if args.out:
        args.out.write_text(json.dumps(summaries, indent=2))
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    """Rewrite the README's and BENCHMARKS.md's figures from the committed bench results."""
    from orac_node.bench.figures import RESULTS, stale  # noqa: PLC0415

    differ = stale(Path.cwd(), write=not args.check)
    for document in differ:
        print(f"{document}: {'differs from' if args.check else 'rewritten from'} {RESULTS}")
    return 1 if args.check and differ else 0


def add_parsers(sub: Subparsers) -> None:
    """``bench``, ``compare-builds``, ``figures``."""
    figures = sub.add_parser(
        "figures",
        help="rewrite the figures in README.md and docs/BENCHMARKS.md from"
        " docs/bench/latest.json (run in the repository)",
    )
    figures.add_argument(
        "--check", action="store_true", help="only say which differ (exit 1 if any)"
    )
    figures.set_defaults(func=cmd_figures)
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
        help="single, at-once, concurrent-4, concurrent-8, burst, throughput, ingest, soak,"
        " dictation, flood, consumers, rooms, fleet (1 and 3 nodes, one killed), jobs (a 30"
        " min recording as a job, on a private"
        " Redis), accuracy (with single and at-once), or a preset:"
        " quick, standard (default), full; repeat",
    )
    bench.add_argument("--broker", help="use this broker instead of starting one")
    bench.add_argument(
        "--compare-wyoming",
        metavar="URI",
        help="also send each single and at-once utterance to this Wyoming ASR server, the same"
        " way (in real time, at once)",
    )
    bench.add_argument(
        "--accuracy-grid",
        action="append",
        metavar="MODEL:BEAM",
        help="an offline decoder of `accuracy`: a model name (the node's, or from model.extra)"
        " or ggml file, and a beam width (1 = greedy); repeat. Default: the node's model"
        " greedy and at decode.beam_size",
    )
    bench.add_argument(
        "--smoke", action="store_true", help="3 clips only (a 2 min job): does it work?"
    )
    bench.add_argument("--soak-minutes", type=float, default=10.0, help="length of `soak`")
    bench.add_argument(
        "--ingest-seconds", type=float, default=12.0, help="length of `ingest` (>= 10 s: P4)"
    )
    bench.add_argument(
        "--ingest-devices",
        type=int,
        default=200,
        help="satellites of `ingest`, 50 chunks/s each (200: the P4 target)",
    )
    bench.add_argument(
        "--ingest-noise-dbfs",
        type=float,
        default=-60.0,
        help="noise of half the `ingest` satellites (-60: under the VAD's quiet gate;"
        " -44: the VAD scores every window)",
    )
    bench.add_argument("--out", type=Path, default=Path("bench-results.json"))
    bench.add_argument("--plot", type=Path, default=Path("bench-results.png"))
    bench.add_argument("--no-plot", action="store_true")
    bench.add_argument("--no-baselines", action="store_true", help="skip direct decodes")
    bench.add_argument("-v", "--verbose", action="store_true", help="log everything at INFO")
    bench.add_argument("-q", "--quiet", action="store_true", help="no per-utterance lines")
    bench.set_defaults(func=cmd_bench)

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
