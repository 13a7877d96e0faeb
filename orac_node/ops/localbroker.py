"""Starting a private Mosquitto: for the demo, the benchmark and the tests.

The broker is the real thing (Debian's ``mosquitto``), run from a generated
config on a loopback port and stopped again; nothing here is a mock. The
production broker config lives in the repository's ``mosquitto/`` folder.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from orac_node.errors import BrokerError

START_TIMEOUT_S = 10.0


def find_mosquitto() -> str:
    """Path of the mosquitto binary (Debian installs it in /usr/sbin)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on host:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


BROKER_QUEUES = "max_queued_messages 100000\nmax_inflight_messages 100\n"
"""The queue limits of the production broker config (mosquitto/orac-node.conf):
with Mosquitto's default of 1000 the broker, not the node, would drop chunks
whenever the node falls a moment behind."""


def wait_listening(process: subprocess.Popen[bytes], port: int, timeout_s: float) -> bool:
    """Whether a server we started listens on ``port`` within ``timeout_s`` (False: it died)."""
    deadline = time.monotonic() + timeout_s
    while not port_in_use(port):
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class LocalBroker:
    """A mosquitto process on 127.0.0.1, configured from text, started and stopped by us."""

    def __init__(self, workdir: Path, *, port: int | None = None, extra_config: str = "") -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.extra_config = extra_config
        self.log_path = workdir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """mqtt:// URL of the broker."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> LocalBroker:
        """Start mosquitto and wait until it accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # started as root, mosquitto would switch to the `mosquitto` user and then
            # fail to write its log and store into our (private) folder
            f"user {getpass.getuser()}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            f"log_dest file {self.log_path}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            "set_tcp_nodelay true\n"  # as mosquitto/orac-node.conf
            f"{self.extra_config}\n",
            encoding="utf-8",
        )
        self._process = subprocess.Popen(
            [find_mosquitto(), "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_listening(self._process, self.port, START_TIMEOUT_S):
            self.stop()
            log_text = self.log_path.read_text() if self.log_path.exists() else ""
            raise BrokerError(f"mosquitto did not start on port {self.port}:\n{log_text}")
        return self

    def stop(self) -> None:
        """Terminate mosquitto (SIGTERM, then SIGKILL after 5 s)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
