"""A private redis-server on 127.0.0.1: for the bench's jobs and the tests' queue."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from orac_node.errors import OracNodeError
from orac_node.ops.localbroker import free_port, wait_listening

START_TIMEOUT_S = 10.0


class LocalRedis:
    """redis-server on a free loopback port, nothing written to disk, stopped by us."""

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis:// URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        """The server's process id (tests pause it to play a black-holed server)."""
        assert self._process is not None, "not started"
        return self._process.pid

    def start(self) -> LocalRedis:
        """Start redis-server and wait until it listens."""
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [
                *(binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_listening(self._process, self.port, START_TIMEOUT_S):
            self.stop()
            raise OracNodeError(f"redis-server did not start on port {self.port}")
        return self

    def stop(self) -> None:
        """Stop it (what it held is gone)."""
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGCONT)  # a paused one cannot stop
            self._process.terminate()
            self._process.wait(timeout=10)
