"""The messages a :class:`~orac_node.client.Client` routes to one of its readers."""

from __future__ import annotations

import asyncio
import logging

import aiomqtt

log = logging.getLogger("orac_node.client")

INBOX_LIMIT = 1000
"""Messages held for one reader (a stream, a transcript feed) that is slow to take
them; beyond this the newest are dropped and logged. A session publishes a few
dozen transcripts, so only a feed nobody reads for a long while ever fills up,
and it should not hold the whole house's transcripts in memory."""


class Inbox:
    """Messages for one reader of a :class:`Client` (a stream, a transcript feed).

    Besides messages it carries ``None`` ("look again": the reader's situation
    changed) and exceptions (the connection or the reader's audio sender failed).
    """

    def __init__(self, filters: tuple[str, ...]) -> None:
        self.filters = filters
        self._queue: asyncio.Queue[aiomqtt.Message | BaseException | None] = asyncio.Queue(
            INBOX_LIMIT
        )
        self.dropped = 0

    def put(self, item: aiomqtt.Message | BaseException | None) -> None:
        """Keep ``item`` for the reader (a full inbox drops messages, never the rest)."""
        if isinstance(item, BaseException) or item is None:
            if self._queue.full():
                self._queue.get_nowait()  # a failure or wake-up must get through
            self._queue.put_nowait(item)
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % INBOX_LIMIT == 0:
                log.warning(
                    "%d message(s) on %s dropped: nobody read them",
                    self.dropped,
                    ", ".join(self.filters),
                )

    async def get(self) -> aiomqtt.Message | None:
        """The next message or ``None``; a failure put here raises, now and later."""
        item = await self._queue.get()
        if isinstance(item, BaseException):
            self._queue.put_nowait(item)  # every later get fails the same way
            raise item
        return item
