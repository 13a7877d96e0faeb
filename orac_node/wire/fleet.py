"""Several nodes on one broker: the claim that makes one of them decode a session.

``orac/claim/<device>`` carries :class:`SessionClaim` (JSON, QoS 1,
retained: the device's latest): a node that owns a new session of
``<device>`` says so, and the first claim of a session that every node
receives, in the broker's order, decides which node decodes it
(docs/FLEET.md). The session id travels in the
payload, not the topic, since a satellite may choose ids that are not topic
levels.
"""

from __future__ import annotations

from dataclasses import dataclass

from orac_node.wire.base import PROTOCOL_VERSION, JsonPayload

CLAIM_FILTER = "orac/claim/+"


def claim_topic(device: str) -> str:
    """Where nodes claim the sessions of ``device``."""
    return f"orac/claim/{device}"


@dataclass(frozen=True, slots=True)
class SessionClaim(JsonPayload):
    """Node ``node`` decodes session ``session`` of ``device`` (unless another claimed first)."""

    node: str
    device: str
    session: str
    ts: float
    v: int = PROTOCOL_VERSION
