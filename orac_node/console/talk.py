"""The talk button: a browser's microphone streamed as one satellite utterance.

The page captures its microphone at 16 kHz and sends s16le mono blocks over its
WebSocket; a :class:`Talk` hands them to the SDK's :meth:`Client.stream`, which
publishes them as ``audio/<device>/chunk`` of the wire contract (re-cut into
20 ms chunks, kept until the final and sent again if the node dies) and ends
the session when the node's endpoint does, or when the user presses stop.
The console's broker user is the device: the shipped ACL lets user ``console``
publish ``audio/console/#`` and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from orac_node.client import Client, ClientError, StreamError
from orac_node.console.view import Event, transcript_event
from orac_node.wire import Final

log = logging.getLogger(__name__)

MAX_QUEUED_BLOCKS = 500
"""Blocks waiting for the broker: ~10 s of a page's 20 ms blocks. A page that sends
faster than the broker takes is cut off rather than held in memory."""
MAX_BLOCK_BYTES = 64_000
"""Largest block a page may send: 2 s of 16 kHz s16le, far above the 20-100 ms a
page's audio worklet hands over."""


class TalkError(ValueError):
    """What a page sent cannot be audio of a talk (odd length, too large, too fast)."""


class Talk:
    """One utterance from one page's microphone, from its first block to its final."""

    def __init__(
        self, client: Client, send: Callable[[Event], Awaitable[None]], *, language: str | None
    ) -> None:
        self.session = uuid.uuid4().hex[:16]
        self._client = client
        self._send = send
        self._language = language
        self._blocks: asyncio.Queue[bytes | None] = asyncio.Queue(MAX_QUEUED_BLOCKS)

    def feed(self, block: bytes) -> None:
        """The page's next microphone block (s16le, 16 kHz, mono)."""
        if len(block) % 2 or len(block) > MAX_BLOCK_BYTES:
            raise TalkError(f"a block of {len(block)} bytes is not s16le audio of at most 2 s")
        try:
            self._blocks.put_nowait(block)
        except asyncio.QueueFull:
            raise TalkError("audio arrives faster than the broker takes it") from None

    def stop(self) -> None:
        """The user pressed stop: the utterance ends with what was sent."""
        with contextlib.suppress(asyncio.QueueFull):  # a stuck stream: stopping is all left
            self._blocks.put_nowait(None)

    async def run(self) -> None:
        """Stream until the final (or a refusal); tell the page how it went."""
        await self._send({"kind": "talk", "state": "started", "session": self.session})
        try:
            async for t in self._client.stream(
                self._audio(), session=self.session, language=self._language, timeout=15
            ):
                await self._send({**transcript_event(t), "kind": "talk-transcript"})
                if isinstance(t, Final):
                    await self._send({"kind": "talk", "state": "done", "session": self.session})
        except StreamError as exc:
            log.info("console talk %s refused: %s", self.session, exc)
            await self._ended(f"{exc.code}: {exc.report.message}")
        except ClientError as exc:
            log.warning("console talk %s failed: %s", self.session, exc)
            await self._ended(str(exc))

    async def _ended(self, error: str) -> None:
        await self._send(
            {"kind": "talk", "state": "failed", "session": self.session, "error": error}
        )

    async def _audio(self) -> AsyncIterator[bytes]:
        while (block := await self._blocks.get()) is not None:
            yield block
