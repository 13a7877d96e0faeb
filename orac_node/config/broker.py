"""The broker: where it is (:class:`BrokerUrl`) and how the node talks to it.

The node's config, the CLI's ``--broker`` and the client SDK all take a broker
URL, parsed here, once. The client accepts a login in it
(``mqtts://kitchen:PASSWORD@box.lan:8883``; the node's config refuses one), and
URLs end up in log lines and error messages, so the only way this module
prints one is :meth:`BrokerUrl.redacted`, and its errors never quote the URL
they reject.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator

from orac_node.config.base import Section

PLAIN_PORT = 1883
TLS_PORT = 8883
_TLS_BY_SCHEME = {"mqtt": False, "mqtts": True}
SHAPE = "mqtt://host:port, or mqtts://host:port for TLS"


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


class BrokerSection(Section):
    """Where the MQTT broker is and how to talk to it."""

    url: str = Field(
        "mqtt://127.0.0.1:1883",
        description="mqtt://host:port of the broker, or mqtts://host:port for TLS (8883 when"
        " no port is given). The shipped broker config (mosquitto/orac-node.conf) takes plain"
        " connections on 127.0.0.1:1883 only; a node on another machine uses"
        " mqtts://broker-host:8883 with ca_file. No credentials in the URL: they would show in"
        " `ps` and logs; use username/password.",
    )
    username: str | None = Field(
        None,
        description="Username, when the broker wants one (the shipped broker does: user"
        " orac-node).",
    )
    password: SecretStr | None = Field(
        None,
        description="Password for username. Set it from the environment to keep it out of this"
        " file: ORAC_NODE_BROKER__PASSWORD. It is never logged.",
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive, seconds.")
    reconnect_min_s: float = Field(
        0.5, gt=0, le=60, description="First reconnect delay, seconds; it doubles up to the cap."
    )
    reconnect_max_s: float = Field(
        4.0,
        gt=0,
        le=600,
        description="Reconnect delay cap, seconds: a restarted broker is back in service within"
        " it (each delay is jittered between half the ceiling and the ceiling).",
    )
    session_expiry_s: int = Field(
        600,
        ge=0,
        le=86_400,
        description="How long the broker keeps the node's session (subscriptions and the QoS 1"
        " audio queued for it) while the node is away: a restart or crash within it loses no"
        " audio. 0 ends the session at every disconnect.",
    )
    outbox_size: int = Field(
        10_000,
        ge=100,
        le=1_000_000,
        description="Messages held for the broker while disconnected; beyond it the oldest"
        " partials are dropped first, then anything (counted, logged).",
    )
    ca_file: FilePath | None = Field(
        None,
        description="TLS (mqtts:// only): PEM CA certificate the broker's certificate must"
        " chain to; null = the system's trust store. The broker's host name is always checked"
        " against its certificate.",
    )
    cert_file: FilePath | None = Field(
        None,
        description="PEM client certificate, for a broker that requires one"
        " (require_certificate true; mqtts:// only).",
    )
    key_file: FilePath | None = Field(
        None, description="Unencrypted PEM key of cert_file; null when cert_file holds it."
    )

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        url = BrokerUrl.parse(value)
        if url.username is not None or url.password is not None:
            # The node would log them with the URL; they belong in username/password.
            raise ValueError("put credentials in broker.username and broker.password, not the url")
        return value

    @model_validator(mode="after")
    def _tls_files_need_tls(self) -> BrokerSection:
        # Certificates with a plain mqtt:// URL would be ignored and the password
        # sent in clear: refuse rather than guess which one was meant.
        if not self.tls and (self.ca_file or self.cert_file or self.key_file):
            raise ValueError("ca_file, cert_file and key_file need an mqtts:// url")
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")
        return self

    @property
    def parsed(self) -> BrokerUrl:
        """The URL, parsed."""
        return BrokerUrl.parse(self.url)

    @property
    def tls(self) -> bool:
        """Whether the URL asks for TLS (mqtts://)."""
        return self.parsed.tls

    @property
    def host(self) -> str:
        """Broker host name from the URL."""
        return self.parsed.host

    @property
    def port(self) -> int:
        """Broker port from the URL (1883, or 8883 for mqtts://, when absent)."""
        return self.parsed.port
