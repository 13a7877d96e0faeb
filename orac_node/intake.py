"""Intake: incoming audio messages validated and routed into utterances.

Owns the table of open sessions. For every message it checks the topic and
size, decodes the payload (chunk, raw PCM or whole file), finds or opens the
session's :class:`~orac_node.session.Utterance` and feeds it; then it hands
the utterance to the node (``on_audio``), which decides about partials and
finals. Refusals go to ``reject``, which publishes them to the sender.

Per-device limits are applied here too, cheapest first: the device's message
rate before the payload is parsed, its audio rate once a chunk's length is
known, its open sessions before one more is opened (limits.py holds the
buckets). A throttled chunk of an open session leaves a hole, which the
reorderer counts as a gap: that session's final comes out ``incomplete``.

Every chunk an utterance accepts is appended to the session's spool file
(spool.py) before ``on_message`` returns, and so before the broker gets its
acknowledgement; at start-up the node replays what the spool holds through
:meth:`Intake.on_message` with ``replaying`` set.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from orac_node.audio import decode_file_bytes_async, pcm_to_float
from orac_node.config import NodeConfig, TopicConfig
from orac_node.contract import (
    SAMPLE_RATE,
    AudioChunk,
    AudioFormat,
    AudioKind,
    ErrorCode,
    audio_topic_device,
    error_topic_fits,
    parse_audio_topic,
)
from orac_node.endpoint import EndpointRules, EndReason
from orac_node.errors import AudioDecodeError, ContractError
from orac_node.limits import DeviceLimits, DeviceThrottle
from orac_node.logsetup import session_fields
from orac_node.rawstream import RawStream
from orac_node.session import Piece, Utterance, UtteranceKey
from orac_node.spool import Spool
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
        *,
        dropped: int | None = None,
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
        spool: Spool | None = None,
        topic_config: Callable[[str], TopicConfig] = lambda _topic: TopicConfig(),
    ) -> None:
        self.config = config
        self._topic_config = topic_config  # the topics registry's view of a topic
        self._rules = EndpointRules.from_config(config.endpoint)
        self._vad = vad
        self._on_audio = on_audio
        self._tell = reject
        self._spawn = spawn
        self._throttle = DeviceThrottle(DeviceLimits.from_config(config.ingest))
        self._device_sessions: Counter[str] = Counter()  # open sessions and files per device
        self._files: set[UtteranceKey] = set()  # files being decoded (not in utterances)
        self.unanswerable = 0  # refusals whose error topic would be too long to publish
        self.utterances: dict[UtteranceKey, Utterance] = {}
        self._closed: OrderedDict[UtteranceKey, EndReason] = OrderedDict()
        self._raw: dict[str, RawStream] = {}
        self.late_chunks = 0
        self._spool = spool
        self.replaying = False  # feeding spooled chunks back in: they are on disk already
        self.draining = False  # new sessions are declined (left for the node's next run)

    def on_message(self, topic: str, payload: bytes) -> bool:
        """Route one message from ``audio/#``; never raises for bad input.

        Returns False only to decline a message (a new session while draining):
        it is not acknowledged, so the broker keeps it for the node's next run.
        """
        if not self.replaying and not self._admit(audio_topic_device(topic), time.monotonic()):
            return True  # over the device's message rate: dropped unread, counted
        try:
            device, kind = parse_audio_topic(topic)
        except ContractError as exc:
            self._reject(audio_topic_device(topic), exc.code, exc.message)
            return True
        if kind is None:
            log.debug("ignoring %s: not an audio kind of contract v1", topic)
            return True
        limits = self.config.ingest
        max_bytes = limits.max_file_bytes if kind is AudioKind.FILE else limits.max_chunk_bytes
        if len(payload) > max_bytes:
            self._reject(device, ErrorCode.TOO_LARGE, f"{len(payload)} bytes > {max_bytes}")
        elif kind is AudioKind.CHUNK:
            return self._on_chunk(device, topic, payload)
        elif not self._topic_enabled(device, limits.topic_for(device)):
            pass  # raw and file audio go to the device's default topic
        elif kind is AudioKind.RAW:
            self._on_raw(device, payload)
        elif self._may_open(device, None, None):
            key = UtteranceKey(device, f"file-{uuid.uuid4().hex[:12]}")
            self._files.add(key)
            self._device_sessions[device] += 1
            self._spawn(self._on_file(key, payload), f"file-{device}")
        return True

    @property
    def throttled(self) -> int:
        """Messages dropped for being over a device's limits, since start."""
        return self._throttle.dropped

    def remember_finished(self, keys: list[tuple[str, str]]) -> None:
        """Sessions an earlier run finalized (the spool's finished log): their chunks are late."""
        for device, session in keys:
            self._remember_closed(UtteranceKey(device, session), EndReason.END)

    def resume(self, now: float) -> None:
        """The broker connection is back: idle clocks restart (the silence was ours)."""
        for utt in self.utterances.values():
            utt.last_chunk_at = now
            if utt.end_seen_at is not None:
                utt.end_seen_at = now

    def close(self, utt: Utterance) -> None:
        """The utterance endpointed: later chunks of its session are late."""
        self._release(utt.key)
        self._remember_closed(utt.key, utt.reason or EndReason.END)

    def _remember_closed(self, key: UtteranceKey, reason: EndReason) -> None:
        """Late chunks of ``key`` are recognised; the oldest beyond CLOSED_MEMORY are forgotten."""
        self._closed[key] = reason
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
        for report in self._throttle.reports_due(now):
            self._report_throttled(report.device, report.dropped)
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

    # -- per-device limits -------------------------------------------------

    def _admit(self, device: str, now: float, audio_s: float | None = None) -> bool:
        """Charge one message (or, given ``audio_s``, its audio) to the device's rates."""
        throttle = self._throttle
        admitted = (
            throttle.admit_message(device, now)
            if audio_s is None
            else throttle.admit_audio(device, audio_s, now)
        )
        if not admitted and (report := throttle.report(device, now)) is not None:
            self._report_throttled(device, report.dropped)  # the first drop in a while
        return admitted

    def _report_throttled(self, device: str, dropped: int) -> None:
        limits = self._throttle.limits.describe()
        message = f"{dropped} message(s) dropped: over this device's limit ({limits})"
        self._reject(device, ErrorCode.RATE_LIMITED, message, dropped=dropped)

    def _may_open(self, device: str, session: str | None, seq: int | None) -> bool:
        """Whether one more session fits the node's and the device's limits (else told)."""
        ingest = self.config.ingest
        if len(self.utterances) + len(self._files) >= ingest.max_sessions:
            message = "node is at its session limit"
        elif self._device_sessions[device] >= ingest.device_max_sessions:
            limit = ingest.device_max_sessions
            message = f"device has {limit} open sessions, its limit"
        else:
            return True
        self._reject(device, ErrorCode.TOO_MANY_SESSIONS, message, session, seq)
        return False

    def _topic_enabled(
        self, device: str, topic: str, session: str | None = None, seq: int | None = None
    ) -> bool:
        """Whether the topic takes audio (registry ``enabled``); the sender is told if not."""
        if self._topic_config(topic).enabled:
            return True
        message = f"topic {topic} is disabled"
        self._reject(device, ErrorCode.TOPIC_DISABLED, message, session, seq)
        return False

    def _release(self, key: UtteranceKey) -> None:
        """A session or file leaves the open set: it no longer counts for its device."""
        if self.utterances.pop(key, None) is None and key not in self._files:
            return
        self._files.discard(key)
        self._device_sessions[key.device] -= 1
        if self._device_sessions[key.device] <= 0:
            del self._device_sessions[key.device]

    def _reject(
        self,
        device: str,
        code: str,
        message: str,
        session: str | None = None,
        seq: int | None = None,
        *,
        dropped: int | None = None,
    ) -> None:
        """Tell the device, unless its name leaves no room for an error topic (then log)."""
        if not error_topic_fits(device):
            self.unanswerable += 1
            log.warning(
                "cannot answer a device named %d chars: %s (%s)", len(device), message, code
            )
            return
        self._tell(device, code, message, session, seq, dropped=dropped)

    # -- the three kinds of audio -----------------------------------------

    def _on_chunk(self, device: str, topic: str, payload: bytes) -> bool:  # noqa: PLR0911
        now = time.monotonic()
        try:
            chunk = AudioChunk.decode(payload)
            samples = pcm_to_float(chunk.pcm, chunk.format, chunk.channels)
        except ContractError as exc:
            self._reject(device, exc.code, exc.message)
            return True
        except AudioDecodeError as exc:
            self._reject(device, ErrorCode.BAD_AUDIO, str(exc))
            return True
        if not self.replaying and not self._admit(device, now, chunk.frames / chunk.rate):
            return True  # over the device's audio rate: a gap in its session
        key = UtteranceKey(device, chunk.session)
        utt = self.utterances.get(key)
        if utt is None:
            if key in self._closed:
                self._late_chunk(key, chunk.seq)
                return True
            if self.draining:
                return False
            topic_name = chunk.topic or self.config.ingest.topic_for(device)
            if not self._topic_enabled(device, topic_name, chunk.session, chunk.seq):
                return True
            if not self._may_open(device, chunk.session, chunk.seq):
                return True
            utt = self._open(key, chunk.topic, chunk.lang, chunk.rate, now)
        elif chunk.rate != utt.rate:
            message = f"rate changed from {utt.rate} to {chunk.rate} Hz within the session"
            self._reject(device, ErrorCode.BAD_RATE, message, chunk.session, chunk.seq)
            return True
        if self._spool is not None and not self.replaying:
            self._spool.append(device, chunk.session, topic, payload)  # before the ack
        utt.accept(chunk.seq, Piece(samples, chunk.end), now)
        self._on_audio(utt)
        return True

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
        if not self._admit(device, now, len(payload) / 2 / SAMPLE_RATE):
            return
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

    async def _on_file(self, key: UtteranceKey, payload: bytes) -> None:
        """Decode and hand over one file; it counts as the device's open session till then."""
        try:
            await self._decode_file(key, payload)
        except Exception as exc:  # a file nobody foresaw still gets its answer
            log.exception("file %s/%s failed", key.device, key.session)
            self._reject(key.device, ErrorCode.DECODE_FAILED, f"file failed: {exc}", key.session)
        finally:
            self._release(key)  # a no-op if close() already did it

    async def _decode_file(self, key: UtteranceKey, payload: bytes) -> None:
        device = key.device
        limit_s = self.config.ingest.max_file_s
        try:
            # Decoding stops just past the limit: a header claiming 1 Hz would
            # otherwise resample a small file into gigabytes of samples.
            samples = await decode_file_bytes_async(payload, max_s=limit_s + 1)
        except AudioDecodeError as exc:
            self._reject(device, ErrorCode.DECODE_FAILED, str(exc), key.session)
            return
        if samples.size > limit_s * SAMPLE_RATE:
            message = f"file is more than {limit_s:g} s of audio"
            self._reject(device, ErrorCode.TOO_LARGE, message, key.session)
            return
        # A whole file is one utterance: no silence endpoint may cut it short. It is
        # not in the open table (no idle timeout, no late chunks) while the VAD runs
        # over it in a thread, but counts among its device's sessions (_files).
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
        self._device_sessions[key.device] += 1
        fields = session_fields(key.device, key.session)
        log.debug("session %s/%s opened", key.device, key.session, extra=fields)
        return utt

    def whole_file(
        self, key: UtteranceKey, *, topic: str, language: str | None, samples: int
    ) -> Utterance:
        """An utterance for a whole file sent as a request (not in the open table)."""
        now = time.monotonic()
        rules = self._rules.for_whole_file()
        return self._new(key, topic, language, SAMPLE_RATE, now, rules=rules, samples=samples)

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
            topic=(topic := topic or cfg.ingest.topic_for(key.device)),
            language=lang or self._topic_config(topic).language or cfg.decode.language,
            rate=rate,
            rules=rules or self._rules,
            detector=self._vad.detector(),
            max_samples=samples or int(cfg.endpoint.max_duration_s * SAMPLE_RATE),
            reorder_window=cfg.ingest.reorder_window,
            now=now,
        )
