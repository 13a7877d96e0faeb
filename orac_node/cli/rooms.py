"""``orac-node rooms``: list, set and remove room groups (ops/rooms.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from orac_node.cli.common import (
    Subparsers,
    broker_options,
    login,
    print_outcome,
    retained_edit_options,
)
from orac_node.client import connect
from orac_node.errors import OracNodeError
from orac_node.ops import rooms
from orac_node.ops.topics import FAILED, Outcome


def cmd_rooms(args: argparse.Namespace) -> int:
    """List, set or remove room groups."""
    try:
        outcome = asyncio.run(_rooms(args))
    except OracNodeError as exc:  # invalid input, broker unreachable
        print(f"orac-node rooms: {exc}", file=sys.stderr)
        return FAILED
    return print_outcome("rooms", outcome, as_json=args.json)


async def _rooms(args: argparse.Namespace) -> Outcome:
    async with connect(login(args)) as mqtt:
        if args.action == "list":
            return await rooms.list_rooms(mqtt, args.timeout)
        if args.action == "set":
            return await rooms.set_room(
                mqtt,
                args.name,
                args.devices,
                window_ms=args.window_ms,
                wait_ms=args.wait_ms,
                timeout_s=args.timeout,
            )
        return await rooms.remove_room(mqtt, args.name, args.timeout)


def add_parser(sub: Subparsers) -> None:
    """``rooms list|set|rm``."""
    parser = sub.add_parser(
        "rooms",
        help="room groups: satellites that hear the same room give one final between them",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser(
        "list", help="every room group and which of its satellites are online"
    )
    change = actions.add_parser("set", help="publish a room group (replaces one of that name)")
    change.add_argument("name", metavar="GROUP", help="the group's name, e.g. kitchen")
    change.add_argument("devices", metavar="DEVICE", nargs="+", help="its satellites' device names")
    change.add_argument(
        "--window-ms", type=int, help="sessions opened this close may be the same words (1000)"
    )
    change.add_argument(
        "--wait-ms", type=int, help="longest a final waits for a peer's session to end (1500)"
    )
    remove = actions.add_parser("rm", help="remove a room group (exit 1 if it has none)")
    remove.add_argument("name", metavar="GROUP")
    for p in (listing, change, remove):
        broker_options(p)
        retained_edit_options(p)
        p.set_defaults(func=cmd_rooms)
