"""What the node publishes for Home Assistant's MQTT discovery (``homeassistant.discovery``).

- ``orac/device/<device>/transcript``: retained JSON :class:`DeviceTranscript`, the
  device's latest accepted final, which its Home Assistant ``event`` and ``sensor``
  entities read. Home Assistant cannot pick one device's finals out of
  ``transcript/<topic>`` (its templates can filter, but every entity would then be
  woken by every device's finals), so the node republishes them per device.
- ``<prefix>/device/<object id>/config``: Home Assistant's own device discovery
  topic (retained; empty: the device is removed). What goes in it is built by
  homeassistant/discovery.py.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from orac_node.wire.base import PROTOCOL_VERSION, JsonPayload
from orac_node.wire.transcripts import Final

DEVICE_TRANSCRIPT_FILTER = "orac/device/+/transcript"
TRANSCRIPT_EVENT = "transcript"
"""The one ``event_type`` of a satellite's Transcript event entity."""

_OBJECT_ID_RE = re.compile(r"[A-Za-z0-9_-]+")
"""What Home Assistant accepts as a discovery topic's object id (its TOPIC_MATCHER).
Device and node names may also hold dots, which it refuses."""
_NAME_HASH_CHARS = 8
"""Hex digits of the name's SHA-1 added to an object id whose name had to be changed:
``kitchen.left`` and ``kitchen_left`` must not share a Home Assistant device."""


def device_transcript_topic(device: str) -> str:
    """Retained latest accepted final of one device, for Home Assistant's entities."""
    return f"orac/device/{device}/transcript"


def discovery_object_id(kind: str, name: str) -> str:
    """Home Assistant object id of a node or satellite: ``orac_<kind>_<name>``.

    A name with characters Home Assistant refuses in a topic's object id (``.``)
    gets them replaced by ``_`` and a short hash of the real name appended, so
    the id stays stable and distinct.
    """
    object_id = f"orac_{kind}_{name}"
    if _OBJECT_ID_RE.fullmatch(object_id):
        return object_id
    digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:_NAME_HASH_CHARS]
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", object_id)
    return f"{cleaned}_{digest}"


def discovery_config_topic(prefix: str, object_id: str) -> str:
    """Home Assistant's device discovery topic: ``<prefix>/device/<object id>/config``."""
    return f"{prefix}/device/{object_id}/config"


@dataclass(frozen=True, slots=True)
class DeviceTranscript(JsonPayload):
    """A device's latest accepted final, as Home Assistant's event entity wants it.

    ``event_type`` is what its ``event`` entity requires; every other key becomes an
    attribute of the event (and of the Last transcript sensor). Only finals with
    text that were not rejected are published: a ``no_speech`` or ``duplicate``
    final is not something the user said to this device.
    """

    device: str
    session: str
    topic: str
    text: str
    language: str
    confidence: float
    latency_ms: float
    node: str
    ts: float
    event_type: str = TRANSCRIPT_EVENT
    v: int = PROTOCOL_VERSION

    @classmethod
    def of(cls, final: Final) -> DeviceTranscript:
        """The event for one final (which the caller has checked was accepted)."""
        return cls(
            device=final.device,
            session=final.session,
            topic=final.topic,
            text=final.text,
            language=final.language,
            confidence=final.confidence,
            latency_ms=final.latency_ms,
            node=final.node,
            ts=final.ts,
        )


def is_transcript_event(final: Final) -> bool:
    """Whether a final becomes a Home Assistant transcript event: text, not rejected."""
    return bool(final.text) and final.rejected is None
