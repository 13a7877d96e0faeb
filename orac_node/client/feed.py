"""Transcripts on a topic filter, read from a :class:`~orac_node.client.Client` while open."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Self

from orac_node.client.connection import Connection
from orac_node.client.inbox import Inbox
from orac_node.client.link import payload_bytes
from orac_node.errors import ClientError, ContractError
from orac_node.wire import Final, Partial, decode_transcript

log = logging.getLogger("orac_node.client")


class TranscriptFeed:
    """Transcripts on one topic filter for a :class:`Client`, while it is open.

    Iterate it with ``async for`` (subscribed at the first read), inside
    ``async with`` when nothing published after entering may be missed.
    Leaving the loop or the block closes it (unsubscribes); it is read once.
    """

    def __init__(self, client: Connection, topic_filter: str) -> None:
        self.topic_filter = topic_filter
        self._client = client
        self._stack = AsyncExitStack()
        self._inbox: Inbox | None = None
        self._closed = False

    async def open(self) -> None:
        """Subscribe (once); later messages on the filter are kept for the reader."""
        if self._closed:
            raise ClientError("this transcript feed was closed")
        if self._inbox is None:
            self._inbox = await self._stack.enter_async_context(
                self._client._listen(self.topic_filter)
            )

    async def aclose(self) -> None:
        """Unsubscribe; a loop reading the feed ends."""
        self._closed = True
        if self._inbox is not None:
            self._inbox.put(None)  # wakes the reader, which sees the feed closed
        await self._stack.aclose()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[Partial | Final]:
        return self._read()

    async def _read(self) -> AsyncIterator[Partial | Final]:
        # A generator, so that leaving an `async for` early (break, an exception)
        # closes the feed too: asyncio closes an abandoned generator, not an object.
        try:
            await self.open()
            assert self._inbox is not None
            while True:
                message = await self._inbox.get()
                if message is None:
                    if self._closed:
                        return
                    continue
                try:
                    yield decode_transcript(payload_bytes(message))
                except ContractError as exc:
                    log.debug("skipping a transcript on %s: %s", message.topic, exc)
        finally:
            await self.aclose()
