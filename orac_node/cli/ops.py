"""``orac-node health``, ``metrics`` and ``cache clear``: the fleet at a glance."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from redis.exceptions import RedisError

from orac_node.cli.common import Subparsers, broker_options, config_from, login
from orac_node.client import connect
from orac_node.decode.cache import RedisCache
from orac_node.errors import BrokerError
from orac_node.ops import health


async def _health(args: argparse.Namespace) -> int:
    try:
        async with connect(login(args)) as mqtt:
            statuses = await health.read_statuses(mqtt, args.timeout)
    except BrokerError as exc:
        print(f"orac-node health: {exc}", file=sys.stderr)
        return health.UNREACHABLE
    verdict = health.judge(statuses, args.node or [])
    now = time.time()
    print(verdict.to_json(now) if args.json else verdict.to_text(now))
    return verdict.code


def cmd_metrics(args: argparse.Namespace) -> int:
    """Fetch a node's /metrics and print a summary (``--json`` for scripts)."""
    try:
        with urllib.request.urlopen(args.url, timeout=args.timeout) as response:  # noqa: S310
            text = response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        print(f"orac-node metrics: {args.url}: {exc}", file=sys.stderr)
        return health.UNREACHABLE
    summary = health.summarize_metrics(text)
    print(json.dumps(summary) if args.json else health.format_metrics(summary))
    return 0


def cmd_cache_clear(args: argparse.Namespace) -> int:
    """Empty the shared (Redis) response cache the config names."""
    config = config_from(args)
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


def add_parsers(sub: Subparsers) -> None:
    """``health``, ``metrics``, ``cache``."""
    check = sub.add_parser(
        "health",
        help="every node's status; exit 0 healthy, 1 no node ready, 2 broker unreachable",
    )
    broker_options(check)
    check.add_argument("--node", action="append", help="require this node to be ready (repeat)")
    check.add_argument("--json", action="store_true", help="one JSON object")
    check.add_argument("--timeout", type=float, default=3.0, help="longest wait for statuses (s)")
    check.set_defaults(func=lambda a: asyncio.run(_health(a)))

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
