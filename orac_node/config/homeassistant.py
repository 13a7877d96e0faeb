"""Home Assistant's side: the Wyoming STT server inside the node, and MQTT discovery."""

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


DISCOVERY_PREFIX_PATTERN = r"^[^#+/\x00]+(/[^#+/\x00]+)*$"
"""Topic levels without MQTT wildcards, empty levels or NUL: the prefix starts
every config topic the node publishes, and a wildcard there would make the
publish invalid."""


class HomeAssistantSection(Section):
    """Home Assistant MQTT discovery: the node and its satellites as Home Assistant devices.

    With discovery on, the node publishes retained device configs under
    <prefix>/device/...: itself (ready, open sessions, queue, last final latency)
    and each satellite (a Transcript event per accepted final, a Last transcript
    sensor). docs/HOME_ASSISTANT.md says what appears and how to remove it.
    """

    discovery: bool = Field(
        False,
        description="Publish Home Assistant MQTT discovery configs (needs Home Assistant's"
        " MQTT integration on this broker, and the ACL's homeassistant rights).",
    )
    prefix: str = Field(
        "homeassistant",
        description="Home Assistant's discovery prefix (its MQTT integration's setting;"
        " homeassistant unless changed there).",
        pattern=DISCOVERY_PREFIX_PATTERN,
    )
