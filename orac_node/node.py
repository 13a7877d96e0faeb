"""The node: from an MQTT message to a published transcript. Start reading here.

    Bus.on_message ─▶ Node.on_message ─▶ _on_chunk / _on_raw / _on_file
        validate (contract) ─▶ decode PCM (audio) ─▶ Utterance.accept
            reorder ─▶ resample ─▶ VAD ─▶ Endpointer
        ─▶ _after_audio: endpointed? ─▶ _finalize  (task)
                         speech, enough new audio? ─▶ _partial  (task)
    _finalize: gate on VAD speech ─▶ scheduler.final ─▶ gate on text ─▶ publisher.final
    _partial:  scheduler.partial (newest audio) ─▶ LocalAgreement ─▶ publisher.partial
    _ticker:   wall-clock endpoints (idle satellite, chunk missing after end)

Life cycle (:meth:`Node.run`): connect and publish ``starting``; load and warm
the models off the event loop; subscribe; publish ``ready``; serve until
:meth:`Node.stop`; then drain: ``draining``, unsubscribe, finish every open
utterance (reason ``shutdown``), publish ``offline`` and disconnect.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import aiomqtt

from orac_node.audio import Samples, decode_file_bytes_async, pcm_to_float
from orac_node.bus import Bus
from orac_node.config import NodeConfig
from orac_node.contract import (
    AUDIO_FILTER,
    SAMPLE_RATE,
    AudioChunk,
    AudioFormat,
    AudioKind,
    ErrorCode,
    NodeState,
    audio_topic_device,
    parse_audio_topic,
)
from orac_node.endpoint import EndpointRules, EndReason
from orac_node.engine import DecodeOptions
from orac_node.errors import AudioDecodeError, ContractError
from orac_node.gate import GateRules, check_audio, judge, strip_annotations
from orac_node.publisher import TranscriptPublisher, offline_status
from orac_node.rawstream import RawStream
from orac_node.scheduler import Decoder, InferenceScheduler
from orac_node.session import Piece, Utterance, UtteranceKey, UtteranceState
from orac_node.vad import VadPool

log = logging.getLogger(__name__)

TICK_S = 0.05
"""Wall-clock resolution of idle and reorder-wait endpoints (50 ms: small next to
the 300 ms reorder wait and seconds of idle timeout, negligible CPU)."""
STATUS_EVERY_S = 30.0
"""Refresh of the retained status so dashboards see current load."""
CLOSED_MEMORY = 4096
"""Recently finished sessions remembered, so late chunks of a finished session
are recognised (and dropped) instead of opening a second session of that id."""
RAW_STREAM_FORGET_S = 60.0
"""A raw stream silent this long gives its VAD back to the pool."""
DRAIN_TIMEOUT_S = 20.0
"""Longest wait for in-flight finals at shutdown (systemd's stop timeout is 30 s)."""


class Node:
    """One orac-node process on the bus."""

    def __init__(
        self, config: NodeConfig, *, model_name: str, load_engines: Callable[[], Sequence[Decoder]]
    ) -> None:
        self.config = config
        self.node_id = config.node.id
        self._load_engines = load_engines
        self._rules = EndpointRules.from_config(config.endpoint)
        self._gate = GateRules.from_config(config.gate)
        self._vad = VadPool()
        self._utterances: dict[UtteranceKey, Utterance] = {}
        self._closed: OrderedDict[UtteranceKey, EndReason] = OrderedDict()
        self._raw: dict[str, RawStream] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._scheduler: InferenceScheduler | None = None
        self._state: NodeState = "starting"
        self._stop = asyncio.Event()
        self.errors: Counter[str] = Counter()
        self.late_chunks = 0
        self.finals = 0
        self.bus = Bus(
            config.broker,
            client_id=self.node_id,
            will=offline_status(self.node_id, model_name),
            subscriptions=[(AUDIO_FILTER, 1)],
            on_message=self.on_message,
            on_connected=self._publish_status,
        )
        self.publisher = TranscriptPublisher(self.bus, node_id=self.node_id, model=model_name)

    # -- life cycle -------------------------------------------------------

    def stop(self) -> None:
        """Begin an orderly shutdown (signal handlers call this)."""
        self._stop.set()

    async def run(self) -> None:
        """Serve until :meth:`stop`, then drain and disconnect."""
        async with asyncio.TaskGroup() as group:
            bus_task = group.create_task(self.bus.run(), name="mqtt")
            self._publish_status()
            started = time.monotonic()
            engines = await asyncio.to_thread(self._load_engines)
            log.info(
                "model ready in %.2f s (%d worker(s))", time.monotonic() - started, len(engines)
            )
            self._scheduler = InferenceScheduler(list(engines))
            scheduler_task = group.create_task(self._scheduler.run(), name="inference")
            ticker_task = group.create_task(self._ticker(), name="ticker")
            intake = group.create_task(self.bus.open_intake(), name="open-intake")
            stop = group.create_task(self._stop.wait(), name="stop-wait")
            await asyncio.wait((intake, stop), return_when=asyncio.FIRST_COMPLETED)
            if intake.done():
                self._set_state("ready")
                await stop
            intake.cancel()
            await self._drain()
            ticker_task.cancel()
            scheduler_task.cancel()
            self.bus.stop()
            await bus_task

    async def _drain(self) -> None:
        self._set_state("draining")
        await self.bus.close_intake()
        now = time.monotonic()
        for utt in list(self._utterances.values()):
            if utt.receiving:
                utt.incomplete = True
                utt.end_now(EndReason.SHUTDOWN, now)
                self._finalize_soon(utt)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=DRAIN_TIMEOUT_S)
            for task in pending:
                task.cancel()
        self._set_state("offline")

    def _set_state(self, state: NodeState) -> None:
        self._state = state
        log.info("node %s is %s", self.node_id, state)
        self._publish_status()

    def _publish_status(self) -> None:
        queued = self._scheduler.queued if self._scheduler else 0
        self.publisher.status(self._state, sessions=len(self._utterances), queued=queued)

    async def _ticker(self) -> None:
        cfg = self.config
        next_status = time.monotonic() + STATUS_EVERY_S
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            for utt in list(self._utterances.values()):
                reason = utt.tick(
                    now,
                    idle_timeout_s=cfg.endpoint.idle_timeout_s,
                    reorder_wait_s=cfg.ingest.reorder_wait_ms / 1000,
                )
                if reason is not None:
                    self._finalize_soon(utt)
            for device, stream in list(self._raw.items()):
                if now - stream.last_data_at > RAW_STREAM_FORGET_S:
                    self._vad.release(self._raw.pop(device).close())
            if now >= next_status:
                next_status = now + STATUS_EVERY_S
                self._publish_status()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run per-session work as a tracked task (drain waits for these)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- intake -----------------------------------------------------------

    def on_message(self, message: aiomqtt.Message) -> None:
        """Route one incoming MQTT message; never raises for bad input."""
        topic = message.topic.value
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            payload = b"" if payload is None else str(payload).encode()
        try:
            device, kind = parse_audio_topic(topic)
        except ContractError as exc:
            self._reject(audio_topic_device(topic), exc.code, exc.message)
            return
        if kind is None:
            log.debug("ignoring %s: not an audio kind of contract v1", topic)
            return
        if self._state != "ready":
            return  # draining: the subscription is going away
        limit = self.config.ingest
        max_bytes = limit.max_file_bytes if kind is AudioKind.FILE else limit.max_chunk_bytes
        if len(payload) > max_bytes:
            self._reject(device, ErrorCode.TOO_LARGE, f"{len(payload)} bytes > {max_bytes}")
            return
        if kind is AudioKind.CHUNK:
            self._on_chunk(device, bytes(payload))
        elif kind is AudioKind.RAW:
            self._on_raw(device, bytes(payload))
        else:
            self._spawn(self._on_file(device, bytes(payload)), f"file-{device}")

    def _reject(
        self,
        device: str,
        code: str,
        message: str,
        session: str | None = None,
        seq: int | None = None,
    ) -> None:
        self.errors[code] += 1
        log.warning("rejected message from %s: %s (%s)", device, message, code)
        self.publisher.error(device, code, message, session=session, seq=seq)

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
        utt = self._utterances.get(key)
        if utt is None:
            if key in self._closed:
                self._late_chunk(key, chunk.seq)
                return
            if len(self._utterances) >= self.config.ingest.max_sessions:
                self._reject(
                    device,
                    ErrorCode.TOO_MANY_SESSIONS,
                    "node is at its session limit",
                    chunk.session,
                    chunk.seq,
                )
                return
            utt = self._open(key, chunk.topic, chunk.lang, chunk.rate, now)
        elif chunk.rate != utt.rate:
            message = f"rate changed from {utt.rate} to {chunk.rate} Hz within the session"
            self._reject(device, ErrorCode.BAD_RATE, message, chunk.session, chunk.seq)
            return
        utt.accept(chunk.seq, Piece(samples, chunk.end), now)
        self._after_audio(utt)

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
                detector=self._vad.acquire(),
                open_utterance=lambda session: self._open(
                    UtteranceKey(device, session), None, None, SAMPLE_RATE, time.monotonic()
                ),
                now=now,
            )
        utt = stream.feed(pcm_to_float(payload, AudioFormat.S16LE, 1), now)
        if utt is not None:
            self._after_audio(utt)

    async def _on_file(self, device: str, payload: bytes) -> None:
        key = UtteranceKey(device, f"file-{uuid.uuid4().hex[:12]}")
        try:
            samples = await decode_file_bytes_async(payload)
        except AudioDecodeError as exc:
            self._reject(device, ErrorCode.DECODE_FAILED, str(exc), key.session)
            return
        limit_s = self.config.ingest.max_file_s
        if samples.size > limit_s * SAMPLE_RATE:
            self._reject(
                device,
                ErrorCode.TOO_LARGE,
                f"file is {samples.size / SAMPLE_RATE:.0f} s of audio, more than {limit_s:g} s",
                key.session,
            )
            return
        # A whole file is one utterance: no silence endpoint may cut it short.
        rules = EndpointRules(
            self._rules.threshold, 0.0, self._rules.min_speech_s, math.inf, math.inf
        )
        now = time.monotonic()
        utt = self._open(key, None, None, SAMPLE_RATE, now, rules=rules, samples=samples.size)
        await asyncio.to_thread(utt.append_samples, samples, now)  # VAD over minutes of audio
        utt.end_now(EndReason.END, time.monotonic())
        self._after_audio(utt)

    def _open(
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
        utt = Utterance(
            key,
            topic=topic or cfg.ingest.topic_for(key.device),
            language=lang or cfg.decode.language,
            rate=rate,
            rules=rules or self._rules,
            detector=self._vad.acquire(),
            max_samples=samples or int(cfg.endpoint.max_duration_s * SAMPLE_RATE),
            reorder_window=cfg.ingest.reorder_window,
            now=now,
        )
        self._utterances[key] = utt
        log.debug("session %s/%s opened", key.device, key.session)
        return utt

    def _after_audio(self, utt: Utterance) -> None:
        if utt.state is UtteranceState.ENDPOINTED:
            self._finalize_soon(utt)
            return
        partials = self.config.partials
        if partials.enabled and utt.wants_partial(partials.interval_ms * SAMPLE_RATE // 1000):
            utt.partial_pending = True
            self._spawn(self._partial(utt), f"partial-{utt.key.session}")

    # -- transcription ----------------------------------------------------

    def _options(self, utt: Utterance, *, final: bool) -> DecodeOptions:
        decode = self.config.decode
        return DecodeOptions(
            language=utt.language,
            beam_size=decode.beam_size if final else 1,
            window_margin_s=decode.window_margin_s,
            timestamps=final,
            temperature_fallback=decode.temperature_fallback,
        )

    async def _partial(self, utt: Utterance) -> None:
        assert self._scheduler is not None
        decoded = 0

        def snapshot() -> Samples | None:
            nonlocal decoded
            audio = utt.partial_audio()
            decoded = 0 if audio is None else audio.size
            return audio

        try:
            decoding = await self._scheduler.partial(snapshot, self._options(utt, final=False))
            if decoding is None or not utt.receiving:
                return
            text = strip_annotations(decoding.text)
            if not text:
                return
            stable, unstable = utt.agreement.update(text)
            utt.partial_seq += 1
            self.publisher.partial(utt, decoding, decoded, stable, unstable)
        finally:
            utt.partial_pending = False

    def _finalize_soon(self, utt: Utterance) -> None:
        """ENDPOINTED: leave the active set at once (late chunks see it closed)."""
        self._utterances.pop(utt.key, None)
        self._closed[utt.key] = utt.reason or EndReason.END
        while len(self._closed) > CLOSED_MEMORY:
            self._closed.popitem(last=False)
        detector = utt.start_final()
        if detector is not None:
            self._vad.release(detector)
        self._spawn(self._finalize(utt), f"final-{utt.key.session}")

    async def _finalize(self, utt: Utterance) -> None:
        assert self._scheduler is not None
        speech_s = utt.endpointer.speech_s
        rejection: str | None = check_audio(speech_s, self._gate)
        decoding, text, queue_ms = None, "", 0.0
        if rejection is None:
            try:
                result = await self._scheduler.final(utt.audio(), self._options(utt, final=True))
            except Exception as exc:  # a failed decode still owes the sender its final
                log.exception("final decode of %s failed", utt.key.session)
                self._reject(
                    utt.key.device,
                    ErrorCode.DECODE_FAILED,
                    f"transcription failed: {exc}",
                    utt.key.session,
                )
                rejection = "decode_failed"
            else:
                decoding, queue_ms = result.decoding, result.queue_ms
                text, rejection = judge(decoding.text, decoding.confidence, speech_s, self._gate)
        final = self.publisher.final(
            utt, text=text, decoding=decoding, rejection=rejection, queue_ms=queue_ms
        )
        utt.done()
        self.finals += 1
        log.info(
            "final %s/%s %s %.1fs audio, %.0f ms after endpoint, conf %.2f: %r",
            final.device,
            final.session,
            final.reason,
            final.audio_s,
            final.latency_ms,
            final.confidence,
            final.text,
        )
