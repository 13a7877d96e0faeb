"""The talk button: a browser's microphone streamed as one satellite utterance.

The page captures its microphone at the audio device's own rate (browsers
differ in whether they will resample a microphone for a 16 kHz audio context)
and sends s16le mono blocks over its WebSocket; a :class:`Talk` resamples
them to 16 kHz with soxr and hands them to the SDK's :meth:`Client.stream`, which
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

import numpy as np

from orac_node.audio import StreamResampler, float_to_s16, pcm_to_float
from orac_node.client import Client, ClientError, StreamError
from orac_node.console.view import Event, transcript_event
from orac_node.wire import MAX_RATE, MIN_RATE, AudioFormat, Final

log = logging.getLogger(__name__)

MAX_QUEUED_BLOCKS = 500
"""Blocks waiting for the broker: ~10 s of a page's 20 ms blocks. A page that sends
faster than the broker takes is cut off rather than held in memory."""
MAX_BLOCK_BYTES = 192_000
"""Largest block a page may send: 2 s of 48 kHz s16le, far above the 20 ms a page's
audio worklet hands over."""

FINAL_WAIT_S = 15.0
"""How long after its last block a talk waits for the final before it tells the page it
failed: a final takes well under a second on a Jetson; the rest is for a busy node."""


def talk_failed(error: str, session: str | None = None) -> Event:
    """The event that tells the page its talk ended without a final, and why."""
    return {"kind": "talk", "state": "failed", "session": session, "error": error}


class TalkError(ValueError):
    """What a page sent cannot be audio of a talk (odd length, too large, too fast)."""


class Talk:
    """One utterance from one page's microphone, from its first block to its final."""

    def __init__(
        self,
        client: Client,
        send: Callable[[Event], Awaitable[None]],
        *,
        rate: int,
        language: str | None,
    ) -> None:
        if not MIN_RATE <= rate <= MAX_RATE:
            raise TalkError(f"a microphone rate of {rate} Hz is outside {MIN_RATE}-{MAX_RATE}")
        self.session = uuid.uuid4().hex[:16]
        self._client = client
        self._send = send
        self._language = language
        self._resampler = StreamResampler(rate)
        self._stopped = False
        self._blocks: asyncio.Queue[bytes | None] = asyncio.Queue(MAX_QUEUED_BLOCKS)

    def feed(self, block: bytes) -> None:
        """The page's next microphone block (s16le, mono, at the rate it announced)."""
        if self._stopped:
            return  # blocks still in flight after stop
        if len(block) % 2 or len(block) > MAX_BLOCK_BYTES:
            raise TalkError(f"a block of {len(block)} bytes is not s16le audio of at most 2 s")
        samples = self._resampler.process(pcm_to_float(block, AudioFormat.S16LE, 1))
        try:
            self._blocks.put_nowait(float_to_s16(samples))
        except asyncio.QueueFull:
            raise TalkError("audio arrives faster than the broker takes it") from None

    def stop(self) -> None:
        """The user pressed stop (or closed the page): the utterance ends with what was sent."""
        if self._stopped:
            return
        self._stopped = True
        tail = self._resampler.process(np.zeros(0, np.float32), last=True)  # the filter's last ms
        with contextlib.suppress(asyncio.QueueFull):  # a stuck stream: stopping is all left
            if tail.size:
                self._blocks.put_nowait(float_to_s16(tail))
            self._blocks.put_nowait(None)

    async def run(self) -> None:
        """Stream until the final (or a refusal); tell the page how it went."""
        await self._send({"kind": "talk", "state": "started", "session": self.session})
        try:
            async for t in self._client.stream(
                self._audio(), session=self.session, language=self._language, timeout=FINAL_WAIT_S
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
        await self._send(talk_failed(error, self.session))

    async def _audio(self) -> AsyncIterator[bytes]:
        while (block := await self._blocks.get()) is not None:
            yield block
