"""``orac-node topics``: list, show, add, change and remove topic configs (ops/topics.py)."""

from __future__ import annotations

import argparse
import asyncio
import os
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
from orac_node.ops import topics

WEBHOOK_SECRET_ENV = "ORAC_WEBHOOK_SECRET"  # noqa: S105 - a variable name, not a secret


def cmd_topics(args: argparse.Namespace) -> int:
    """List, show, add, change or remove topic configs (behaviour in topics.py)."""
    try:
        if args.name is not None:
            topics.check_name(args.name)
        edit = _topic_edit(args) if args.action in ("add", "set") else topics.ConfigEdit()
        outcome = asyncio.run(_topics(args, edit))
    except OracNodeError as exc:  # invalid input, broker unreachable
        print(f"orac-node topics: {exc}", file=sys.stderr)
        return topics.FAILED
    return print_outcome("topics", outcome, as_json=args.json)


async def _topics(args: argparse.Namespace, edit: topics.ConfigEdit) -> topics.Outcome:
    async with connect(login(args)) as mqtt:
        if args.action == "list":
            return await topics.list_topics(mqtt, args.timeout)
        if args.action == "show":
            return await topics.show_topic(mqtt, args.name, args.timeout)
        if args.action == "add":
            return await topics.add_topic(mqtt, args.name, edit, args.timeout)
        if args.action == "set":
            return await topics.set_topic(mqtt, args.name, edit, args.timeout)
        return await topics.remove_topic(mqtt, args.name, args.timeout)


def _topic_edit(args: argparse.Namespace) -> topics.ConfigEdit:
    """The changes asked for; the webhook secret from the option or, for new webhooks, the env."""
    text = sys.stdin.read() if args.config_json == "-" else args.config_json
    secret = args.secret
    if secret is None and args.webhook:
        secret = os.environ.get(WEBHOOK_SECRET_ENV)
    return topics.ConfigEdit(
        enabled=args.enabled,
        model=args.model,
        language=args.language,
        prompt=args.prompt,
        silence_ms=args.silence_ms,
        wake_words=[] if args.no_wake_words else args.wake_word,
        webhooks=[] if args.no_webhooks else args.webhook,
        secret=secret,
        base=None if text is None else topics.parse_config_json(text),
    )


def add_parser(sub: Subparsers) -> None:
    """``topics list|show|add|set|rm``."""
    parser = sub.add_parser(
        "topics", help="the topics registry: list, show, add, set, rm topic configs"
    )
    actions = parser.add_subparsers(dest="action", required=True)
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
        broker_options(p)
        retained_edit_options(p)
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
    p.add_argument(
        "--silence-ms",
        type=int,
        metavar="MS",
        help="silence that ends its utterances (dictation: 1500; -1: the node's)",
    )
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
