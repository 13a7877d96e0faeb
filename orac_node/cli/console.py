"""``orac-node console``: the live web console, on its own (docs/CONSOLE.md).

The node serves the same page when ``console.enabled`` is set; this command
serves it from any machine that reaches the broker, for a fleet's nodes alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path
from typing import Any

from orac_node.cli.common import Subparsers
from orac_node.config import load_config
from orac_node.console import ConsoleServer


async def run_console(args: argparse.Namespace) -> int:
    """Serve the console until interrupted."""
    overrides: dict[str, Any] = {}
    if args.broker:
        overrides["broker"] = {"url": args.broker}
    console = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if console:
        overrides["console"] = console
    server = ConsoleServer(load_config(args.config, overrides))
    task = asyncio.create_task(server.run(), name="console")
    listening = asyncio.create_task(server.listening.wait())
    await asyncio.wait((task, listening), return_when=asyncio.FIRST_COMPLETED)
    listening.cancel()
    if task.done():
        await task  # raises what stopped it (a port in use, an unreadable certificate)
    print(f"orac-node console: open {server.url}", flush=True)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return 0


def add_parser(sub: Subparsers) -> None:
    """``console``."""
    p = sub.add_parser("console", help="serve the live web console (nodes, satellites, talk)")
    p.add_argument("--config", type=Path, help="YAML config file (its broker and console sections)")
    p.add_argument("--broker", help="mqtt://host:port or mqtts://host:8883 (default: the config's)")
    p.add_argument("--host", help="address to listen on (default: console.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default: console.port, 8480)")
    p.set_defaults(func=lambda args: asyncio.run(run_console(args)))
