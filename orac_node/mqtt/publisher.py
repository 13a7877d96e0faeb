"""Handing the node's outgoing messages to the bus, each on its topic with its QoS.

Partials go at QoS 0 and are the first to be dropped when the outbox is full
(a stale partial is worthless); finals, error reports and statuses go at QoS 1,
and the retained status is what the Last Will overwrites when the node dies.
What goes *into* a transcript is the pipeline's business (pipeline/messages.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from orac_node import __version__
from orac_node.ingest.refusal import Refusal
from orac_node.mqtt.bus import Bus, Outgoing
from orac_node.mqtt.listeners import Listeners
from orac_node.wire import (
    ErrorReport,
    Final,
    NodeState,
    NodeStatus,
    Partial,
    SessionClaim,
    claim_topic,
    error_topic,
    status_topic,
    transcript_topic,
)

log = logging.getLogger(__name__)


def offline_status(node_id: str, model: str) -> Outgoing:
    """The retained ``offline`` status, also used as the MQTT Last Will."""
    status = NodeStatus(node_id, "offline", __version__, model, 0, 0, time.time())
    return Outgoing(status_topic(node_id), status.encode(), qos=1, retain=True)


class TranscriptPublisher:
    """Publishes transcripts, error reports and the node's status."""

    def __init__(
        self,
        bus: Bus,
        *,
        node_id: str,
        model: str,
        listeners: Listeners | None = None,
        on_final: Callable[[Final], None] | None = None,
    ) -> None:
        self._bus = bus
        self.node_id = node_id
        self.model = model
        self.listeners = listeners or Listeners()  # clients of the node itself (Wyoming)
        self._on_final = on_final  # after each final is queued (Home Assistant's events)
        self.last_final_ms: float | None = None
        """``latency_ms`` of the latest final published, for the status."""
        self.started = time.time()
        """When the node started, for the status (the console shows the uptime)."""

    def partial(self, partial: Partial) -> None:
        """An interim hypothesis (dropped first if the outbox is full)."""
        topic = transcript_topic(partial.topic)
        self._bus.publish(Outgoing(topic, partial.encode(), qos=0, droppable=True))
        self.listeners.deliver(partial)

    def final(self, final: Final, *, on_sent: Callable[[], None] | None = None) -> None:
        """The session's one final; ``on_sent`` runs on the broker's PUBACK."""
        topic = transcript_topic(final.topic)
        self._bus.publish(Outgoing(topic, final.encode(), qos=1, on_sent=on_sent))
        self.listeners.deliver(final)
        self.last_final_ms = final.latency_ms
        if self._on_final is not None:
            try:
                self._on_final(final)
            except Exception:  # the final is out: a failure here must not make it fail too
                log.exception("after publishing the final of %s", final.session)

    def claim(self, claim: SessionClaim) -> None:
        """Tell the other nodes this one decodes a session (docs/FLEET.md).

        Retained: a node that restarts learns who took its devices' last sessions
        before it claims the sessions it replays from its spool.
        """
        self._bus.publish(Outgoing(claim_topic(claim.device), claim.encode(), qos=1, retain=True))

    def error(self, refusal: Refusal) -> None:
        """Tell a device what was wrong with its message."""
        report = ErrorReport(
            node=self.node_id,
            device=refusal.device,
            code=refusal.code,
            message=refusal.message,
            ts=time.time(),
            session=refusal.session,
            seq=refusal.seq,
            dropped=refusal.dropped,
        )
        self._bus.publish(Outgoing(error_topic(refusal.device), report.encode(), qos=1))
        self.listeners.deliver(refusal)

    def status(
        self,
        state: NodeState,
        *,
        sessions: int,
        queued: int,
        model: str | None = None,
        capacity: int | None = None,
        overloaded: bool = False,
    ) -> None:
        """Publish the retained node status (``model``: its finals model, if not the first)."""
        status = NodeStatus(
            node=self.node_id,
            state=state,
            version=__version__,
            model=model or self.model,
            sessions=sessions,
            queued=queued,
            ts=time.time(),
            last_final_ms=self.last_final_ms,
            capacity=capacity,
            overloaded=overloaded,
            started=round(self.started, 3),
        )
        self._bus.publish(Outgoing(status_topic(self.node_id), status.encode(), qos=1, retain=True))
