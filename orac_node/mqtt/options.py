"""How a client reaches the broker: one :class:`BrokerLogin`, TLS settings, socket options.

The client SDK, the CLI's ``send``/``listen``/``topics``/``health``, the bench and
the tests connect through :func:`orac_node.client.connect` with a
:class:`BrokerLogin`; the node's own connection (bus.py) takes the same values
from its config section. TLS always verifies the broker's certificate and host
name (against a CA file, or the system's trust store when none is given): a
satellite that skipped the check would hand its password to whoever answers on
port 8883.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt

from orac_node.config import BrokerUrl

NO_DELAY: list[aiomqtt.types.SocketOption] = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
"""Socket options for every MQTT connection: send small packets at once. paho leaves
Nagle's algorithm on, which holds a small publish until the previous one is
acknowledged: a final published on an otherwise quiet connection reached its reader
~40 ms late (bench ``single``: final p50 42 ms with Nagle, see docs/BENCHMARKS.md)."""


def tls_parameters(
    ca_file: Path | None = None, cert_file: Path | None = None, key_file: Path | None = None
) -> aiomqtt.TLSParameters:
    """TLS settings for aiomqtt that verify the broker; a client certificate when given.

    ``ca_file`` None means the system's trust store (a broker with a public
    certificate); ``key_file`` None means the key is in ``cert_file``.
    """
    return aiomqtt.TLSParameters(
        ca_certs=None if ca_file is None else str(ca_file.expanduser()),
        certfile=None if cert_file is None else str(cert_file.expanduser()),
        keyfile=None if key_file is None else str(key_file.expanduser()),
        cert_reqs=ssl.CERT_REQUIRED,
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerLogin:
    """Where a client connects and how it proves who it is.

    ``url`` is ``mqtt://[user@]host:port`` or ``mqtts://[user@]host:8883``;
    ``password`` is used when the URL names a user but no password (a password
    typed into a URL lands in shell history and ``ps``). ``ca_file`` verifies an
    mqtts:// broker (default: the system's trust store); ``cert_file`` and
    ``key_file`` add a client certificate. The password never shows in ``repr``.
    """

    url: str
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @classmethod
    def of(cls, broker: str | BrokerLogin) -> BrokerLogin:
        """A login for a bare URL (no password, no certificates), or the login given."""
        return broker if isinstance(broker, BrokerLogin) else cls(url=broker)

    def parsed(self) -> BrokerUrl:
        """The URL, parsed; ValueError when it is not a broker URL or TLS files lack TLS."""
        url = BrokerUrl.parse(self.url)
        if not url.tls and (self.ca_file or self.cert_file or self.key_file):
            raise ValueError("a CA or client certificate needs an mqtts:// url")
        return url

    def secret(self, url: BrokerUrl) -> str | None:
        """The password to log in with: the URL's own, else :attr:`password`."""
        return url.password if url.password is not None else self.password

    def tls(self) -> aiomqtt.TLSParameters:
        """TLS settings for this login's certificates."""
        return tls_parameters(self.ca_file, self.cert_file, self.key_file)
