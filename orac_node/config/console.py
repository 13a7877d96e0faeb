"""The web console: one page that shows the node working, and a browser microphone."""

from __future__ import annotations

import ipaddress

from pydantic import Field, FilePath, SecretStr, model_validator

from orac_node.config.base import Section


class ConsoleSection(Section):
    """The live web console (docs/CONSOLE.md): `orac-node console`, or served by the node."""

    enabled: bool = Field(
        False,
        description="Serve the console from the node process too (`orac-node console` serves it"
        " on its own, from any machine that reaches the broker).",
    )
    host: str = Field(
        "127.0.0.1",
        description="Address to listen on. 0.0.0.0 serves the home network: then set tls_cert"
        " (a browser only lends its microphone to an https:// page, or to localhost) and"
        " http_password.",
    )
    port: int = Field(
        8480, ge=0, le=65535, description="Port of the console's page (0: any free one)."
    )
    username: str = Field(
        "console",
        description="Broker user the console logs in as (the shipped ACL's user console:"
        " reads transcripts, statuses and error reports). It is also the device name of the"
        " talk button's browser satellite (audio/console/chunk).",
    )
    password: SecretStr | None = Field(
        None,
        description="Broker password of username; from the environment keeps it out of this"
        " file: ORAC_NODE_CONSOLE__PASSWORD.",
    )
    http_password: SecretStr | None = Field(
        None,
        description="When set, browsers must log in (HTTP basic authentication, any user name,"
        " this password) before they see transcripts or use the microphone."
        " ORAC_NODE_CONSOLE__HTTP_PASSWORD.",
    )
    tls_cert: FilePath | None = Field(
        None,
        description="PEM certificate (chain) to serve https:// and wss:// with; the broker's"
        " server certificate works when it names this host.",
    )
    tls_key: FilePath | None = Field(
        None, description="Unencrypted PEM key of tls_cert; null when tls_cert holds it."
    )

    @model_validator(mode="after")
    def _key_needs_cert(self) -> ConsoleSection:
        if self.tls_key and not self.tls_cert:
            raise ValueError("console.tls_key needs console.tls_cert")
        return self

    @property
    def loopback(self) -> bool:
        """Whether only this machine can reach the page (a host name counts as not)."""
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"
