"""One utterance of a Wyoming client, carried by the node's own sessions.

Home Assistant sends ``audio-start``, chunks, then ``audio-stop`` once its own
VAD decides the user is done, and takes the first ``transcript``. The node's
pipeline does the rest as for a satellite (intake.open_local): partials while
the audio arrives, a speculative final at each pause, the final when the
client stops. Silence does not end the session (the client does), but its
length is still bounded by ``endpoint.max_duration_s``: a longer stream goes
on in a new session of the same device, and the transcript joins their finals.

Partials go back as ``transcript-chunk`` events carrying only newly *stable*
words (those never change within a session, pipeline/progress.py), so the
chunks concatenate into a growing prefix; the final is the authoritative
``transcript``, followed by ``transcript-stop`` (Wyoming 1.7's streaming
order: start, chunks, transcript, stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable

import numpy as np
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.error import Error
from wyoming.event import Event

from orac_node.audio import Samples, pcm_to_float
from orac_node.errors import AudioDecodeError
from orac_node.ingest.refusal import Refusal
from orac_node.ingest.session import Utterance, UtteranceKey
from orac_node.mqtt.listeners import Heard, Listeners
from orac_node.pipeline import Pipeline
from orac_node.wire import AudioFormat, ErrorCode, Final, Partial

log = logging.getLogger(__name__)

FINAL_TIMEOUT_S = 120.0
"""Longest wait for a session's final after audio-stop. The pipeline always
publishes one (an error final at worst), so this only guards against a wedged
node: a final behind a full queue of long decodes still arrives well inside it."""

Send = Callable[[Event], Awaitable[None]]

MAX_VOCABULARY = 200
"""Names and terms taken from one Transcribe, each list: far more than fit in the
prompt (whisper keeps about 224 tokens of it), few enough that a client sending
thousands costs nothing."""


def vocabulary(transcribe: Transcribe | None) -> str:
    """A Transcribe's ``transcript_terms`` then ``transcript_names`` as prompt text.

    Home Assistant sends the names of its areas and entities so the
    recognizer spells "radio" and "Porch light" the way its intents expect.
    Names go last: they take priority in Wyoming, and the prompt is cut from
    the front when too long (context.build_prompt), so they are kept longest.
    """
    if transcribe is None:
        return ""
    words: list[str] = []
    for listed in (transcribe.transcript_terms, transcribe.transcript_names):
        if isinstance(listed, list):
            words += [
                w.strip() for w in listed[:MAX_VOCABULARY] if isinstance(w, str) and w.strip()
            ]
    return ", ".join(dict.fromkeys(words)) + "." if words else ""


class Dialog:
    """audio-start .. audio-stop of one connection: node sessions, partials, one transcript."""

    def __init__(
        self,
        pipeline: Pipeline,
        listeners: Listeners,
        send: Send,
        *,
        device: str,
        language: str | None,
        rate: int,
        channels: int,
        prompt: str = "",
    ) -> None:
        self._pipeline = pipeline
        self._listeners = listeners
        self._send = send
        self.device = device
        self._language = language
        self._prompt = prompt  # the client's names and terms (vocabulary())
        self._rate = rate
        self._channels = channels
        self._heard: asyncio.Queue[Heard] = asyncio.Queue()
        self._sessions: list[str] = []  # node sessions, in order
        self._finals: dict[str, Final] = {}
        self._stable_sent: dict[str, int] = {}  # per session: characters of `stable` sent
        self._started = False  # transcript-start sent (before the first chunk, if any)
        self._utt: Utterance | None = None
        self.refused: Refusal | None = None
        self._reader = asyncio.create_task(self._read(), name=f"wyoming-{device}")

    # -- audio in -------------------------------------------------------------------

    async def feed(self, pcm: bytes) -> None:
        """One audio-chunk's PCM (16-bit, the audio-start's rate and channels)."""
        if self.refused is not None:
            return  # already told; the rest of this utterance is ignored
        try:
            samples = pcm_to_float(pcm, AudioFormat.S16LE, self._channels)
        except (AudioDecodeError, ValueError) as exc:
            await self._refuse(Refusal(self.device, ErrorCode.BAD_AUDIO, f"bad audio: {exc}"))
            return
        while samples.size and self.refused is None:
            utt = self._receiving() or await self._open()
            if utt is None:
                return
            # at most what fits: the rest goes on in the next session (max_duration_s)
            room = max(1, int(np.ceil(utt.room_s * self._rate)))
            self._pipeline.feed_local(utt, samples[:room])
            samples = samples[room:]

    async def finish(self) -> None:
        """audio-stop: end the open session, wait for every final, send the transcript."""
        try:
            if self.refused is not None:
                return
            utt = self._receiving()
            if utt is not None:
                self._pipeline.feed_local(utt, _NO_AUDIO, end=True)
            elif not self._sessions:  # audio-start, audio-stop and nothing in between
                await self._send_transcript("", self._language)
                return
            await self._stop_reader()  # from here on one task reads, so events stay in order
            async with asyncio.timeout(FINAL_TIMEOUT_S):
                while len(self._finals) < len(self._sessions) and self.refused is None:
                    await self._heard_one()
            if self.refused is None:
                finals = [self._finals[s] for s in self._sessions]
                text = " ".join(f.text for f in finals if f.rejected is None and f.text)
                await self._send_transcript(text, finals[-1].language)
        except TimeoutError:
            await self._send(Error(f"no final within {FINAL_TIMEOUT_S:g} s", "timeout").event())
        finally:
            await self.close()

    async def close(self) -> None:
        """The client is done or gone: end an open session now, stop listening."""
        utt = self._receiving()
        if utt is not None:  # vanished mid-utterance: its final still goes out on MQTT
            utt.incomplete = True
            self._pipeline.feed_local(utt, _NO_AUDIO, end=True)
        await self._stop_reader()
        for session in self._sessions:
            self._listeners.forget(self.device, session)

    async def _stop_reader(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    def _receiving(self) -> Utterance | None:
        utt = self._utt
        return utt if utt is not None and utt.receiving else None

    async def _open(self) -> Utterance | None:
        """A node session for what comes next (the first, or the next after max_duration_s)."""
        session = f"wy-{uuid.uuid4().hex[:16]}"
        key = UtteranceKey(self.device, session)
        opened = self._pipeline.open_local(
            key, topic=None, language=self._language, rate=self._rate, prompt=self._prompt
        )
        if isinstance(opened, Refusal):  # told here, not through the listener: once
            await self._refuse(opened)
            return None
        # before any audio, so nothing the node publishes about the session is missed
        self._listeners.listen(self.device, session, self._heard)
        self._sessions.append(session)
        self._utt = opened
        return opened

    async def _refuse(self, refusal: Refusal) -> None:
        self.refused = refusal
        await self._send(Error(refusal.message, refusal.code).event())

    # -- what the node publishes about our sessions -------------------------------

    async def _read(self) -> None:
        """Forward partials as they come (finals are awaited by :meth:`finish`)."""
        while True:
            await self._heard_one()

    async def _heard_one(self) -> None:
        heard = await self._heard.get()
        if isinstance(heard, Partial):
            await self._stream(heard)
        elif isinstance(heard, Final):
            self._finals[heard.session] = heard
        elif heard.code != ErrorCode.LATE_AUDIO:
            await self._refuse(heard)  # a refusal after opening: tell the client

    async def _stream(self, partial: Partial) -> None:
        sent = self._stable_sent.get(partial.session, 0)
        new = partial.stable[sent:]
        if not new.strip():
            return
        self._stable_sent[partial.session] = len(partial.stable)
        if self._started and not new.startswith(" "):  # a chunk went before this one
            new = f" {new}"
        if not self._started:
            self._started = True
            await self._send(TranscriptStart(language=self._language).event())
        await self._send(TranscriptChunk(new).event())

    async def _send_transcript(self, text: str, language: str | None) -> None:
        if not self._started:
            self._started = True
            await self._send(TranscriptStart(language=language).event())
        await self._send(Transcript(text, language=language).event())
        await self._send(TranscriptStop().event())


_NO_AUDIO: Samples = np.zeros(0, dtype=np.float32)
"""The empty piece that carries ``end``."""
