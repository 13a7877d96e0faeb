"""Intake: incoming audio messages validated and routed into utterances.

Owns the table of open sessions. For every message it checks the topic and
size, decodes the payload (chunk, raw PCM or whole file), finds or opens the
session's :class:`~orac_node.ingest.session.Utterance` and feeds it, and
returns what happened as an :class:`Outcome`: the utterance that took audio
(the pipeline decides about partials and finals), a :class:`Refusal` owed to
the sender, or a whole file to decode off the event loop. Intake itself
publishes nothing and starts no task.

Whether a session may open at all is admission.py's to say (per-device rates,
session counts, enabled topics): a session once admitted is never cut by a
limit (its chunks are charged to the device's rates; its length is bounded by
``endpoint.max_duration_s``), and messages that belong to no session
(unparseable, unknown kinds) need admission too. What comes for a session
after it ended is closed.py's.

Every chunk an utterance accepts is appended to the session's spool file
(spool.py) before ``on_message`` returns, and so before the broker gets its
acknowledgement; at start-up the node replays what the spool holds through
:meth:`Intake.on_message` with ``replaying`` set.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from orac_node.audio import Samples, decode_file_bytes_async, pcm_to_float
from orac_node.audio.vad import SileroVad
from orac_node.config import NodeConfig
from orac_node.errors import AudioDecodeError, ContractError
from orac_node.ingest.admission import Admission, Dropped
from orac_node.ingest.closed import ClosedSessions, LateReport
from orac_node.ingest.endpoint import EndpointRules, EndReason
from orac_node.ingest.fleet import Fleet
from orac_node.ingest.load import LoadGate
from orac_node.ingest.rawstream import RawStream
from orac_node.ingest.refusal import Refusal
from orac_node.ingest.session import Piece, Utterance, UtteranceKey
from orac_node.ingest.spool import Spool
from orac_node.wire import (
    ROOM_CODES,
    SAMPLE_RATE,
    AudioChunk,
    AudioFormat,
    AudioKind,
    ErrorCode,
    TopicConfig,
    audio_topic_device,
    parse_audio_topic,
)

log = logging.getLogger(__name__)

CLOCK_SKEW_S = 1.0
"""How far a satellite's clock may be behind the node's for a session it began just
after the node was ready still to count as begun after (see _from_before_ready)."""
RAW_STREAM_FORGET_S = 60.0
"""A raw stream silent this long is forgotten (its VAD state and pre-roll)."""


@dataclass(frozen=True, slots=True)
class Upload:
    """A whole file a device sent: to be decoded off the event loop (:meth:`Intake.read_upload`)."""

    key: UtteranceKey
    payload: bytes


@dataclass(frozen=True, slots=True)
class Outcome:
    """What intake made of one message.

    ``taken`` False declines it: it is not acknowledged, so the broker keeps it
    for the node's next run (a new session while draining). ``audio`` is the
    utterance that took the message's audio (it may have just endpointed);
    ``refusal`` what the sender must be told; ``upload`` a file to decode.
    """

    taken: bool = True
    audio: Utterance | None = None
    refusal: Refusal | None = None
    upload: Upload | None = None


TAKEN = Outcome()
"""A message taken with nothing to follow up (dropped, ignored, or held back)."""
DECLINED = Outcome(taken=False)


@dataclass(slots=True)
class Ticked:
    """What the wall clock ended (idle satellites, chunks that never came) and owes."""

    ended: list[Utterance] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)


class Intake:
    """Validates audio messages and feeds them into utterances."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        vad: SileroVad,
        spool: Spool | None = None,
        topic_config: Callable[[str], TopicConfig] = lambda _topic: TopicConfig(),
        language_refusal: Callable[[str, str], str | None] = lambda _language, _topic: None,
        fleet: Fleet | None = None,
    ) -> None:
        self.config = config
        self._topic_config = topic_config  # the topics registry's view of a topic
        # why a session of a topic cannot be decoded in a language (the models' say)
        self._language_refusal = language_refusal
        self._rules = EndpointRules.from_config(config.endpoint)
        self._vad = vad
        self._admission = Admission(config.ingest, topic_config)
        self._files: set[UtteranceKey] = set()  # files being decoded (not in utterances)
        self.utterances: dict[UtteranceKey, Utterance] = {}
        self._closed = ClosedSessions(config.endpoint.max_duration_s)
        self._raw: dict[str, RawStream] = {}
        self._spool = spool
        self.fleet = fleet  # with other nodes on the broker: which devices are ours
        self.foreign = 0  # messages left to the node that owns their device
        self.ready_at: float | None = None  # wall clock when the node said ready (fleet)
        self.replaying = False  # feeding spooled chunks back in: they are on disk already
        self.draining = False  # new sessions are declined (left for the node's next run)

    def on_message(self, topic: str, payload: bytes) -> Outcome:  # noqa: PLR0911 - one per check
        """Route one message from ``audio/#``; never raises for bad input."""
        now = time.monotonic()
        if self._foreign(topic):
            return TAKEN
        try:
            device, kind = parse_audio_topic(topic)
        except ContractError as exc:
            device = audio_topic_device(topic)  # counts against the name it was sent as
            return self._admit(device, now) or self._refuse(device, exc.code, exc.message)
        if kind is None:
            log.debug("ignoring %s: not an audio kind of contract v1", topic)
            return self._admit(device, now) or TAKEN
        limits = self.config.ingest
        max_bytes = limits.max_file_bytes if kind is AudioKind.FILE else limits.max_chunk_bytes
        if len(payload) > max_bytes:
            message = f"{len(payload)} bytes > {max_bytes}"
            return self._admit(device, now) or self._refuse(device, ErrorCode.TOO_LARGE, message)
        if kind is AudioKind.CHUNK:
            return self._on_chunk(device, topic, payload, now)
        if kind is AudioKind.RAW:
            return self._on_raw(device, payload, now)
        if (dropped := self._admit(device, now)) is not None:
            return dropped
        admission = self._admission
        refusal = admission.topic_closed(device, limits.topic_for(device))  # the device's topic
        if refusal is None:
            refusal = admission.room(device, None, None)
        if refusal is not None:
            return Outcome(refusal=refusal)
        key = UtteranceKey(device, f"file-{uuid.uuid4().hex[:12]}")
        self._files.add(key)
        admission.opened(device)
        return Outcome(upload=Upload(key, payload))

    def screen(self, topic: str, payload: bytes) -> Outcome | None:  # noqa: PLR0911 - one per check
        """A chunk as it arrives, before it queues: dropped now if it would be dropped anyway.

        None: it waits its turn (nearly always). While messages do not wait it
        does nothing: their turn comes moments later, and the check would only
        be made twice on every chunk. Once they start to wait (the load gate is
        warm), another node's device's chunks are dropped at once, and a new
        session is judged for the load the moment its first chunk arrives,
        not seconds later when its turn comes behind the backlog: refused, its
        satellite is told at once and its later chunks are dropped as they
        arrive; admitted, it is kept when its turn comes however far behind the
        node is by then. Only a session's first chunk (seq 0) is judged here:
        whatever else arrives for a session not open waits its turn.
        """
        if self.replaying or self.draining or not topic.endswith("/chunk"):
            return None
        admission = self._admission
        if not admission.load.warm and not admission.load.overloaded(admission.open_total):
            return None  # no backlog: a session is judged when its turn comes, moments later
        if self._foreign(topic):
            return TAKEN
        try:
            chunk = AudioChunk.decode(payload)
            device = audio_topic_device(topic)
        except ContractError:
            return None  # its turn will say what is wrong with it
        key = UtteranceKey(device, chunk.session)
        if key in self.utterances or key in self._closed or admission.passed(key):
            return None  # open, ended, or let in as it arrived (a redelivered first chunk)
        if (dropped := admission.refused_whole(key, time.monotonic(), chunk.seq)) is not None:
            return TAKEN if dropped.report is None else Outcome(refusal=dropped.report)
        if chunk.seq > 0:
            return None
        refusal = admission.room(device, chunk.session, chunk.seq, arriving=True)
        if refusal is None:
            return None
        admission.refuse_whole(key, rates=False)
        return Outcome(refusal=refusal)

    def _foreign(self, topic: str) -> bool:
        """Another node opens this device's sessions, and it has none open here.

        Dropped before the payload is read: every node receives every chunk, and
        only the device's owner answers it, even with an error report.
        """
        fleet = self.fleet
        if fleet is None or self.replaying:
            return False
        device = audio_topic_device(topic)
        if fleet.takes(device) or self._admission.has_open(device):
            return False
        self.foreign += 1
        return True

    def _retaken(self, key: UtteranceKey) -> bool:
        """A session this node left to another, sent again since that node died: open it anew."""
        fleet = self.fleet
        if fleet is None or not fleet.orphaned(key) or not fleet.takes(key.device):
            return False
        self._closed.forget(key)
        return True

    def _from_before_ready(self, ts: float | None) -> bool:
        """A session that began before this node was ready: from the broker's backlog.

        A node that restarts gets the audio queued for it while it was away;
        with other nodes up, they took those sessions (the claims that say so
        may not be in the backlog: the broker bounds it). ``ts`` is the
        satellite's capture time: this assumes satellite and node clocks agree
        within :data:`CLOCK_SKEW_S`, as NTP keeps them.
        """
        ready = self.ready_at
        return ts is not None and ready is not None and ts < ready - CLOCK_SKEW_S

    def _begun_elsewhere(self, key: UtteranceKey) -> bool:
        """A session first seen mid-stream, with other nodes up: one of them has had it.

        This node has just become its device's owner (it joined, or the owner
        left), but did not see the session's start nor, perhaps, its claim; the
        node that saw the start decodes it. A session sent again after its node
        died starts again at seq 0. A session another node claimed is left to it
        even when this node believes itself alone (a broker restart: the others'
        Last Wills arrive before their new statuses).
        """
        fleet = self.fleet
        if fleet is None or self.replaying:
            return False
        if fleet.alone and not fleet.claimed_elsewhere(key):
            return False
        self.foreign += 1
        return True

    def _elsewhere(self, device: str) -> bool:
        """A new session of a device another node now opens: this one only has older ones open.

        The device moved while one of its sessions was open here (this node is
        overloaded, or another joined): the old session ends here, the new one
        is the new owner's, and this node neither opens nor refuses it.
        """
        fleet = self.fleet
        if fleet is None or self.replaying or fleet.takes(device):
            return False
        self.foreign += 1
        return True

    def abandon(self, key: UtteranceKey) -> Utterance | None:
        """Drop an open session another node decodes (it claimed it first); no final, no report."""
        utt = self.utterances.get(key)
        if utt is None:
            return None
        self.release(key)
        self._closed.remember(key, EndReason.END, quiet=True)  # its later chunks: dropped
        return utt

    @property
    def throttled(self) -> int:
        """Messages dropped for being over a device's rates, since start."""
        return self._admission.dropped

    def observe_lag(self, lag_s: float) -> None:
        """How long a message waited before it was handled (or the loop ran late): the load."""
        self._admission.load.observe(lag_s)

    @property
    def overloaded(self) -> bool:
        """New sessions are refused for want of room now.

        ``overloaded`` (load.py), or the node is at ``ingest.max_sessions``. The
        status says so, and a fleet sends them to the other nodes.
        """
        admission = self._admission
        total = admission.open_total
        return admission.load.overloaded(total) or total >= self.config.ingest.max_sessions

    @property
    def load(self) -> LoadGate:
        """The session cap and lag, for metrics."""
        return self._admission.load

    @property
    def shed(self) -> tuple[int, int]:
        """Sessions refused as overloaded, and chunks of sessions refused for room, since start.

        The metrics' ``messages_dropped{cause="refused"}`` is the second.
        """
        return self._admission.overload_refusals, self._admission.shed

    @property
    def late_chunks(self) -> int:
        """Chunks dropped because their session had already ended, since start."""
        return self._closed.late_chunks

    @property
    def unanswerable(self) -> int:
        """Refusals not sent: the device's name leaves no room for its error topic."""
        return self._admission.unanswerable

    def remember_finished(self, keys: list[tuple[str, str]]) -> None:
        """Sessions an earlier run finalized (the spool's finished log): their chunks are late."""
        for device, session in keys:
            self._closed.remember(UtteranceKey(device, session), EndReason.END, quiet=True)

    def resume(self, now: float) -> None:
        """The broker connection is back: idle clocks restart (the silence was ours)."""
        for utt in self.utterances.values():
            utt.last_chunk_at = now
            if utt.end_seen_at is not None:
                utt.end_seen_at = now

    def close(self, utt: Utterance) -> None:
        """The utterance endpointed: later chunks of its session are late."""
        self.release(utt.key)
        self._closed.remember(utt.key, utt.reason or EndReason.END)

    def release(self, key: UtteranceKey) -> None:
        """A session or file leaves the open set: it no longer counts for its device."""
        if self.utterances.pop(key, None) is None and key not in self._files:
            return
        self._files.discard(key)
        self._admission.closed(key.device)

    def tick(self, now: float) -> Ticked:
        """Apply wall-clock endpoints; return the utterances they ended and reports owed."""
        ticked = Ticked()
        idle_s = self.config.endpoint.idle_timeout_s
        reorder_wait_s = self.config.ingest.reorder_wait_ms / 1000
        for utt in list(self.utterances.values()):
            if utt.tick(now, idle_timeout_s=idle_s, reorder_wait_s=reorder_wait_s) is not None:
                ticked.ended.append(utt)
        for device, stream in list(self._raw.items()):
            if now - stream.last_data_at > RAW_STREAM_FORGET_S:
                del self._raw[device]
        admission = self._admission
        admission.load.tick(now, admission.open_total)
        ticked.refusals += admission.reports_due(now)
        for late in self._closed.due(now):
            if (refusal := self._late_refusal(late)) is not None:
                ticked.refusals.append(refusal)
        return ticked

    def end_all(self, reason: EndReason, now: float) -> list[Utterance]:
        """End every open utterance (shutdown); return them."""
        ended = []
        for utt in list(self.utterances.values()):
            if utt.receiving:
                utt.incomplete = True
                utt.end_now(reason, now)
                ended.append(utt)
        return ended

    # -- admission, as an outcome ------------------------------------------------------

    def _admit(
        self, device: str, now: float, session: str | None = None, seq: int | None = None
    ) -> Outcome | None:
        """None when admitted (or replaying what was admitted before), else the drop's outcome."""
        if self.replaying:
            return None
        return _outcome(self._admission.admit(device, now, session, seq))

    def _charge(self, device: str, now: float, audio_s: float, *, message: bool = True) -> None:
        if not self.replaying:
            self._admission.charge(device, now, audio_s, message=message)

    def _refuse(
        self,
        device: str,
        code: str,
        message: str,
        session: str | None = None,
        seq: int | None = None,
    ) -> Outcome:
        refusal = self._admission.refusal(device, code, message, session, seq)
        return TAKEN if refusal is None else Outcome(refusal=refusal)

    def _late_refusal(self, late: LateReport) -> Refusal | None:
        key = late.key
        return self._admission.refusal(
            key.device, late.code, late.message, key.session, late.seq, dropped=late.dropped
        )

    # -- the three kinds of audio -----------------------------------------

    def _on_chunk(self, device: str, topic: str, payload: bytes, now: float) -> Outcome:
        try:
            chunk = AudioChunk.decode(payload)
        except ContractError as exc:
            return self._admit(device, now) or self._refuse(device, exc.code, exc.message)
        key = UtteranceKey(device, chunk.session)
        utt = self.utterances.get(key)
        # a refused session's chunks are dropped before their audio is converted: under
        # overload they are most of what arrives, and must cost little more than receiving
        if utt is None and (dropped := self._admission.refused_whole(key, now, chunk.seq)):
            return TAKEN if dropped.report is None else Outcome(refusal=dropped.report)
        try:
            samples = pcm_to_float(chunk.pcm, chunk.format, chunk.channels)
        except AudioDecodeError as exc:
            return self._admit(device, now) or self._refuse(device, ErrorCode.BAD_AUDIO, str(exc))
        if utt is None:
            opened = self._first_chunk(key, topic, chunk, now)
            if isinstance(opened, Outcome):
                return opened
            utt = opened
        elif chunk.rate != utt.rate:
            message = f"rate changed from {utt.rate} to {chunk.rate} Hz within the session"
            return self._refuse(device, ErrorCode.BAD_RATE, message, chunk.session, chunk.seq)
        else:
            self._charge(device, now, chunk.frames / chunk.rate)
        if self._spool is not None and not self.replaying:
            self._spool.append(device, chunk.session, topic, payload)  # before the ack
        utt.accept(chunk.seq, Piece(samples, chunk.end), now)
        return Outcome(audio=utt)

    def _first_chunk(  # noqa: PLR0911 - one return per way a session can fail to open
        self, key: UtteranceKey, topic: str, chunk: AudioChunk, now: float
    ) -> Utterance | Outcome:
        """A chunk of a session not open here: the session it opens, or what became of it."""
        device = key.device
        if key in self._closed and not self._retaken(key):
            self._charge(device, now, 0.0)
            audio_s = chunk.frames / chunk.rate
            late = self._closed.late(key, chunk.seq, now, end=chunk.end, audio_s=audio_s)
            refusal = None if late is None else self._late_refusal(late)
            return TAKEN if refusal is None else Outcome(refusal=refusal)
        if (chunk.seq > 0 or self._from_before_ready(chunk.ts)) and self._begun_elsewhere(key):
            return TAKEN
        if self._elsewhere(device):
            return TAKEN
        if self.draining:
            return DECLINED
        if (outcome := self._admit(device, now, chunk.session, chunk.seq)) is not None:
            self._admission.refuse_whole(key)
            return outcome
        topic_name = chunk.topic or self.config.ingest.topic_for(device)
        refused = self._refuse_opening(key, topic_name, chunk.lang, chunk.seq)
        if refused is not None:
            if refused.refusal is not None and refused.refusal.code in ROOM_CODES:
                self._admission.refuse_whole(key, rates=False)  # told once, now
            return refused
        utt = self._open(key, chunk.topic, chunk.lang, chunk.rate, now)
        self._charge(device, now, chunk.frames / chunk.rate, message=False)  # admitted: paid
        return utt

    def _refuse_opening(
        self, key: UtteranceKey, topic: str, lang: str | None, seq: int | None
    ) -> Outcome | None:
        """What a message that would open a session is told instead: None if it may open one.

        Its topic must be enabled, the node and the device must have room, and
        the models its topic uses must know its language.
        """
        device, session = key.device, key.session
        refusal = self._admission.topic_closed(device, topic, session, seq)
        if refusal is None:
            refusal = self._admission.room(device, session, seq)
        if refusal is not None:
            return Outcome(refusal=refusal)
        if why := self._language_refusal(self.language(lang, topic), topic):
            return self._refuse(device, ErrorCode.UNSUPPORTED_LANGUAGE, why, session, seq)
        return None

    def open_local(
        self, key: UtteranceKey, *, topic: str | None, lang: str | None, rate: int
    ) -> Utterance | Refusal:
        """Open a session for a client connected to the node itself (the Wyoming server).

        The same admission as a satellite's first chunk (rates, room, enabled
        topic, language), but no silence ends it: the client says when its
        utterance is over (Wyoming's audio-stop, after Home Assistant's own VAD),
        so a pause mid-sentence is only where the final is speculated. Its audio
        is not spooled: the client's connection would not outlive the node's.
        """
        now = time.monotonic()
        device = key.device
        topic = topic or self.config.ingest.topic_for(device)
        refused = self._admit(device, now, key.session, 0)
        if refused is None:
            refused = self._refuse_opening(key, topic, lang, None)
        if refused is not None:
            if refused.refusal is not None:
                return refused.refusal
            # over its rates: the device's batched report comes later, this client is told now
            return Refusal(device, ErrorCode.RATE_LIMITED, "over the device's rate limits")
        rules = dataclasses.replace(self._topic_rules(topic), silence_s=0.0)
        utt = self._new(key, topic, lang, rate, now, rules=rules)
        self.utterances[key] = utt
        self._admission.opened(device)
        return utt

    def feed_local(self, utt: Utterance, samples: Samples, *, end: bool) -> None:
        """In-order audio of a session opened with :meth:`open_local` (charged to its device)."""
        now = time.monotonic()
        self._charge(utt.key.device, now, samples.size / utt.rate, message=False)
        utt.accept(utt.chunks, Piece(samples, end), now)

    def _on_raw(self, device: str, payload: bytes, now: float) -> Outcome:
        stream = self._raw.get(device)
        listening = stream is None or stream.utterance is None or not stream.utterance.receiving
        if listening:  # the next utterance may begin: admission, as for a new session
            if (dropped := self._admit(device, now)) is not None:
                return dropped
            topic = self.config.ingest.topic_for(device)
            if (refusal := self._admission.topic_closed(device, topic)) is not None:
                return Outcome(refusal=refusal)
        if len(payload) % 2:
            return self._refuse(
                device, ErrorCode.BAD_AUDIO, "raw payload must be whole s16le samples"
            )
        # admitted just now, the message is paid for; its audio is charged either way
        self._charge(device, now, len(payload) / 2 / SAMPLE_RATE, message=not listening)
        if stream is None:
            stream = self._raw[device] = RawStream(
                device,
                rules=self._topic_rules(self.config.ingest.topic_for(device)),
                detector=self._vad.detector(),
                open_utterance=lambda session: self._open(
                    UtteranceKey(device, session), None, None, SAMPLE_RATE, time.monotonic()
                ),
                now=now,
            )
        utt = stream.feed(pcm_to_float(payload, AudioFormat.S16LE, 1), now)
        return TAKEN if utt is None else Outcome(audio=utt)

    async def read_upload(self, upload: Upload) -> Utterance | Refusal | None:
        """Decode a whole file into an ended utterance (or the refusal owed for it).

        The file counts as one of its device's open sessions until this returns.
        """
        key = upload.key
        try:
            return await self._read_file(key, upload.payload)
        except Exception as exc:  # a file nobody foresaw still gets its answer
            log.exception("file %s/%s failed", key.device, key.session)
            message = f"file failed: {exc}"
            return self._admission.refusal(
                key.device, ErrorCode.DECODE_FAILED, message, key.session
            )
        finally:
            self.release(key)

    async def _read_file(self, key: UtteranceKey, payload: bytes) -> Utterance | Refusal | None:
        device = key.device
        limit_s = self.config.ingest.max_file_s
        try:
            # Decoding stops just past the limit: a header claiming 1 Hz would
            # otherwise resample a small file into gigabytes of samples.
            samples = await decode_file_bytes_async(payload, max_s=limit_s + 1)
        except AudioDecodeError as exc:
            return self._admission.refusal(device, ErrorCode.DECODE_FAILED, str(exc), key.session)
        if samples.size > limit_s * SAMPLE_RATE:
            message = f"file is more than {limit_s:g} s of audio"
            return self._admission.refusal(device, ErrorCode.TOO_LARGE, message, key.session)
        # A whole file is one utterance: no silence endpoint may cut it short. It is
        # not in the open table (no idle timeout, no late chunks) while the VAD runs
        # over it in a thread, but counts among its device's sessions (_files).
        utt = self.file_utterance(key, topic=None, language=None, samples=samples.size)
        await asyncio.to_thread(utt.append_samples, samples, time.monotonic())
        utt.end_now(EndReason.END, time.monotonic())
        return utt

    def _open(
        self, key: UtteranceKey, topic: str | None, lang: str | None, rate: int, now: float
    ) -> Utterance:
        utt = self._new(key, topic, lang, rate, now)
        self.utterances[key] = utt
        self._admission.opened(key.device)
        log.debug("session %s/%s opened", key.device, key.session, extra=key.log_fields())
        return utt

    def file_utterance(
        self, key: UtteranceKey, *, topic: str | None, language: str | None, samples: int
    ) -> Utterance:
        """An utterance for a whole file (not in the open table): nothing ends it early."""
        now = time.monotonic()
        rules = self._rules.for_whole_file()
        return self._new(key, topic, language, SAMPLE_RATE, now, rules=rules, samples=samples)

    def _topic_rules(self, topic: str) -> EndpointRules:
        """The node's endpoint rules, with the topic's own end-of-utterance silence if set."""
        silence_ms = self._topic_config(topic).silence_ms
        if silence_ms is None:
            return self._rules
        return dataclasses.replace(self._rules, silence_s=silence_ms / 1000)

    def language(self, lang: str | None, topic: str) -> str:
        """A session's language: the satellite's, else its topic's, else the node's."""
        return lang or self._topic_config(topic).language or self.config.decode.language

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
        topic = topic or cfg.ingest.topic_for(key.device)
        return Utterance(
            key,
            topic=topic,
            language=self.language(lang, topic),
            rate=rate,
            rules=rules or self._topic_rules(topic),
            detector=self._vad.detector(),
            max_samples=samples or int(cfg.endpoint.max_duration_s * SAMPLE_RATE),
            reorder_window=cfg.ingest.reorder_window,
            now=now,
        )


def _outcome(dropped: Dropped | None) -> Outcome | None:
    """A message dropped for its device's rates, as intake's outcome (None: admitted)."""
    if dropped is None:
        return None
    return TAKEN if dropped.report is None else Outcome(refusal=dropped.report)
