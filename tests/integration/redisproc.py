"""A private redis-server for a test module: loopback, a free port, nothing on disk."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from orac_node.ops.localbroker import port_in_use


def start_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    """A private redis-server on ``port`` (loopback), no persistence, up and listening."""
    process = subprocess.Popen(
        [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not port_in_use(port):
        assert process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.02)
    return process
