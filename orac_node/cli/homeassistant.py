"""``orac-node homeassistant``: remove a node or a satellite from Home Assistant (forget.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from orac_node.cli.common import (
    Subparsers,
    broker_options,
    config_from,
    login,
    print_outcome,
    retained_edit_options,
)
from orac_node.client import connect
from orac_node.errors import OracNodeError
from orac_node.homeassistant import forget
from orac_node.ops.topics import FAILED, Outcome


def cmd_homeassistant(args: argparse.Namespace) -> int:
    """Forget a node or a satellite (behaviour in homeassistant/forget.py)."""
    try:
        config = config_from(args)
        prefix = args.prefix or config.homeassistant.prefix
        name = args.name or config.node.id  # forget-node defaults to this config's node
        forget.check_input(name, prefix)  # before connecting: a typo is not a broker problem
        outcome = asyncio.run(_forget(args, name, prefix))
    except OracNodeError as exc:  # invalid input, broker unreachable
        print(f"orac-node homeassistant: {exc}", file=sys.stderr)
        return FAILED
    return print_outcome("homeassistant", outcome, as_json=args.json)


async def _forget(args: argparse.Namespace, name: str, prefix: str) -> Outcome:
    async with connect(login(args)) as mqtt:
        if args.action == "forget-node":
            return await forget.forget_node(mqtt, name, prefix, args.timeout, force=args.force)
        return await forget.forget_satellite(mqtt, name, prefix, args.timeout, force=args.force)


def add_parser(sub: Subparsers) -> None:
    """``homeassistant forget-node|forget-satellite``."""
    parser = sub.add_parser(
        "homeassistant", help="Home Assistant MQTT discovery: remove retired nodes and satellites"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    node = actions.add_parser(
        "forget-node",
        help="remove a node that is gone for good from Home Assistant (a stopped node just"
        " shows unavailable)",
    )
    node.add_argument(
        "name", metavar="NODE_ID", nargs="?", help="default: node.id of --config (or this host)"
    )
    satellite = actions.add_parser(
        "forget-satellite", help="remove a satellite that is gone for good from Home Assistant"
    )
    satellite.add_argument("name", metavar="DEVICE", help="the satellite's device name")
    for p in (node, satellite):
        broker_options(p)
        p.add_argument(
            "--config", type=Path, help="YAML config file (its node.id, homeassistant.prefix)"
        )
        p.add_argument("--prefix", help="discovery prefix (default: homeassistant.prefix)")
        p.add_argument(
            "--force", action="store_true", help="remove it even though it is running or online"
        )
        retained_edit_options(p)
        p.set_defaults(func=cmd_homeassistant)
