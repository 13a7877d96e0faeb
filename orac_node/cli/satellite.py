"""``orac-node satellite``: satellite accounts in the broker's password file."""

from __future__ import annotations

import argparse
from pathlib import Path

from orac_node.cli.common import Subparsers
from orac_node.ops import accounts


def cmd_satellite(args: argparse.Namespace) -> int:
    """Add, remove or list satellite users in the broker's password file."""
    file = args.password_file
    if args.action == "list":
        for name in accounts.list_satellites(file):
            print(name)
        return 0
    if args.action == "remove":
        accounts.remove_satellite(args.name, file)
        print(f"removed satellite {args.name!r} from {file}")
        # This command edits a file and never talks to the broker: say how the rest goes.
        print(
            "with Home Assistant discovery on, remove its device there too:"
            f" orac-node homeassistant forget-satellite {args.name} (once it is offline)"
        )
    else:
        password = accounts.add_satellite(
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


def add_parser(sub: Subparsers) -> None:
    """``satellite add|remove|list``."""
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
            default=accounts.DEFAULT_PASSWORD_FILE,
            help=f"Mosquitto password file (default {accounts.DEFAULT_PASSWORD_FILE},"
            " as in mosquitto/orac-node.conf)",
        )
        p.set_defaults(func=cmd_satellite)
