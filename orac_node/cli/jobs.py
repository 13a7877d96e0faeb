"""``orac-node jobs`` and ``transcribe --submit``: long recordings as jobs (docs/JOBS.md).

These talk to the fleet's Redis (``jobs.redis_url`` of ``--config``) directly:
submitting streams the file into it a block at a time, and the nodes with
``jobs.enabled`` take the job from there.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

from redis.exceptions import RedisError

from orac_node.cli.common import Subparsers, config_from
from orac_node.config import NodeConfig
from orac_node.errors import AudioDecodeError
from orac_node.jobs.formats import FORMATS, Format, render
from orac_node.jobs.store import JobError, JobStore
from orac_node.jobs.submit import submit_file
from orac_node.wire import FINISHED, JobInfo

POLL_S = 0.5
"""``--wait`` reads the job's progress this often: a window takes seconds."""


def _run(args: argparse.Namespace, work: Callable[[JobStore, NodeConfig], Awaitable[int]]) -> int:
    config = config_from(args)

    async def go() -> int:
        store = JobStore(config.jobs.redis_url, keep_s=config.jobs.keep_s)
        try:
            return await work(store, config)
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except (JobError, AudioDecodeError) as exc:
        print(f"orac-node: {exc}", file=sys.stderr)
        return 1
    except (RedisError, OSError) as exc:
        print(f"orac-node: the job queue at {config.jobs.redis_url}: {exc}", file=sys.stderr)
        return 1


def cmd_submit(args: argparse.Namespace) -> int:
    """``transcribe --submit FILE``: queue it; with ``--wait``, follow it to its result."""

    async def work(store: JobStore, config: NodeConfig) -> int:
        job = await submit_file(
            store,
            Path(args.files[0]),
            max_audio_s=config.jobs.max_audio_s,
            language=args.language,
            prompt=args.prompt or None,
        )
        print(job, flush=True)
        if not args.wait:
            return 0
        return await _follow(store, job, cast(Format, args.format))

    if len(args.files) != 1:
        print("orac-node transcribe --submit takes one file", file=sys.stderr)
        return 2
    return _run(args, work)


async def _follow(store: JobStore, job: str, fmt: Format) -> int:
    shown = -1.0
    while True:
        info = await store.get(job)
        if info.state in FINISHED:
            break
        if info.percent != shown:
            shown = info.percent
            node = f" on {info.node}" if info.node else ""
            print(f"{info.state}{node}: {info.percent:.0f} %", file=sys.stderr, flush=True)
        await asyncio.sleep(POLL_S)
    if info.state != "done":
        print(f"job {job} {info.state}: {info.error or ''}", file=sys.stderr)
        return 1
    sys.stdout.write(render(await store.get(job, segments=True), fmt))
    return 0


def _line(info: JobInfo) -> str:
    created = dt.datetime.fromtimestamp(info.created).strftime("%Y-%m-%d %H:%M")
    where = f" {info.node}" if info.node else ""
    return (
        f"{info.job}  {info.state:<9} {info.percent:5.1f} %  {info.audio_s:8.1f} s  "
        f"{created}{where}  {info.name}"
    )


def cmd_jobs(args: argparse.Namespace) -> int:
    """``jobs list|show|result|cancel|retry``."""

    async def work(store: JobStore, _: NodeConfig) -> int:
        if args.action == "list":
            for info in await store.latest(args.limit):
                print(_line(info))
            return 0
        if args.action == "show":
            info = await store.get(args.job)
            print(_line(info))
            for key in ("attempts", "language", "error", "finished"):
                if getattr(info, key):
                    print(f"  {key}: {getattr(info, key)}")
            return 0
        if args.action == "result":
            info = await store.get(args.job, segments=True)
            if info.state != "done":
                print(f"job {args.job} is {info.state}", file=sys.stderr)
                return 1
            sys.stdout.write(render(info, cast(Format, args.format)))
            return 0
        change = store.cancel if args.action == "cancel" else store.retry
        print(_line(await change(args.job)))
        return 0

    return _run(args, work)


def add_parser(sub: Subparsers) -> None:
    """``jobs list|show|result|cancel|retry``."""
    parser = sub.add_parser("jobs", help="long recordings queued as jobs: follow and manage them")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the latest jobs, newest first")
    listing.add_argument("--limit", type=int, default=50)
    _config_option(listing)
    for name, text in (
        ("show", "one job's state and progress"),
        ("result", "a finished job's transcript"),
        ("cancel", "stop a queued or running job"),
        ("retry", "queue a failed or cancelled job again"),
    ):
        one = actions.add_parser(name, help=text)
        one.add_argument("job", help="the job id transcribe --submit printed")
        _config_option(one)
        if name == "result":
            format_option(one)
    parser.set_defaults(func=cmd_jobs)


def _config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML config file (its jobs.redis_url)")


def format_option(p: argparse.ArgumentParser) -> None:
    """``--format text|srt|vtt|json``."""
    p.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
