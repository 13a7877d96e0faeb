"""What the console shows, kept from the broker's messages: pure logic, no I/O.

Each message the bridge receives becomes one event for the pages already open
(:meth:`ConsoleView.apply`), and the view keeps what a page opened later needs
to show the same (:meth:`ConsoleView.snapshot`): every node's status, every
satellite seen, the recent finals, an hour of final latencies, each device's
latest error reports. Payloads are validated by the wire contract's own
decoders; one that does not parse is counted and skipped, never shown.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from orac_node.errors import ContractError
from orac_node.wire import (
    ErrorReport,
    Final,
    NodeStatus,
    Partial,
    SatelliteStatus,
    decode_transcript,
)

log = logging.getLogger(__name__)

RECENT_FINALS = 40
"""Finals a newly opened page is shown: a screenful of the live stream."""
LATENCY_WINDOW_S = 3600.0
"""The latency histogram covers the last hour, as the issue asks; at a final every
few seconds from each of a dozen satellites that is some thousands of floats."""
ERRORS_PER_DEVICE = 5
"""Error reports kept per device: the latest few say what is wrong now."""
MAX_DEVICES = 500
"""Satellites and error lists kept: a broker flooded with made-up device names must
not grow the console without bound (the oldest seen are forgotten first)."""

Event = dict[str, Any]
"""One message to the pages: ``{"kind": ..., ...}``, sent as JSON."""

_TRANSCRIPT_FIELDS = (
    "type",
    "node",
    "model",
    "device",
    "session",
    "topic",
    "text",
    "ts",
)
_PARTIAL_FIELDS = ("stable", "unstable", "seq", "audio_s")
_FINAL_FIELDS = (
    "language",
    "language_p",
    "confidence",
    "reason",
    "rejected",
    "latency_ms",
    "audio_s",
    "incomplete",
    "stable_revised",
)


def transcript_event(t: Partial | Final) -> Event:
    """A transcript as the page shows it (no words or segments: the page has no use for them)."""
    fields = _TRANSCRIPT_FIELDS + (_FINAL_FIELDS if isinstance(t, Final) else _PARTIAL_FIELDS)
    return {"kind": "transcript", **{name: getattr(t, name) for name in fields}}


@dataclass
class _Satellite:
    device: str
    online: bool | None = None  # None: never sent a heartbeat (a satellite without the SDK)
    topics: list[str] = field(default_factory=list)
    last_heard: float | None = None
    last_text: str | None = None

    def event(self) -> Event:
        return {"kind": "satellite", **dataclasses.asdict(self)}


@dataclass
class ConsoleView:
    """The console's picture of the home, built from the broker's messages."""

    nodes: dict[str, Event] = field(default_factory=dict)
    satellites: dict[str, _Satellite] = field(default_factory=dict)
    finals: deque[Event] = field(default_factory=lambda: deque(maxlen=RECENT_FINALS))
    latencies: deque[tuple[float, float]] = field(default_factory=deque)
    errors: dict[str, deque[Event]] = field(default_factory=dict)
    skipped: int = 0
    """Messages that did not parse (bad payloads on topics the console reads)."""

    def apply(self, topic: str, payload: bytes, now: float) -> list[Event]:
        """The events one message makes (none for a malformed one)."""
        try:
            if topic.startswith("transcript/"):
                return self._transcript(decode_transcript(payload), now)
            parts = topic.split("/")
            if topic.startswith("orac/node/") and parts[-1] == "status":
                return [self._node(NodeStatus.decode(payload), now)]
            if topic.startswith("orac/satellite/") and parts[-1] == "status":
                return [self._heartbeat(SatelliteStatus.decode(payload))]
            if topic.startswith("orac/device/") and parts[-1] == "error":
                return [self._error(ErrorReport.decode(payload))]
        except (ContractError, ValueError, TypeError) as exc:
            self.skipped += 1
            log.debug("console: skipped a message on %s: %s", topic, exc)
        return []

    def snapshot(self, now: float) -> Event:
        """All a newly opened page needs to show what the open ones show."""
        self._forget_latencies(now)
        return {
            "kind": "snapshot",
            "now": now,
            "nodes": list(self.nodes.values()),
            "satellites": [s.event() for s in self.satellites.values()],
            "finals": list(self.finals),
            "latencies": [ms for _, ms in self.latencies],
            "errors": [e for reports in self.errors.values() for e in reports],
        }

    def _transcript(self, t: Partial | Final, now: float) -> list[Event]:
        event = transcript_event(t)
        satellite = self._satellite(t.device)
        satellite.last_heard = t.ts
        events = [event]
        if isinstance(t, Final):
            self.finals.append(event)
            if t.rejected is None:
                satellite.last_text = t.text
                self.latencies.append((now, t.latency_ms))
                self._forget_latencies(now)
        events.append(satellite.event())
        return events

    def _node(self, status: NodeStatus, now: float) -> Event:
        event = {"kind": "node", "received": now, **dataclasses.asdict(status)}
        self.nodes[status.node] = event
        return event

    def _heartbeat(self, status: SatelliteStatus) -> Event:
        satellite = self._satellite(status.device)
        satellite.online = status.state == "online"
        satellite.topics = list(status.topics)
        return satellite.event()

    def _error(self, report: ErrorReport) -> Event:
        event = {"kind": "error", **dataclasses.asdict(report)}
        reports = self.errors.pop(report.device, None) or deque(maxlen=ERRORS_PER_DEVICE)
        reports.append(event)
        self.errors[report.device] = reports  # re-inserted: the latest device last
        while len(self.errors) > MAX_DEVICES:
            del self.errors[next(iter(self.errors))]
        return event

    def _satellite(self, device: str) -> _Satellite:
        satellite = self.satellites.pop(device, None) or _Satellite(device)
        self.satellites[device] = satellite  # re-inserted: the latest heard last
        while len(self.satellites) > MAX_DEVICES:
            del self.satellites[next(iter(self.satellites))]
        return satellite

    def _forget_latencies(self, now: float) -> None:
        while self.latencies and self.latencies[0][0] < now - LATENCY_WINDOW_S:
            self.latencies.popleft()
