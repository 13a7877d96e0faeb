"""How to reach a broker: ``mqtt://`` and ``mqtts://`` URLs, and TLS settings.

The node's config, the CLI's ``--broker`` and :func:`orac_node.client.connect`
all take a broker URL, parsed here, once. The client accepts a login in it
(``mqtts://kitchen:PASSWORD@box.lan:8883``; the node's config refuses one), and
URLs end up in log lines and error messages, so the only way this module
prints one is :meth:`BrokerUrl.redacted`, and its errors never quote the URL
they reject.

TLS always verifies the broker's certificate and host name (against a CA file,
or the system's trust store when none is given): a satellite that skipped the
check would hand its password to whoever answers on port 8883.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import aiomqtt

PLAIN_PORT = 1883
TLS_PORT = 8883
_TLS_BY_SCHEME = {"mqtt": False, "mqtts": True}
SHAPE = "mqtt://host:port, or mqtts://host:port for TLS"

NO_DELAY: list[aiomqtt.types.SocketOption] = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
"""Socket options for every MQTT connection: send small packets at once. paho leaves
Nagle's algorithm on, which holds a small publish until the previous one is
acknowledged: a final published on an otherwise quiet connection reached its reader
~40 ms late (bench ``single``: final p50 42 ms with Nagle, see docs/BENCHMARKS.md)."""


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """A parsed broker URL; ``repr`` and :meth:`redacted` leave the password out."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        """Parse ``url``; ValueError (never quoting the URL) when it is not one."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ValueError(f"broker url must look like {SHAPE} (bad host or port)") from None
        if parts.scheme not in _TLS_BY_SCHEME or not parts.hostname:
            raise ValueError(f"broker url must look like {SHAPE}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("broker url must not have a path, query or fragment")
        tls = _TLS_BY_SCHEME[parts.scheme]
        return cls(
            host=parts.hostname,
            port=port or (TLS_PORT if tls else PLAIN_PORT),
            tls=tls,
            # Reserved characters in a user or password are percent-encoded in a URL.
            username=None if parts.username is None else unquote(parts.username),
            password=None if parts.password is None else unquote(parts.password),
        )

    def redacted(self) -> str:
        """The URL for logs and messages: the user name stays, the password is ``***``."""
        scheme = "mqtts" if self.tls else "mqtt"
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = ""
        if self.username is not None:
            user = quote(self.username, safe="") + (":***" if self.password else "") + "@"
        return f"{scheme}://{user}{host}:{self.port}"


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
