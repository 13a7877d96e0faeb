"""Home Assistant's side: the Wyoming speech-to-text server inside the node."""

from __future__ import annotations

from urllib.parse import urlparse

from pydantic import Field, field_validator

from orac_node.config.base import Section


class WyomingSection(Section):
    """A Wyoming STT server (Home Assistant's protocol) served by the running node.

    Its connections are sessions like a satellite's: same models, pipeline,
    VAD, gate, speculative finals, cache, context and topics registry, and their
    transcripts also go out on MQTT. docs/HOME_ASSISTANT.md says how to add it.
    """

    uri: str = Field(
        "",
        description="Where to listen, e.g. tcp://0.0.0.0:10300 (Wyoming's usual STT port);"
        " empty: no Wyoming server.",
    )
    zeroconf: bool = Field(
        True,
        description="Advertise the server as _wyoming._tcp on the local network so Home"
        " Assistant discovers it (tcp:// URIs only).",
    )
    zeroconf_name: str = Field(
        "",
        description="The advertised service name; empty: orac-node-<node.id>.",
    )
    device_prefix: str = Field(
        "wyoming",
        description="A connection's device name is its Transcribe event's name when that is a"
        " valid device name, else this prefix and the client's address (wyoming-192.168.1.20).",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$",
    )

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value:
            return value
        parsed = urlparse(value)
        if parsed.scheme not in ("tcp", "unix"):
            raise ValueError(f"wyoming.uri must be tcp://host:port or unix://path, got {value!r}")
        if parsed.scheme == "tcp" and (parsed.hostname is None or parsed.port is None):
            raise ValueError(f"wyoming.uri needs a host and a port, got {value!r}")
        return value
