"""The node's voice: its retained :class:`NodeStatus`, and :class:`ErrorReport` to senders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from orac_node.wire.base import MAX_TOPIC_BYTES, PROTOCOL_VERSION, JsonPayload

STATUS_FILTER = "orac/node/+/status"
ERROR_FILTER = "orac/device/+/error"
"""Every device's error reports (the console shows them)."""

NodeState = Literal["starting", "ready", "draining", "offline"]


def status_topic(node_id: str) -> str:
    """Retained status topic of one node."""
    return f"orac/node/{node_id}/status"


def error_topic(device: str) -> str:
    """Topic on which a device is told what was wrong with its messages."""
    return f"orac/device/{device}/error"


def error_topic_fits(device: str) -> bool:
    """Whether :func:`error_topic` of ``device`` is short enough to publish."""
    if len(device) * 4 + len(error_topic("")) <= MAX_TOPIC_BYTES:
        return True  # fits even if every character takes 4 bytes: no need to encode
    return len(error_topic(device).encode()) <= MAX_TOPIC_BYTES


@dataclass(frozen=True, slots=True)
class NodeStatus(JsonPayload):
    """Retained availability of one node; the Last Will carries ``offline``."""

    node: str
    state: NodeState
    version: str
    model: str
    sessions: int
    queued: int
    ts: float
    last_final_ms: float | None = None
    """``latency_ms`` of the node's most recent published final (null before its first):
    Home Assistant's Last final latency sensor reads it."""
    capacity: int | None = None
    """The node's decode workers: its weight when nodes share the satellites
    (docs/FLEET.md); null from a node of an older release, counted as 1."""
    overloaded: bool = False
    """The node refuses new sessions with ``overloaded`` (it is behind, or at the session
    cap it learned, ingest/load.py); other nodes of a fleet take its devices' new ones."""
    started: float | None = None
    """When the node process started (Unix time): its uptime is ``ts - started``. Null
    from a node of an older release, and in the Last Will."""
    v: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class ErrorReport(JsonPayload):
    """Why a device's message was refused, published on its error topic.

    ``dropped`` says how many of the device's messages the report stands for:
    on ``rate_limited`` reports, how many were dropped since its previous report
    (reports are rate-limited too, so one stands for many refused messages); on
    ``late_audio``, how many chunks of an ended session were dropped.
    """

    node: str
    device: str
    code: str
    message: str
    ts: float
    session: str | None = None
    seq: int | None = None
    dropped: int | None = None
    v: int = PROTOCOL_VERSION
