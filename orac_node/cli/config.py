"""``orac-node config template``: every setting with its default and why, as YAML."""

from __future__ import annotations

import argparse
import sys

from orac_node.cli.common import Subparsers
from orac_node.config import template


def cmd_template(args: argparse.Namespace) -> int:
    """Print config.yaml as the config classes describe it."""
    del args
    sys.stdout.write(template.render())
    return 0


def add_parser(sub: Subparsers) -> None:
    """``config template``."""
    config = sub.add_parser("config", help="the node's configuration file")
    actions = config.add_subparsers(dest="config_command", required=True)
    render = actions.add_parser(
        "template", help="print config.yaml: every setting, its default and why"
    )
    render.set_defaults(func=cmd_template)
