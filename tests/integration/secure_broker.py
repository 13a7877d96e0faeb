"""The shipped broker setup (mosquitto/orac-node.conf and mosquitto/acl), run for real.

Only what cannot be used on a test machine is rewritten: the listener ports
(the system's broker has 1883), the TLS listener's address (loopback, as
nothing outside needs it), and paths under /etc and /var. Each rewrite names
the exact line it replaces, so a change to the shipped file that a test no
longer covers fails loudly instead of being tested in its old form. Users are
created with the real ``mosquitto_passwd`` through :mod:`orac_node.ops.accounts`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import trustme

from orac_node.client import connect
from orac_node.mqtt.options import BrokerLogin
from orac_node.ops.accounts import generate_password, set_password
from orac_node.ops.localbroker import find_mosquitto, free_port, port_in_use
from tests.conftest import ROOT

CONF = ROOT / "mosquitto" / "orac-node.conf"
ACL = ROOT / "mosquitto" / "acl"
HOST = "127.0.0.1"
MONITOR = "test-monitor"
"""A user only the tests have (``topic read #``), to see everything that got through."""


@dataclass(frozen=True)
class Certificates:
    """A private CA, a server certificate for 127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def create(cls, folder: Path) -> Certificates:
        """Issue fresh certificates into ``folder`` (with trustme: real X.509, no network)."""
        folder.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="orac-node tests")
        server = ca.issue_cert(HOST, "localhost")
        client = ca.issue_cert("orac-node.client.test")
        certs = cls(
            ca=folder / "ca.crt",
            server_cert=folder / "server.crt",
            server_key=folder / "server.key",
            client_cert=folder / "client.crt",
            client_key=folder / "client.key",
        )
        ca.cert_pem.write_to_path(str(certs.ca))
        server.cert_chain_pems[0].write_to_path(str(certs.server_cert))
        server.private_key_pem.write_to_path(str(certs.server_key))
        client.cert_chain_pems[0].write_to_path(str(certs.client_cert))
        client.private_key_pem.write_to_path(str(certs.client_key))
        return certs


class SecureBroker:
    """mosquitto started from the shipped config, with users and passwords of our own."""

    def __init__(
        self,
        workdir: Path,
        certs: Certificates,
        users: list[str],
        *,
        extra_config: str = "",
    ) -> None:
        self.workdir = workdir
        self.certs = certs
        self.plain_port = free_port()
        self.tls_port = free_port()
        while self.tls_port == self.plain_port:
            self.tls_port = free_port()
        self.password_file = workdir / "orac-node.passwd"
        self.acl_file = workdir / "orac-node.acl"
        self.log_path = workdir / "mosquitto.log"
        self.extra_config = extra_config
        self.passwords: dict[str, str] = {}
        self._process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        for user in [*users, MONITOR]:
            self.add_user(user)
        # The ACL exactly as shipped, plus the monitor's block (it only adds rights
        # for that one user).
        self.acl_file.write_text(ACL.read_text() + f"\nuser {MONITOR}\ntopic read #\n")

    def add_user(self, user: str) -> str:
        """Create or reset ``user`` with a fresh password (applies on start or reload)."""
        self.passwords[user] = generate_password()
        set_password(self.password_file, user, self.passwords[user])
        return self.passwords[user]

    def config_text(self) -> str:
        """The shipped config with the test's ports and paths."""
        text = CONF.read_text()
        lines = {
            "listener 1883 127.0.0.1": f"listener {self.plain_port} {HOST}",
            "listener 8883": f"listener {self.tls_port} {HOST}",
            "cafile /etc/mosquitto/certs/ca.crt": f"cafile {self.certs.ca}",
            "certfile /etc/mosquitto/certs/server.crt": f"certfile {self.certs.server_cert}",
            "keyfile /etc/mosquitto/certs/server.key": f"keyfile {self.certs.server_key}",
            "password_file /etc/mosquitto/orac-node.passwd": f"password_file {self.password_file}",
            "acl_file /etc/mosquitto/orac-node.acl": f"acl_file {self.acl_file}",
            "persistence_location /var/lib/mosquitto/": f"persistence_location {self.workdir}/",
        }
        out = text.splitlines()
        for old, new in lines.items():
            assert out.count(old) == 1, f"{CONF.name} no longer has the line {old!r}"
            out[out.index(old)] = new
        out += [
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            self.extra_config,
        ]
        if os.geteuid() == 0:  # else it drops to user mosquitto, who cannot read tmp files
            out.append("user root")
        return "\n".join(out) + "\n"

    def start(self) -> SecureBroker:
        """Start mosquitto and wait until both listeners accept connections."""
        config = self.workdir / "orac-node.conf"
        config.write_text(self.config_text())
        self._process = subprocess.Popen(
            [find_mosquitto(), "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not (port_in_use(self.plain_port) and port_in_use(self.tls_port)):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not start:\n{self.log()}")
            time.sleep(0.02)
        return self

    def reload(self) -> None:
        """SIGHUP: mosquitto re-reads the password and ACL files."""
        assert self._process is not None
        self._process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        """SIGTERM, and wait for the exit (persistence is written on the way out)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log(self) -> str:
        """mosquitto's log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def url(self, user: str | None = None, *, tls: bool = True) -> str:
        """URL of a listener, with ``user``'s credentials when given."""
        login = f"{user}:{self.passwords[user]}@" if user else ""
        if tls:
            return f"mqtts://{login}{HOST}:{self.tls_port}"
        return f"mqtt://{login}{HOST}:{self.plain_port}"

    @contextlib.asynccontextmanager
    async def connect(
        self, user: str | None, *, tls: bool = True, client_cert: bool = False
    ) -> AsyncIterator[aiomqtt.Client]:
        """A client logged in as ``user`` (None: anonymous), over TLS by default."""
        login = BrokerLogin(
            url=self.url(user, tls=tls),
            ca_file=self.certs.ca if tls else None,
            cert_file=self.certs.client_cert if client_cert else None,
            key_file=self.certs.client_key if client_cert else None,
        )
        async with connect(login) as client:
            yield client
