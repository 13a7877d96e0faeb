"""The node: from an MQTT message to a published transcript. Start reading here.

    Bus ─▶ Node.on_message ─▶ Intake.on_message (intake.py)
        topic + size ─▶ _on_chunk / _on_raw / _on_file
        validate (contract) ─▶ decode PCM (audio) ─▶ Utterance.accept (session.py)
            reorder ─▶ resample ─▶ VAD ─▶ Endpointer
    ─▶ Node._after_audio: endpointed? ─▶ finalize  (task)
                          speech, enough new audio? ─▶ _partial  (task)
    finalize: gate on VAD speech ─▶ decode_final (topic's model, prompt = topic
              vocabulary + Core's context; response cache) ─▶ gate on text
              ─▶ publisher.final (wake word stripped) ─▶ recent ring, webhooks
    _partial: scheduler.partial (window up to the newest audio) ─▶ LocalAgreement
              ─▶ publisher.partial ─▶ trim committed segments off a long window
    _ticker:  wall-clock endpoints (idle satellite, chunk missing after end)

    Other topics: orac/request/ ─▶ RequestHandler (rpc.py) ─▶ NodeBackend
    (answers.py); orac/context/ ─▶ ContextStore (context.py); topic configs and
    satellite heartbeats ─▶ Registry (registry.py), asked at every session and final.

Life cycle (:meth:`Node.run`): connect (resuming the node's persistent broker
session) and publish ``starting``; load and warm the models off the event
loop; replay the spool (sessions a killed run left, spool.py); start taking
input; publish ``ready``; serve until :meth:`Node.stop`; then drain:
``draining``, new sessions left to the broker for the next run, open ones
given a few seconds to end and then ended (reason ``shutdown``), publish
``offline`` and disconnect. docs/RELIABILITY.md has the guarantees. Under
systemd the same steps are reported as ``READY=1``, ``STATUS=`` and
``STOPPING=1``, with watchdog pings from this event loop (sdnotify.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import aiomqtt

from orac_node import __version__
from orac_node.answers import NodeBackend
from orac_node.audio import Samples
from orac_node.bus import Bus
from orac_node.cache import cache_key, make_cache
from orac_node.config import NodeConfig, TopicConfig
from orac_node.context import ContextStore, build_prompt
from orac_node.contract import (
    AUDIO_FILTER,
    CONTEXT_FILTER,
    SAMPLE_RATE,
    SHARED_REQUEST_FILTER,
    ErrorCode,
    Final,
    NodeState,
    TranscriptionEvent,
    request_subscriptions,
)
from orac_node.endpoint import EndReason
from orac_node.engine import DecodeOptions, Decoding
from orac_node.errors import ContractError
from orac_node.gate import GateRules, check_audio, judge, strip_annotations
from orac_node.intake import Intake
from orac_node.logsetup import session_fields
from orac_node.metrics import MESSAGE_KINDS, NodeMetrics
from orac_node.modelpool import ModelPool, UnknownModelError
from orac_node.publisher import TranscriptPublisher, offline_status
from orac_node.recent import RecentAudio
from orac_node.registry import Registry
from orac_node.rpc import RequestHandler
from orac_node.scheduler import Decoder, FinalDecoding, InferenceScheduler
from orac_node.sdnotify import Notifier
from orac_node.session import Speculation, Utterance, UtteranceState
from orac_node.spool import Spool
from orac_node.stabilize import trim_point
from orac_node.vad import SileroVad
from orac_node.webhooks import WebhookDelivery

log = logging.getLogger(__name__)

TICK_S = 0.05
"""Wall-clock resolution of idle and reorder-wait endpoints (50 ms: small next to
the 300 ms reorder wait and seconds of idle timeout, negligible CPU)."""
STATUS_EVERY_S = 30.0
"""Refresh of the retained status so dashboards see current load."""
DRAIN_TIMEOUT_S = 20.0
"""Longest wait for in-flight finals at shutdown (systemd's stop timeout is 30 s)."""
WEBHOOKS_RETRY_S = 30.0
"""After webhook delivery failed (its SQLite outbox unwritable: disk full, removed),
how long before it tries again; transcripts go on meanwhile."""
DRAIN_LISTEN_S = 5.0
"""At shutdown, how long open sessions may go on receiving to end on their own (a
user mid-sentence) before they are cut with reason ``shutdown``; 5 s + the 20 s
above stays inside systemd's 30 s stop timeout."""


class Node:
    """One orac-node process on the bus."""

    def __init__(
        self, config: NodeConfig, *, model_name: str, load_engines: Callable[[], Sequence[Decoder]]
    ) -> None:
        self.config = config
        self.node_id = config.node.id
        self._load_engines = load_engines
        self.gate = GateRules.from_config(config.gate)
        self._vad = SileroVad()
        self._tasks: set[asyncio.Task[object]] = set()
        self._scheduler: InferenceScheduler | None = None
        self._state: NodeState = "starting"
        self._stop = asyncio.Event()
        self._systemd = Notifier.from_env()  # a no-op unless systemd started us
        self.errors: Counter[str] = Counter()
        self.received: Counter[str] = Counter()  # audio messages by kind (chunk, raw, file)
        self._cache = make_cache(config.cache)
        self.cache_hits = self.cache_misses = 0
        self.finals = 0
        spool = config.spool
        self.spool = (
            Spool(
                spool.resolved_dir(self.node_id),
                max_bytes=spool.max_bytes,
                finished_ttl_s=spool.finished_ttl_s,
                fsync_each=spool.fsync_interval_ms == 0,
            )
            if spool.enabled
            else None
        )
        self._pool: ModelPool | None = None
        self.recent = RecentAudio(config.requests.recent_sessions, config.requests.recent_ttl_s)
        self.context = ContextStore(config.context.max_entries)
        self.context_refused = 0
        self.intake = Intake(
            config,
            vad=self._vad,
            on_audio=self._after_audio,
            reject=self._reject,
            spawn=self._spawn,
            spool=self.spool,
            topic_config=self.topic_config,
        )
        subscriptions = [(AUDIO_FILTER, 1)]
        if config.context.enabled:
            subscriptions.append((CONTEXT_FILTER, 1))
        if config.requests.enabled:
            subscriptions += [(f, 1) for f in request_subscriptions(self.node_id)]
        self.bus = Bus(
            config.broker,
            client_id=self.node_id,
            will=offline_status(self.node_id, model_name),
            subscriptions=subscriptions,
            on_message=self.on_message,
            on_connected=self._publish_status,
            on_session_lost=self._session_lost,
        )
        self.registry = Registry(config.registry, publish=self.bus.publish)
        if config.registry.enabled:
            self.bus.add_subscriptions([(f, 1) for f in self.registry.subscriptions])
        self.publisher = TranscriptPublisher(self.bus, node_id=self.node_id, model=model_name)
        self.requests = RequestHandler(
            self.node_id,
            NodeBackend(self),
            max_in_flight=config.requests.max_in_flight,
            publish=self.bus.publish,
            spawn=self._spawn,
        )
        self.webhooks = WebhookDelivery(
            config.webhooks,
            config.webhooks.resolved_dir(self.node_id),
            user_agent=f"orac-node/{__version__}",
        )
        self.metrics = NodeMetrics(self)

    @property
    def queue_depth(self) -> int:
        """Decode jobs waiting for a worker (every loaded model's)."""
        if self._pool is None:
            return 0
        return sum(scheduler.queued for scheduler in self._pool.schedulers())

    @property
    def state(self) -> NodeState:
        """Where the node is in its life cycle (the retained status says the same)."""
        return self._state

    @property
    def pool(self) -> ModelPool:
        """The models this node decodes with (set once the models are loaded)."""
        assert self._pool is not None, "models not loaded yet"
        return self._pool

    def topic_config(self, topic: str) -> TopicConfig:
        """The topic's settings (registry: retained config, else config.yaml, else defaults)."""
        return self.registry.topic(topic)

    # -- life cycle -------------------------------------------------------

    def stop(self) -> None:
        """Begin an orderly shutdown (signal handlers call this)."""
        self._stop.set()

    async def run(self) -> None:
        """Serve until :meth:`stop`, then drain and disconnect."""
        async with asyncio.TaskGroup() as group:
            bus_task = group.create_task(self.bus.run(), name="mqtt")
            if self.config.metrics.enabled:
                self.metrics.serve(self.config.metrics.host, self.config.metrics.port)
            # Pings from this loop (from READY=1 on): if it wedges they stop, systemd restarts us.
            watchdog = group.create_task(self._systemd.watchdog(), name="systemd-watchdog")
            self._publish_status()
            started = time.monotonic()
            try:
                engines = await asyncio.to_thread(self._load_engines)
                await asyncio.to_thread(self._vad.load)
            except Exception:
                # Say so on the bus instead of leaving a retained "starting" behind.
                self._set_state("offline")
                self.bus.stop()
                await bus_task
                raise
            load_s = time.monotonic() - started
            self.metrics.model_load.set(load_s)
            log.info("model ready in %.2f s (%d worker(s))", load_s, len(engines))
            model = self.config.model
            cores = model.resolved_workers() * model.resolved_threads()
            self._scheduler = InferenceScheduler(list(engines), cores=cores)
            self._pool = ModelPool(
                self.publisher.model,
                self._scheduler,
                extra=model.extra,
                threads=cores,
                use_gpu=model.device != "cpu",
                cache_dir=model.cache_dir.expanduser(),
            )
            scheduler_task = group.create_task(self._scheduler.run(), name="inference")
            webhooks_task = group.create_task(self._deliver_webhooks(), name="webhooks")
            self._recover()
            ticker_task = group.create_task(self._ticker(), name="ticker")
            intake = group.create_task(self.bus.open_intake(), name="open-intake")
            stop = group.create_task(self._stop.wait(), name="stop-wait")
            await asyncio.wait((intake, stop), return_when=asyncio.FIRST_COMPLETED)
            if intake.done():
                # Everything alive now (models, config, libraries) lives as long as the
                # process: keep it out of the garbage collector's scans, which otherwise
                # walk it again and again as the per-message objects churn.
                gc.freeze()
                self._set_state("ready")
                self._systemd.ready()  # models loaded, subscriptions acknowledged
                await stop
            intake.cancel()
            await self._drain()
            ticker_task.cancel()
            scheduler_task.cancel()
            await self._pool.close()
            self.bus.stop()
            await bus_task
            watchdog.cancel()
            webhooks_task.cancel()
            await self.webhooks.close()
            if self._cache is not None:
                await self._cache.close()

    async def _deliver_webhooks(self) -> None:
        """Webhook delivery, kept going: a broken outbox must not stop transcription."""
        while True:
            try:
                await self.webhooks.run()
            except Exception:  # also the ExceptionGroup of its deliveries
                log.exception("webhook delivery stopped; restarting in %.0f s", WEBHOOKS_RETRY_S)
                await asyncio.sleep(WEBHOOKS_RETRY_S)

    def _recover(self) -> None:
        """Replay what an earlier run left in the spool, before any new input is taken."""
        if self.spool is None:
            return
        finished = self.spool.finished()
        self.intake.remember_finished(finished)
        done = set(finished)
        replayed = chunks = 0
        self.intake.replaying = True
        try:
            for found in self.spool.recover():
                if (found.device, found.session) in done:
                    self.spool.finish(found.device, found.session)  # killed after its final
                    continue
                replayed += 1
                chunks += len(found.payloads)
                for payload in found.payloads:
                    self.intake.on_message(found.topic, payload)
        finally:
            self.intake.replaying = False
        if replayed:
            log.info("recovered %d session(s), %d chunk(s), from the spool", replayed, chunks)

    async def _drain(self) -> None:
        self._systemd.stopping("draining: finishing open utterances")
        self._set_state("draining")
        # No unsubscribe from audio: the persistent session keeps queueing it for the
        # next run, and new sessions are declined (left unacknowledged) rather than taken.
        self.intake.draining = True
        # But requests to "any" must go to the nodes that stay: a stopped node's session
        # would otherwise keep its share of them queued until it returns.
        await self.bus.unsubscribe(SHARED_REQUEST_FILTER)
        deadline = time.monotonic() + DRAIN_LISTEN_S
        # polling: the session table has no event to wait on, and 50 ms is plenty
        while self.intake.utterances and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(TICK_S)  # open sessions may still end on their own
        for utt in self.intake.end_all(EndReason.SHUTDOWN, time.monotonic()):
            self._finalize_soon(utt)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=DRAIN_TIMEOUT_S)
            if pending:
                log.error(
                    "%d task(s) unfinished after %.0f s of draining", len(pending), DRAIN_TIMEOUT_S
                )
            for task in pending:
                task.cancel()
        self._set_state("offline")

    def _set_state(self, state: NodeState) -> None:
        self._state = state
        log.info("node %s is %s", self.node_id, state)
        self._publish_status()

    def _publish_status(self) -> None:
        queued = self.queue_depth
        sessions = len(self.intake.utterances)
        self.publisher.status(self._state, sessions=sessions, queued=queued)
        self._systemd.status(f"{self._state}: {sessions} open session(s), {queued} queued")

    async def _ticker(self) -> None:
        next_status = time.monotonic() + STATUS_EVERY_S
        fsync_s = self.config.spool.fsync_interval_ms / 1000
        next_sync = time.monotonic() + fsync_s
        offline = False
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            if self.spool is not None and fsync_s and now >= next_sync:
                next_sync = now + fsync_s
                await asyncio.to_thread(self.spool.sync)
            if not self.bus.connected.is_set():
                offline = True  # cut off from the broker: no satellite is idle, we are
                continue
            if offline:
                offline = False
                self.intake.resume(now)
            for utt in self.intake.tick(now):
                self._finalize_soon(utt)
            if now >= next_status:
                next_status = now + STATUS_EVERY_S
                self._publish_status()

    def _spawn(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        """Run per-session work as a tracked task (drain waits for these)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- intake -----------------------------------------------------------

    def on_message(self, message: aiomqtt.Message) -> bool:
        """Hand one incoming MQTT message to intake; False: leave it for the next run."""
        if self._state == "offline":
            return False  # stopping: it stays with the broker for the next run
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            payload = b"" if payload is None else str(payload).encode()
        topic = message.topic.value
        if topic.startswith("audio/"):
            kind = topic.rpartition("/")[2]
            self.received[kind if kind in MESSAGE_KINDS else "other"] += 1
            return self.intake.on_message(topic, bytes(payload))
        if topic.startswith("orac/request/"):
            self.requests.on_message(topic, bytes(payload), message.properties)
        elif topic.startswith("orac/context/"):
            self._on_context(topic, bytes(payload), message)
        elif self.registry.handles(topic):
            self.registry.on_message(topic, bytes(payload))
        return True

    def _session_lost(self) -> None:
        """Retained configs and context are re-read from the broker, which re-sends them."""
        self.registry.forget_retained()
        self.context.clear()

    def _on_context(self, topic: str, payload: bytes, message: aiomqtt.Message) -> None:
        # the broker counts a retained message's expiry down: what is left of it
        expiry = getattr(message.properties, "MessageExpiryInterval", None)
        try:
            self.context.on_message(topic, payload, now=time.monotonic(), expiry_s=expiry)
        except ContractError as exc:
            self.context_refused += 1
            log.warning("context on %s refused: %s", topic, exc.message)

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
        self.errors[code] += 1
        log.warning(
            "rejected message from %s: %s (%s)",
            device,
            message,
            code,
            extra=session_fields(device, session),
        )
        self.publisher.error(device, code, message, session=session, seq=seq, dropped=dropped)

    def _after_audio(self, utt: Utterance) -> None:
        if utt.state is UtteranceState.ENDPOINTED:
            self._finalize_soon(utt)
            return
        speculate_s = self.config.endpoint.speculate_ms / 1000
        partials = self.config.partials
        interval = partials.interval_ms * SAMPLE_RATE // 1000
        if utt.wants_speculation(speculate_s):
            self._speculate(utt)
        elif partials.enabled and utt.wants_partial(interval, speculate_s):
            utt.partial_pending = True
            self._spawn(self._partial(utt), f"partial-{utt.key.session}")

    def _speculate(self, utt: Utterance) -> None:
        """Decode the final now, at a pause; the endpoint may confirm it (speculative final)."""
        assert self._scheduler is not None
        options, model = self._final_options(utt)
        task = asyncio.create_task(
            self.decode_final(utt.audio(), options, model), name=f"speculate-{utt.key.session}"
        )
        task.add_done_callback(_consume_exception)
        utt.speculation = Speculation(utt.endpointer.speech_windows, task)

    # -- transcription ----------------------------------------------------

    def _options(
        self, utt: Utterance, *, final: bool, prompt: str = "", beam_size: int | None = None
    ) -> DecodeOptions:
        decode = self.config.decode
        return DecodeOptions(
            language=utt.language,
            beam_size=(beam_size or decode.beam_size) if final else 1,
            window_margin_s=decode.window_margin_s,
            prompt=prompt,
            timestamps=final,
            temperature_fallback=decode.temperature_fallback,
        )

    def _final_options(self, utt: Utterance) -> tuple[DecodeOptions, str | None]:
        """A final's decode options (prompt from topic, context, request) and its model."""
        topic = self.topic_config(utt.topic)
        prompt = self.prompt_for(utt.key.device, utt.topic, topic, utt.request_prompt)
        return self._options(utt, final=True, prompt=prompt), utt.request_model or topic.model

    def prompt_for(self, device: str, topic_name: str, topic: TopicConfig, extra: str = "") -> str:
        """Topic vocabulary, then the topic's and the device's context, then a request's own."""
        now = time.monotonic()
        return build_prompt(
            topic.prompt,
            self.context.get(topic=topic_name, now=now),
            self.context.get(device=device, now=now),
            extra,
        )

    async def _partial(self, utt: Utterance) -> None:
        assert self._scheduler is not None
        window_start = utt.partial_offset
        decoded = window_start

        def snapshot() -> Samples | None:
            nonlocal decoded
            audio = utt.partial_audio()
            decoded = window_start + (0 if audio is None else audio.size)
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
            partial = self.publisher.partial(utt, decoding, decoded, stable, unstable)
            self.metrics.observe_partial(partial)
            self._trim_partial_window(utt, decoding, window_start, decoded)
        finally:
            utt.partial_pending = False

    def _trim_partial_window(
        self, utt: Utterance, decoding: Decoding, window_start: int, decoded: int
    ) -> None:
        """Buffer trimming: past ``trim_after_s``, drop committed segments from the window."""
        window_s = (decoded - window_start) / SAMPLE_RATE
        trim_after_s = self.config.partials.trim_after_s
        if not trim_after_s or window_s < trim_after_s:
            return
        point = trim_point(decoding.segments, window_s, utt.agreement.window_committed)
        if point is not None:
            utt.trim_partial_window(window_start, *point)

    async def _scheduler_for(
        self, model: str | None, *, strict: bool
    ) -> tuple[str, InferenceScheduler]:
        """The model to decode with and its scheduler.

        A topic config naming a model this node cannot load must not cost the
        user their final: not ``strict``, it falls back to the main model
        (logged). A request asked for that model explicitly: ``strict`` raises.
        """
        assert self._pool is not None
        try:
            return model or self._pool.main_name, await self._pool.scheduler(model)
        except UnknownModelError:
            if strict:
                raise
            log.warning("model %r is not available here; using %s", model, self._pool.main_name)
            return self._pool.main_name, await self._pool.scheduler(None)

    async def decode_final(
        self,
        audio: Samples,
        options: DecodeOptions,
        model: str | None = None,
        *,
        strict: bool = False,
    ) -> tuple[str, FinalDecoding]:
        """A final's model and decoding (from the response cache when decoded alike before)."""
        name, scheduler = await self._scheduler_for(model, strict=strict)
        cache = self._cache
        if cache is None:
            return name, await scheduler.final(audio, options)
        key = cache_key(audio, model=name, options=options)
        cached = await cache.get(key)
        if cached is not None:
            self.cache_hits += 1
            return name, FinalDecoding(cached, queue_ms=0.0)
        self.cache_misses += 1
        result = await scheduler.final(audio, options)
        if not result.decoding.aborted:
            await cache.put(key, result.decoding)
        return name, result

    def _finalize_soon(self, utt: Utterance) -> None:
        """ENDPOINTED: leave the open set at once (late chunks see it closed)."""
        self.intake.close(utt)
        utt.start_final()
        self._spawn(self.finalize(utt), f"final-{utt.key.session}")

    async def finalize(self, utt: Utterance) -> Final:
        """Decode (or take the speculative decode of) an ended utterance; publish its final."""
        assert self._scheduler is not None
        speech_s = utt.endpointer.speech_s
        rejection: str | None = check_audio(speech_s, self.gate)
        decoding, text, queue_ms, model = None, "", 0.0, None
        speculation = utt.speculation if utt.speculation_valid() else None
        topic = self.topic_config(utt.topic)
        if rejection is None:
            try:
                if speculation is not None:
                    model, result = await speculation.task  # decoded while the user fell silent
                else:
                    options, wanted = self._final_options(utt)
                    model, result = await self.decode_final(utt.audio(), options, wanted)
            except Exception as exc:  # a failed decode still owes the sender its final
                log.exception(
                    "final decode of %s failed",
                    utt.key.session,
                    extra=session_fields(utt.key.device, utt.key.session),
                )
                self._reject(
                    utt.key.device,
                    ErrorCode.DECODE_FAILED,
                    f"transcription failed: {exc}",
                    utt.key.session,
                )
                rejection = "decode_failed"
            else:
                decoding, queue_ms = result.decoding, result.queue_ms
                text, rejection = judge(decoding.text, decoding.confidence, speech_s, self.gate)
        final = self.publisher.final(
            utt,
            text=text,
            decoding=decoding,
            rejection=rejection,
            queue_ms=queue_ms,
            speculative=speculation is not None and decoding is not None,
            on_sent=self._finished_callback(utt),
            model=model,
            wake_words=topic.wake_words,
        )
        utt.done()
        self.finals += 1
        self.metrics.observe_final(final)
        if utt.publish:
            self._after_final(utt, final, topic)
        log.info(
            "final %s/%s %s %.1fs audio, %.0f ms after endpoint, conf %.2f: %r",
            final.device,
            final.session,
            final.reason,
            final.audio_s,
            final.latency_ms,
            final.confidence,
            final.text,
            extra=session_fields(final.device, final.session),
        )
        return final

    def _after_final(self, utt: Utterance, final: Final, topic: TopicConfig) -> None:
        """Keep the audio for retranscribe; hand a final with text to the topic's webhooks."""
        if utt.audio_s <= self.config.endpoint.max_duration_s:
            self.recent.add(
                device=final.device,
                session=final.session,
                topic=final.topic,
                language=utt.language,
                speech_s=final.speech_s,
                audio=utt.audio(),
                now=time.monotonic(),
            )
        if final.text and topic.webhooks:
            self.webhooks.submit(TranscriptionEvent.from_final(final), topic.webhooks)

    def _finished_callback(self, utt: Utterance) -> Callable[[], None] | None:
        """Once the broker has the final, the spool forgets the session's audio."""
        spool = self.spool
        if spool is None:
            return None
        device, session = utt.key.device, utt.key.session
        return lambda: spool.finish(device, session)


def _consume_exception(task: asyncio.Task[object]) -> None:
    """A speculative final nobody awaited must not log 'exception never retrieved'."""
    if not task.cancelled():
        task.exception()
