"""``orac-node run``: the node, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import signal

import uvloop

from orac_node.cli.common import (
    DEFAULT_BROKER,
    Subparsers,
    config_from,
    load_engines,
    model_path,
    node_options,
)
from orac_node.config import NodeConfig
from orac_node.errors import OracNodeError
from orac_node.node import Node
from orac_node.ops.logsetup import setup_logging


async def _run_node(config: NodeConfig) -> None:
    path = model_path(config)
    node = Node(
        config,
        model_name=path.stem.removeprefix("ggml-"),
        model_path=path,
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
    config = config_from(args)
    setup_logging(config.logging.level, json_format=config.logging.format == "json")
    # systemd's watchdog kills a wedged node with SIGABRT: dump every thread's stack
    # to stderr (the journal) first, so the wedge can be diagnosed afterwards.
    faulthandler.enable()
    uvloop.run(_run_node(config))
    return 0


def add_parser(sub: Subparsers) -> None:
    """``run``."""
    run = sub.add_parser("run", help="run the node until SIGINT/SIGTERM")
    node_options(run)
    run.add_argument(
        "--broker", help=f"mqtt://host:port or mqtts://host:port (default {DEFAULT_BROKER})"
    )
    run.add_argument("--node-id", help="node id (status topic, MQTT client id)")
    run.set_defaults(func=cmd_run)
