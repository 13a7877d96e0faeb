"""Intake: incoming audio messages validated and routed into utterances.

Owns the table of open sessions. For every message it checks the topic and
size, decodes the payload (chunk, raw PCM or whole file), finds or opens the
session's :class:`~orac_node.session.Utterance` and feeds it; then it hands
the utterance to the node (``on_audio``), which decides about partials and
finals. Refusals go to ``reject``, which publishes them to the sender.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from orac_node.audio import decode_file_bytes_async, pcm_to_float
from orac_node.config import NodeConfig
from orac_node.contract import (
    SAMPLE_RATE,
    AudioChunk,
    AudioFormat,
    AudioKind,
    ErrorCode,
    audio_topic_device,
    parse_audio_topic,
)
from orac_node.endpoint import EndpointRules, EndReason
from orac_node.errors import AudioDecodeError, ContractError
from orac_node.rawstream import RawStream
from orac_node.session import Piece, Utterance, UtteranceKey
from orac_node.vad import SileroVad

log = logging.getLogger(__name__)

CLOSED_MEMORY = 4096
"""Recently finished sessions remembered, so late chunks of a finished session
are recognised (and dropped) instead of opening a second session of that id."""
RAW_STREAM_FORGET_S = 60.0
"""A raw stream silent this long is forgotten (its VAD state and pre-roll)."""


class Reject(Protocol):
    """Tell a device its message was refused."""

    def __call__(
        self,
        device: str,
        code: str,
        message: str,
        session: str | None = None,
        seq: int | None = None,
    ) -> None:
        """Publish the refusal."""


class Intake:
    """Validates audio messages and feeds them into utterances."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        vad: SileroVad,
        on_audio: Callable[[Utterance], None],
        reject: Reject,
        spawn: Callable[[Coroutine[Any, Any, None], str], None],
    ) -> None:
        self.config = config
        self._rules = EndpointRules.from_config(config.endpoint)
        self._vad = vad
        self._on_audio = on_audio
        self._reject = reject
        self._spawn = spawn
        self.utterances: dict[UtteranceKey, Utterance] = {}
        self._closed: OrderedDict[UtteranceKey, EndReason] = OrderedDict()
        self._raw: dict[str, RawStream] = {}
        self.late_chunks = 0

    def on_message(self, topic: str, payload: bytes) -> None:
        """Route one message from ``audio/#``; never raises for bad input."""
        try:
            device, kind = parse_audio_topic(topic)
        except ContractError as exc:
            self._reject(audio_topic_device(topic), exc.code, exc.message)
            return
        if kind is None:
            log.debug("ignoring %s: not an audio kind of contract v1", topic)
            return
        limits = self.config.ingest
        max_bytes = limits.max_file_bytes if kind is AudioKind.FILE else limits.max_chunk_bytes
        if len(payload) > max_bytes:
            self._reject(device, ErrorCode.TOO_LARGE, f"{len(payload)} bytes > {max_bytes}")
        elif kind is AudioKind.CHUNK:
            self._on_chunk(device, payload)
        elif kind is AudioKind.RAW:
            self._on_raw(device, payload)
        else:
            self._spawn(self._on_file(device, payload), f"file-{device}")

    def close(self, utt: Utterance) -> None:
        """The utterance endpointed: later chunks of its session are late."""
        self.utterances.pop(utt.key, None)
        self._closed[utt.key] = utt.reason or EndReason.END
        while len(self._closed) > CLOSED_MEMORY:
            self._closed.popitem(last=False)

    def tick(self, now: float) -> list[Utterance]:
        """Apply wall-clock endpoints; return the utterances they ended."""
        ended = []
        idle_s = self.config.endpoint.idle_timeout_s
        reorder_wait_s = self.config.ingest.reorder_wait_ms / 1000
        for utt in list(self.utterances.values()):
            if utt.tick(now, idle_timeout_s=idle_s, reorder_wait_s=reorder_wait_s) is not None:
                ended.append(utt)
        for device, stream in list(self._raw.items()):
            if now - stream.last_data_at > RAW_STREAM_FORGET_S:
                del self._raw[device]
        return ended

    def end_all(self, reason: EndReason, now: float) -> list[Utterance]:
        """End every open utterance (shutdown); return them."""
        ended = []
        for utt in list(self.utterances.values()):
            if utt.receiving:
                utt.incomplete = True
                utt.end_now(reason, now)
                ended.append(utt)
        return ended

    # -- the three kinds of audio -----------------------------------------

    def _on_chunk(self, device: str, payload: bytes) -> None:
        now = time.monotonic()
        try:
            chunk = AudioChunk.decode(payload)
            samples = pcm_to_float(chunk.pcm, chunk.format, chunk.channels)
        except ContractError as exc:
            self._reject(device, exc.code, exc.message)
            return
        except AudioDecodeError as exc:
            self._reject(device, ErrorCode.BAD_AUDIO, str(exc))
            return
        key = UtteranceKey(device, chunk.session)
        utt = self.utterances.get(key)
        if utt is None:
            if key in self._closed:
                self._late_chunk(key, chunk.seq)
                return
            if len(self.utterances) >= self.config.ingest.max_sessions:
                message = "node is at its session limit"
                self._reject(device, ErrorCode.TOO_MANY_SESSIONS, message, chunk.session, chunk.seq)
                return
            utt = self._open(key, chunk.topic, chunk.lang, chunk.rate, now)
        elif chunk.rate != utt.rate:
            message = f"rate changed from {utt.rate} to {chunk.rate} Hz within the session"
            self._reject(device, ErrorCode.BAD_RATE, message, chunk.session, chunk.seq)
            return
        utt.accept(chunk.seq, Piece(samples, chunk.end), now)
        self._on_audio(utt)

    def _late_chunk(self, key: UtteranceKey, seq: int) -> None:
        """A chunk for a session that already has its final: dropped, counted."""
        self.late_chunks += 1
        if self._closed.get(key) is EndReason.MAX_DURATION:
            self._closed[key] = EndReason.END  # tell the sender once, not per chunk
            limit = self.config.endpoint.max_duration_s
            message = f"session exceeded {limit:g} s; later audio is dropped"
            self._reject(key.device, ErrorCode.SESSION_TOO_LONG, message, key.session, seq)

    def _on_raw(self, device: str, payload: bytes) -> None:
        if len(payload) % 2:
            self._reject(device, ErrorCode.BAD_AUDIO, "raw payload must be whole s16le samples")
            return
        now = time.monotonic()
        stream = self._raw.get(device)
        if stream is None:
            stream = self._raw[device] = RawStream(
                device,
                rules=self._rules,
                detector=self._vad.detector(),
                open_utterance=lambda session: self._open(
                    UtteranceKey(device, session), None, None, SAMPLE_RATE, time.monotonic()
                ),
                now=now,
            )
        utt = stream.feed(pcm_to_float(payload, AudioFormat.S16LE, 1), now)
        if utt is not None:
            self._on_audio(utt)

    async def _on_file(self, device: str, payload: bytes) -> None:
        key = UtteranceKey(device, f"file-{uuid.uuid4().hex[:12]}")
        try:
            samples = await decode_file_bytes_async(payload)
        except AudioDecodeError as exc:
            self._reject(device, ErrorCode.DECODE_FAILED, str(exc), key.session)
            return
        limit_s = self.config.ingest.max_file_s
        if samples.size > limit_s * SAMPLE_RATE:
            seconds = samples.size / SAMPLE_RATE
            message = f"file is {seconds:.0f} s of audio, more than {limit_s:g} s"
            self._reject(device, ErrorCode.TOO_LARGE, message, key.session)
            return
        # A whole file is one utterance: no silence endpoint may cut it short. It is
        # not registered as open (no idle timeout, no late chunks) while the VAD
        # runs over it in a thread.
        rules = self._rules.for_whole_file()
        now = time.monotonic()
        utt = self._new(key, None, None, SAMPLE_RATE, now, rules=rules, samples=samples.size)
        await asyncio.to_thread(utt.append_samples, samples, now)
        utt.end_now(EndReason.END, time.monotonic())
        self._on_audio(utt)

    def _open(
        self, key: UtteranceKey, topic: str | None, lang: str | None, rate: int, now: float
    ) -> Utterance:
        utt = self._new(key, topic, lang, rate, now)
        self.utterances[key] = utt
        log.debug("session %s/%s opened", key.device, key.session)
        return utt

    def _new(
        self,
        key: UtteranceKey,
        topic: str | None,
        lang: str | None,
        rate: int,
        now: float,
        *,
        rules: EndpointRules | None = None,
        samples: int | None = None,
    ) -> Utterance:
        cfg = self.config
        return Utterance(
            key,
            topic=topic or cfg.ingest.topic_for(key.device),
            language=lang or cfg.decode.language,
            rate=rate,
            rules=rules or self._rules,
            detector=self._vad.detector(),
            max_samples=samples or int(cfg.endpoint.max_duration_s * SAMPLE_RATE),
            reorder_window=cfg.ingest.reorder_window,
            now=now,
        )
