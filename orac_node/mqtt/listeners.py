"""In-process listeners for one session's transcripts (the Wyoming server's connections).

Everything the node publishes about a session (partials, its final, error
reports) still goes to the broker; a client connected to the node itself also
gets it here, in order, without a round trip through the broker. A session
nobody listens to costs one dict lookup per message.
"""

from __future__ import annotations

import asyncio

from orac_node.ingest.refusal import Refusal
from orac_node.wire import Final, Partial

Heard = Partial | Final | Refusal
"""What a listener receives about its session."""


class Listeners:
    """Queues of what the node publishes, for the sessions someone listens to."""

    def __init__(self) -> None:
        self._queues: dict[tuple[str, str], asyncio.Queue[Heard]] = {}

    def listen(self, device: str, session: str, queue: asyncio.Queue[Heard]) -> None:
        """Put a session's messages on ``queue`` (call before its first audio, to miss none).

        Several sessions may share one queue (a Wyoming utterance that outlasted
        ``endpoint.max_duration_s`` and went on in a second session).
        """
        self._queues[(device, session)] = queue

    def forget(self, device: str, session: str) -> None:
        """Stop receiving them (the client is done or gone)."""
        self._queues.pop((device, session), None)

    def deliver(self, heard: Heard) -> None:
        """Hand a published message to its session's listener, if it has one."""
        if heard.session is None:
            return
        queue = self._queues.get((heard.device, heard.session))
        if queue is not None:
            queue.put_nowait(heard)
