"""A private redis-server for a test module: loopback, a free port, nothing on disk."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orac_node.ops.localredis import LocalRedis


@contextmanager
def running_redis(port: int, folder: Path) -> Iterator[LocalRedis]:
    """redis-server on ``port`` for the block."""
    server = LocalRedis(folder, port=port).start()
    try:
        yield server
    finally:
        server.stop()
