"""The node: its parts, its life cycle, and which part each incoming message goes to.

    Bus (mqtt/bus.py) ─▶ Node.on_message
        audio/...            ─▶ Pipeline.on_audio_message (pipeline/pipeline.py: the data path)
        orac/request/...     ─▶ RequestHandler (mqtt/rpc.py) ─▶ Answers (consumers/answers.py)
        orac/context/...     ─▶ ContextStore (consumers/context.py)
        topic configs, satellite heartbeats ─▶ Registry (consumers/registry.py)

Life cycle (:meth:`Node.run`): connect (resuming the node's persistent broker
session) and publish ``starting``; load and warm the models off the event
loop; replay the spool (sessions a killed run left, ingest/spool.py); start
taking input; publish ``ready``; serve until :meth:`Node.stop`; then drain:
``draining``, new sessions left to the broker for the next run, open ones
given a few seconds to end and then ended (reason ``shutdown``), publish
``offline`` and disconnect. docs/RELIABILITY.md has the guarantees. Under
systemd the same steps are reported as ``READY=1``, ``STATUS=`` and
``STOPPING=1``, with watchdog pings from this event loop (ops/sdnotify.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import aiomqtt

from orac_node import __version__
from orac_node.audio.vad import SileroVad, speech_probabilities
from orac_node.config import NodeConfig
from orac_node.console import ConsoleServer
from orac_node.consumers.answers import Answers
from orac_node.consumers.context import ContextStore
from orac_node.consumers.modelswap import ModelSwitch
from orac_node.consumers.recent import RecentAudio
from orac_node.consumers.registry import Registry
from orac_node.consumers.webhooks import WebhookDelivery
from orac_node.decode.cache import make_cache
from orac_node.decode.decoding import DecodeOptions
from orac_node.decode.finals import FinalDecoder
from orac_node.decode.modelpool import LoadedModel, ModelPool, resident_bytes
from orac_node.decode.scheduler import Decoder
from orac_node.errors import ConfigError, ContractError
from orac_node.homeassistant.discovery import DeviceDiscovery
from orac_node.homeassistant.wyoming_server import WyomingServer
from orac_node.ingest.endpoint import EndReason
from orac_node.ingest.fleet import Fleet
from orac_node.ingest.intake import Intake
from orac_node.ingest.spool import Spool
from orac_node.jobs.runner import JobRunner
from orac_node.jobs.store import JobStore
from orac_node.models.store import ModelStore
from orac_node.mqtt.bus import Bus, Outgoing
from orac_node.mqtt.listeners import Listeners
from orac_node.mqtt.publisher import TranscriptPublisher, offline_status
from orac_node.mqtt.rpc import RequestHandler
from orac_node.ops.metrics import MESSAGE_KINDS, NodeMetrics, Readings
from orac_node.ops.sdnotify import Notifier
from orac_node.pipeline import Pipeline
from orac_node.wire import (
    AUDIO_FILTER,
    CLAIM_FILTER,
    CONTEXT_FILTER,
    MODEL_SELECTION_TOPIC,
    SHARED_REQUEST_FILTER,
    STATUS_FILTER,
    NodeState,
    NodeStatus,
    SessionClaim,
    job_topic,
    request_subscriptions,
)

log = logging.getLogger(__name__)

TICK_S = 0.05
"""Wall-clock resolution of idle and reorder-wait endpoints (50 ms: small next to
the 300 ms reorder wait and seconds of idle timeout, negligible CPU)."""
STATUS_EVERY_S = 30.0
"""Refresh of the retained status so dashboards see current load."""
STATUS_MIN_INTERVAL_S = 1.0
"""Between those refreshes, the status is republished when the load it shows (open
sessions, queued decodes, the last final's latency) changed, at most this often:
Home Assistant's sensors follow within a second, and a busy node sends one status a
second rather than one per session."""
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
        self,
        config: NodeConfig,
        *,
        model_name: str,
        load_engines: Callable[[], Sequence[Decoder]],
        model_path: Path | None = None,
    ) -> None:
        self.config = config
        self.node_id = config.node.id
        self._load_engines = load_engines
        self._vad = SileroVad()
        self._tasks: set[asyncio.Task[object]] = set()
        self._state: NodeState = "starting"
        self._stop = asyncio.Event()
        self._systemd = Notifier.from_env()  # a no-op unless systemd started us
        self.received: Counter[str] = Counter()  # audio messages by kind (chunk, raw, file)
        self.context_refused = 0
        spool = config.spool
        self._spool_written = asyncio.Event()
        self.spool = (
            Spool(
                spool.resolved_dir(self.node_id),
                max_bytes=spool.max_bytes,
                finished_ttl_s=spool.finished_ttl_s,
                fsync_each=spool.fsync_interval_ms == 0,
                on_dirty=self._spool_written.set,
            )
            if spool.enabled
            else None
        )
        self.recent = RecentAudio(config.requests.recent_sessions, config.requests.recent_ttl_s)
        self.context = ContextStore(config.context.max_entries)
        # Other nodes on the broker (docs/FLEET.md): their statuses say who is live, and
        # the claims which node decodes each session. Subscribed before the audio, so
        # the retained statuses come first.
        self.fleet = Fleet(self.node_id) if config.fleet.enabled else None
        subscriptions = [(STATUS_FILTER, 1), (CLAIM_FILTER, 1)] if self.fleet else []
        subscriptions.append((AUDIO_FILTER, 1))
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
            screen=self._screen,
        )
        self.discovery = (
            DeviceDiscovery(
                config.homeassistant,
                node_id=self.node_id,
                version=__version__,
                publish=self.bus.publish,
            )
            if config.homeassistant.discovery
            else None
        )
        self.registry = Registry(
            config.registry,
            publish=self.bus.publish,
            on_heartbeat=self.discovery.satellite if self.discovery else None,
        )
        if config.registry.enabled:
            self.bus.add_subscriptions([(f, 1) for f in self.registry.subscriptions])
            self.bus.add_subscriptions([(MODEL_SELECTION_TOPIC, 1)])
        model = config.model
        self.pool = ModelPool(
            model_name,
            main_path=model_path,
            extra=model.extra,
            threads=model.resolved_workers() * model.resolved_threads(),
            use_gpu=model.device != "cpu",
            cache_dir=model.cache_dir.expanduser(),
            slots=model.resolved_workers(),
            partials=model.partials,
            finals=model.finals,
        )
        pool = self.pool
        self.models = ModelSwitch(pool, ModelStore(model.cache_dir), switched=self._publish_status)
        if why := pool.language_refusal(config.decode.language, (pool.partials, pool.finals)):
            raise ConfigError(f"decode.language: {why}")
        self.webhooks = WebhookDelivery(
            config.webhooks,
            config.webhooks.resolved_dir(self.node_id),
            user_agent=f"orac-node/{__version__}",
        )
        self.metrics = NodeMetrics(self._readings)
        self.listeners = Listeners()  # in-process clients of the node's sessions (Wyoming)
        self._publisher = TranscriptPublisher(
            self.bus,
            node_id=self.node_id,
            model=model_name,
            listeners=self.listeners,
            on_final=self.discovery.final if self.discovery else None,
        )
        self._status_shown: tuple[int, int, float | None, bool] | None = None  # the last one's load
        self._status_at = 0.0  # when it was published (monotonic)
        self.pipeline = Pipeline(
            config,
            intake=Intake(
                config,
                vad=self._vad,
                spool=self.spool,
                topic_config=self.registry.topic,
                language_refusal=lambda language, topic: pool.language_refusal(
                    language, pool.tiers(self.registry.topic(topic))
                ),
                fleet=self.fleet,
            ),
            decoder=FinalDecoder(
                self.pool,
                make_cache(config.cache),
                speech=lambda samples: speech_probabilities(samples, self._vad),
            ),
            publisher=self._publisher,
            metrics=self.metrics,
            topics=self.registry.topic,
            context=self.context,
            recent=self.recent,
            webhooks=self.webhooks,
            spool=self.spool,
            spawn=self._spawn,
            rooms=self.registry.room_group,
        )
        self.wyoming = (
            WyomingServer(config, self.pipeline, self.listeners, pool)
            if config.wyoming.uri
            else None
        )
        jobs = config.jobs
        self.jobs = JobStore(jobs.redis_url, keep_s=jobs.keep_s) if jobs.enabled else None
        self.requests = RequestHandler(
            self.node_id,
            Answers(
                self.node_id,
                self.pipeline,
                self.recent,
                state=lambda: self._state,
                jobs=self.jobs,
                claimant=self.fleet.claimant if self.fleet is not None else None,
            ),
            max_in_flight=config.requests.max_in_flight,
            publish=self.bus.publish,
            spawn=self._spawn,
        )

    @property
    def state(self) -> NodeState:
        """Where the node is in its life cycle (the retained status says the same)."""
        return self._state

    # -- routing --------------------------------------------------------------

    def on_message(self, message: aiomqtt.Message) -> bool:
        """Hand one incoming MQTT message to its part; False: leave it for the next run."""
        if self._state == "offline":
            return False  # stopping: it stays with the broker for the next run
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            payload = b"" if payload is None else str(payload).encode()
        topic = message.topic.value
        if topic.startswith("audio/"):
            kind = topic.rpartition("/")[2]
            self.received[kind if kind in MESSAGE_KINDS else "other"] += 1
            return self.pipeline.on_audio_message(topic, bytes(payload)).taken
        if topic.startswith("orac/request/"):
            self.requests.on_message(topic, bytes(payload), message.properties)
        elif topic.startswith("orac/context/"):
            self._on_context(topic, bytes(payload), message)
        elif topic == MODEL_SELECTION_TOPIC:
            self.models.on_message(bytes(payload))
        elif self.registry.handles(topic):
            self.registry.on_message(topic, bytes(payload))
        elif self.fleet is not None:
            self._on_fleet(topic, bytes(payload), retained=bool(message.retain))
        return True

    def _screen(self, message: aiomqtt.Message) -> bool:
        """An audio message as it arrives: True when the pipeline dealt with it already.

        Only while ready: a draining node leaves new sessions with the broker.
        """
        topic = message.topic.value
        payload = message.payload
        if self._state != "ready" or not topic.startswith("audio/"):
            return False
        if not isinstance(payload, bytes | bytearray) or not self.pipeline.screen(
            topic, bytes(payload)
        ):
            return False
        self.received["chunk"] += 1
        return True

    def _on_fleet(self, topic: str, payload: bytes, *, retained: bool) -> None:
        """A node's status or a session claim: who decodes what (ingest/fleet.py)."""
        assert self.fleet is not None
        try:
            if topic.startswith("orac/claim/"):
                claim = SessionClaim.decode(payload)
                lost = self.fleet.on_claim(claim, retained=retained)
                if lost is not None:
                    self.pipeline.abandon(lost)
            elif payload:  # a status cleared by an admin (forget-node) is no node
                self.fleet.on_status(NodeStatus.decode(payload))
        except ContractError as exc:
            log.warning("ignoring %s: %s", topic, exc.message)

    def _on_context(self, topic: str, payload: bytes, message: aiomqtt.Message) -> None:
        # the broker counts a retained message's expiry down: what is left of it
        expiry = getattr(message.properties, "MessageExpiryInterval", None)
        try:
            self.context.on_message(topic, payload, now=time.monotonic(), expiry_s=expiry)
        except ContractError as exc:
            self.context_refused += 1
            log.warning("context on %s refused: %s", topic, exc.message)

    def _session_lost(self) -> None:
        """Retained configs and context are re-read from the broker, which re-sends them.

        The broker may have lost what we retained too: Home Assistant's configs go again.
        """
        self.registry.forget_retained()
        self.context.clear()
        if self.discovery is not None:
            self.discovery.session_lost()

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
            console_task = (
                group.create_task(self._console(), name="console")
                if self.config.console.enabled
                else None
            )
            # Pings from this loop (from READY=1 on): if it wedges they stop, systemd restarts us.
            watchdog = group.create_task(self._systemd.watchdog(), name="systemd-watchdog")
            self._publish_status()
            await self._load_models(bus_task)
            scheduler = self.pool.scheduler
            scheduler_task = group.create_task(scheduler.run(), name="inference")
            webhooks_task = group.create_task(self._deliver_webhooks(), name="webhooks")
            spool_task = group.create_task(self._sync_spool(), name="spool-sync")
            self._recover()
            ticker_task = group.create_task(self._ticker(), name="ticker")
            intake = group.create_task(self.bus.open_intake(), name="open-intake")
            stop = group.create_task(self._stop.wait(), name="stop-wait")
            await asyncio.wait((intake, stop), return_when=asyncio.FIRST_COMPLETED)
            jobs_task = None
            if intake.done():
                await self._ready()
                if self.jobs is not None:
                    jobs_task = group.create_task(self._job_runner(self.jobs).run(), name="jobs")
                await stop
            intake.cancel()
            if jobs_task is not None:  # a job mid-way resumes on another node (jobs/runner.py)
                jobs_task.cancel()
            await self._drain()
            ticker_task.cancel()
            await self.models.close()
            spool_task.cancel()
            scheduler_task.cancel()
            await self.pipeline.decoder.close()
            self.bus.stop()
            await bus_task
            watchdog.cancel()
            webhooks_task.cancel()
            if console_task is not None:
                console_task.cancel()
            await self.webhooks.close()
            if self.jobs is not None:
                await self.jobs.close()

    async def _console(self) -> None:
        """The web console (docs/CONSOLE.md); a console that cannot start leaves the node be."""
        try:
            await ConsoleServer(self.config).run()
        except (OSError, ValueError) as exc:
            log.error("the console could not start: %s", exc)  # noqa: TRY400 - no traceback: a port in use

    def _job_runner(self, store: JobStore) -> JobRunner:
        config = self.config
        return JobRunner(
            store,
            self.pool.scheduler,
            node_id=self.node_id,
            lease_s=config.jobs.lease_s,
            options=lambda language, prompt: DecodeOptions.final(
                config.decode, language=language, prompt=prompt
            ),
            speech=lambda samples: speech_probabilities(samples, self._vad),
            publish=lambda event: self.bus.publish(
                Outgoing(job_topic(event.job), event.encode(), qos=1)
            ),
        )

    async def _load_models(self, bus_task: asyncio.Task[None]) -> None:
        """The engines, tiers, a promoted model and the VAD; offline on the bus if that fails."""
        started, before = time.monotonic(), resident_bytes()
        try:
            engines = await asyncio.to_thread(self._load_engines)
            after = resident_bytes()
            load_s = time.monotonic() - started
            grown = after - before if after is not None and before is not None else None
            self.pool.start(engines, LoadedModel(round(load_s, 3), grown))
            await self.pool.load_tiers()
            await self.models.start()  # a promoted model, if the broker has one
            await asyncio.to_thread(self._vad.load)
        except Exception:
            # Say so on the bus instead of leaving a retained "starting" behind.
            self._set_state("offline")
            self.bus.stop()
            await bus_task
            raise
        self.metrics.model_load.set(load_s)
        log.info("model ready in %.2f s (%d worker(s))", load_s, len(engines))

    async def _ready(self) -> None:
        """Models loaded, subscriptions acknowledged: open the other doors and say so."""
        # Everything alive now (models, config, libraries) lives as long as the
        # process: keep it out of the garbage collector's scans, which otherwise
        # walk it again and again as the per-message objects churn.
        gc.freeze()
        if self.wyoming is not None:
            await self.wyoming.start()
        # sessions begun before now came from the broker's backlog: with other nodes
        # up, they had them (ingest/intake.py)
        self.pipeline.intake.ready_at = time.time()
        if self.discovery is not None:
            self.discovery.publish_node()
        self._set_state("ready")
        self._systemd.ready()

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
        intake = self.pipeline.intake
        finished = self.spool.finished()
        intake.remember_finished(finished)
        done = set(finished)
        replayed = chunks = 0
        intake.replaying = True
        try:
            for found in self.spool.recover():
                if (found.device, found.session) in done:
                    self.spool.finish(found.device, found.session)  # killed after its final
                    continue
                opened = False
                for payload in found.payloads:
                    outcome = self.pipeline.on_audio_message(found.topic, payload)
                    opened = opened or outcome.audio is not None
                if not opened:  # refused now (its topic disabled meanwhile, limits): told, dropped
                    self.spool.discard(found.device, found.session)
                    continue
                replayed += 1
                chunks += len(found.payloads)
        finally:
            intake.replaying = False
        if replayed:
            log.info("recovered %d session(s), %d chunk(s), from the spool", replayed, chunks)

    async def _drain(self) -> None:
        self._systemd.stopping("draining: finishing open utterances")
        self._set_state("draining")
        intake = self.pipeline.intake
        # No unsubscribe from audio: the persistent session keeps queueing it for the
        # next run, and new sessions are declined (left unacknowledged) rather than taken.
        intake.draining = True
        # But requests to "any" must go to the nodes that stay: a stopped node's session
        # would otherwise keep its share of them queued until it returns.
        await self.bus.unsubscribe(SHARED_REQUEST_FILTER)
        if self.wyoming is not None:
            await self.wyoming.stop_listening()  # Home Assistant tries the next server
        deadline = time.monotonic() + DRAIN_LISTEN_S
        # polling: the session table has no event to wait on, and 50 ms is plenty
        while intake.utterances and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(TICK_S)  # open sessions may still end on their own
        if self.wyoming is not None:
            await self.wyoming.close()  # utterances still open end now, like a satellite's
        for utt in intake.end_all(EndReason.SHUTDOWN, time.monotonic()):
            self.pipeline.finalize_soon(utt)
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

    def _load(self) -> tuple[int, int, float | None, bool]:
        """What the status shows of the node's load.

        Open sessions, queued decodes, the last final's latency, and whether
        the node refuses new sessions as overloaded.
        """
        intake = self.pipeline.intake
        last_final_ms = self._publisher.last_final_ms
        return len(intake.utterances), self.pool.queued, last_final_ms, intake.overloaded

    def _status_stale(self, now: float) -> bool:
        """The load changed since the last status, and that one is old enough to replace."""
        fresh = now - self._status_at < STATUS_MIN_INTERVAL_S
        return not fresh and self._load() != self._status_shown

    def _publish_status(self) -> None:
        self._status_shown = load = self._load()
        self._status_at = time.monotonic()
        sessions, queued, _, overloaded = load
        capacity = self.config.model.resolved_workers()
        if self.fleet is not None:
            self.fleet.own_state(self._state, capacity, overloaded=overloaded)
        self._publisher.status(
            self._state,
            sessions=sessions,
            queued=queued,
            model=self.pool.finals,
            capacity=capacity,
            overloaded=overloaded,
        )
        self._systemd.status(f"{self._state}: {sessions} open session(s), {queued} queued")

    async def _sync_spool(self) -> None:
        """Fsync the spool (and compact its finished log) in a thread, never on this loop.

        Every ``spool.fsync_interval_ms``; with 0, whenever something was written.
        """
        if self.spool is None:
            return
        interval_s = self.config.spool.fsync_interval_ms / 1000
        while True:
            if interval_s:
                await asyncio.sleep(interval_s)
            else:
                await self._spool_written.wait()
                self._spool_written.clear()
            await asyncio.to_thread(self.spool.sync)

    async def _ticker(self) -> None:
        next_status = time.monotonic() + STATUS_EVERY_S
        offline = False
        while True:
            slept_at = time.monotonic()
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            # the node's load (ingest/load.py): how late this loop ran, how long a message waited
            late = now - slept_at - TICK_S
            self.pipeline.intake.observe_lag(max(late, self.bus.take_worst_wait()))
            if not self.bus.connected.is_set():
                offline = True  # cut off from the broker: no satellite is idle, we are
                continue
            if offline:
                offline = False
                self.pipeline.intake.resume(now)
            self.pipeline.tick(now)
            if now >= next_status or self._status_stale(now):
                next_status = now + STATUS_EVERY_S
                self._publish_status()

    def _spawn(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        """Run per-session work as a tracked task (drain waits for these); failures are logged."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("task %s failed", task.get_name(), exc_info=error)

    def _readings(self) -> Readings:
        """The counts and levels the metrics collector reads at each scrape."""
        intake, decoder, webhooks = self.pipeline.intake, self.pipeline.decoder, self.webhooks
        return Readings(
            received=dict(self.received),
            dropped={
                "late": intake.late_chunks,
                "rate_limited": intake.throttled,
                "refused": intake.shed[1],
                "queue_full": self.bus.incoming_dropped,
                "outbox_full": self.bus.outbox_dropped,
            },
            errors=dict(self.pipeline.errors),
            cache_hits=decoder.cache_hits,
            cache_misses=decoder.cache_misses,
            broker_connects=self.bus.connects,
            sessions=len(intake.utterances),
            queued=self.pool.queued,
            spool_bytes=self.spool.size_bytes if self.spool else 0,
            lag_s=intake.load.lag_s,
            session_cap=intake.load.cap,
            overloaded=intake.overloaded,
            webhooks={
                "delivered": webhooks.delivered,
                "failed": webhooks.failed_attempts,
                "dead": webhooks.dead,
                "lost": webhooks.lost,
            },
            webhook_outbox=webhooks.queued,
            requests=dict(self.requests.handled),
            recent_sessions=len(self.recent),
            context_updates=self.context.updates,
            refused={"context": self.context_refused, "registry": self.registry.invalid},
            wyoming_connections=self.wyoming.connections if self.wyoming else 0,
            wyoming_replies=dict(self.wyoming.replies) if self.wyoming else {},
        )
