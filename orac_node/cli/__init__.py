"""The ``orac-node`` command: the node, its tools, and the ops commands.

One module per command family; each is a thin shell over the package
(argument parsing and printing here, behaviour in the modules they call)::

    run.py        run: the node
    audio.py      send, listen, transcribe (--submit: as a job)
    jobs.py       jobs list|show|result|cancel|retry
    demo.py       demo: broker + node + a satellite streaming samples
    console.py    console: the live web page
    ops.py        health, metrics, cache clear
    topics.py     topics list|show|add|set|rm
    rooms.py      rooms list|set|rm
    models.py     models list|import|validate|promote|rollback
    satellite.py  satellite add|remove|list
    homeassistant.py  homeassistant forget-node|forget-satellite
    config.py     config template
    bench.py      bench, compare-builds
    common.py     what they share: config from flags, model file, broker options
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from orac_node import __version__
from orac_node.cli import (
    audio,
    bench,
    config,
    console,
    demo,
    homeassistant,
    jobs,
    models,
    ops,
    rooms,
    run,
    satellite,
    topics,
)
from orac_node.errors import OracNodeError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every sub-command."""
    parser = argparse.ArgumentParser(
        prog="orac-node", description="Streaming speech-to-text node for home voice assistants."
    )
    parser.add_argument("--version", action="version", version=f"orac-node {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run.add_parser(sub)
    audio.add_parsers(sub)
    ops.add_parsers(sub)
    topics.add_parser(sub)
    rooms.add_parser(sub)
    jobs.add_parser(sub)
    models.add_parser(sub)
    bench.add_parsers(sub)
    demo.add_parser(sub)
    console.add_parser(sub)
    satellite.add_parser(sub)
    homeassistant.add_parser(sub)
    config.add_parser(sub)
    return parser


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
