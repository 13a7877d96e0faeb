"""A real Pipeline on the unit bench: real intake, VAD, scheduler and publisher, a scripted engine.

The engine is the only stand-in (the seam the scheduler tests use too): it records
what it was asked to decode and can be held, so a test sees what the pipeline
queues and when. Everything the pipeline publishes lands in the (unconnected)
bus's outbox, where the test reads it back through the wire contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from orac_node.audio import Samples, float_to_s16
from orac_node.audio.vad import SileroVad, speech_probabilities
from orac_node.config import NodeConfig
from orac_node.consumers.context import ContextStore
from orac_node.consumers.recent import RecentAudio
from orac_node.consumers.webhooks import WebhookDelivery
from orac_node.decode.cache import TranscriptCache
from orac_node.decode.decoding import DecodeOptions, Decoding
from orac_node.decode.finals import FinalDecoder
from orac_node.decode.modelpool import ModelPool
from orac_node.decode.scheduler import Decoder
from orac_node.ingest.intake import Intake
from orac_node.ingest.spool import Spool
from orac_node.mqtt.bus import Bus, Outgoing
from orac_node.mqtt.publisher import TranscriptPublisher
from orac_node.ops.metrics import NodeMetrics, Readings
from orac_node.pipeline import Pipeline
from orac_node.wire import (
    SAMPLE_RATE,
    AudioChunk,
    AudioFormat,
    ErrorReport,
    Final,
    Partial,
    TopicConfig,
    decode_transcript,
)

VAD = SileroVad()
HOLD_LIMIT_S = 10.0
"""A held decode gives up after this long, even if a test forgets to release it."""


@dataclass(frozen=True)
class Job:
    """One decode the engine was asked for."""

    final: bool  # finals decode with timestamps, partials without
    samples: int
    model: str
    at: float  # time.monotonic() when it began


class Activity:
    """How many engines decode at once, at most (engines of several models)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0

    def enter(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self._lock:
            self.now -= 1


@dataclass
class ScriptedEngine:
    """Answers every decode with ``text``; holds finals while ``hold`` is clear (abortable)."""

    text: str = "turn on the lights"
    partial_text: str | None = None  # what partials decode to, when not ``text``
    confidence: float = 0.9
    seconds_per_audio_s: float = 0.0  # how long a decode takes, by the audio it decodes
    name: str = "tiny.en"
    activity: Activity | None = None  # shared by engines that must not run at once
    jobs: list[Job] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)
    aborted: int = 0

    def __post_init__(self) -> None:
        self.hold.set()

    def decode(
        self,
        samples: Samples,
        options: DecodeOptions,
        should_abort: Callable[[], bool] | None = None,
    ) -> Decoding:
        self.jobs.append(Job(options.timestamps, samples.size, self.name, time.monotonic()))
        if self.activity is not None:
            self.activity.enter()
        try:
            started = time.monotonic()
            busy_s = self.seconds_per_audio_s * samples.size / SAMPLE_RATE
            deadline = started + HOLD_LIMIT_S
            while time.monotonic() < deadline and (
                time.monotonic() - started < busy_s
                or (options.timestamps and not self.hold.is_set())
            ):
                if should_abort is not None and should_abort():
                    self.aborted += 1
                    return Decoding("", "en", 0.0, 1.0, aborted=True)
                time.sleep(0.002)
            text = self.text if options.timestamps else (self.partial_text or self.text)
            return Decoding(text, "en", self.confidence, 1.0)
        finally:
            if self.activity is not None:
                self.activity.leave()


class Rig:
    """A pipeline with its scheduler running, fed chunk by chunk."""

    def __init__(
        self,
        config: NodeConfig,
        engine: ScriptedEngine,
        state_dir: Path,
        *,
        cache: TranscriptCache | None = None,
        spool: Spool | None = None,
        load_engine: Callable[[Path], Decoder] | None = None,
    ) -> None:
        self.engine = engine
        self.bus = Bus(
            config.broker,
            client_id="rig",
            will=Outgoing("rig/will", b""),
            subscriptions=[],
            on_message=lambda _message: True,
        )
        self.pool = ModelPool(
            "tiny.en",
            extra=config.model.extra,
            threads=2,
            use_gpu=False,
            cache_dir=state_dir / "models",
            partials=config.model.partials,
            finals=config.model.finals,
            load_engine=load_engine,
        )
        self.scheduler = self.pool.start([engine])
        self.tasks: list[asyncio.Task[object]] = []
        pool = self.pool

        def topic(name: str) -> TopicConfig:
            return config.registry.topics.get(name, TopicConfig())

        self.pipeline = Pipeline(
            config,
            intake=Intake(
                config,
                vad=VAD,
                spool=spool,
                topic_config=topic,
                language_refusal=lambda language, name: pool.language_refusal(
                    language, pool.tiers(topic(name))
                ),
            ),
            decoder=FinalDecoder(
                self.pool, cache, speech=lambda samples: speech_probabilities(samples, VAD)
            ),
            publisher=TranscriptPublisher(self.bus, node_id="rig", model="tiny.en"),
            metrics=NodeMetrics(_no_readings),
            topics=topic,
            context=ContextStore(16),
            recent=RecentAudio(16, 600),
            webhooks=WebhookDelivery(config.webhooks, state_dir / "webhooks"),
            spool=spool,
            spawn=self._spawn,
        )

    def _spawn(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        self.tasks.append(asyncio.create_task(coro, name=name))

    def send(
        self, device: str, session: str, seq: int, samples: Samples, *, end: bool = False
    ) -> bool:
        pcm = float_to_s16(samples)
        chunk = AudioChunk(session, seq, SAMPLE_RATE, 1, AudioFormat.S16LE, pcm, end=end)
        return self.pipeline.on_audio_message(f"audio/{device}/chunk", chunk.encode()).taken

    async def stream(
        self,
        device: str,
        session: str,
        samples: Samples,
        *,
        chunk_ms: int = 20,
        first_seq: int = 0,
        end: bool = False,
        pace_s: float = 0.0,
    ) -> int:
        """Send ``samples`` as chunks; return the next seq. ``pace_s`` between chunks."""
        step = SAMPLE_RATE * chunk_ms // 1000
        pieces = [samples[i : i + step] for i in range(0, samples.size, step)]
        seq = first_seq
        for index, piece in enumerate(pieces):
            self.send(device, session, seq, piece, end=end and index == len(pieces) - 1)
            seq += 1
            await asyncio.sleep(pace_s)
        return seq

    def acknowledge_all(self) -> None:
        """What the bus does on each PUBACK: run the messages' ``on_sent``."""
        for message in self.bus._outbox:
            if message.on_sent is not None:
                message.on_sent()

    def published(self) -> list[Partial | Final | ErrorReport]:
        """Everything in the outbox, decoded (transcripts and error reports)."""
        out: list[Partial | Final | ErrorReport] = []
        for message in list(self.bus._outbox):
            if message.topic.startswith("transcript/"):
                out.append(decode_transcript(message.payload))
            elif message.topic.startswith("orac/device/"):
                out.append(ErrorReport.decode(message.payload))
        return out

    def finals(self) -> list[Final]:
        return [m for m in self.published() if isinstance(m, Final)]

    def partials(self) -> list[Partial]:
        return [m for m in self.published() if isinstance(m, Partial)]

    def errors(self) -> list[ErrorReport]:
        return [m for m in self.published() if isinstance(m, ErrorReport)]

    def raw_outbox(self) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.bus._outbox if m.payload[:1] == b"{"]


def _no_readings() -> Readings:
    raise AssertionError("the rig serves no /metrics")


def silence(seconds: float) -> Samples:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)


@contextlib.asynccontextmanager
async def running(
    config: NodeConfig,
    engine: ScriptedEngine,
    state_dir: Path,
    *,
    cache: TranscriptCache | None = None,
    spool: Spool | None = None,
    load_engine: Callable[[Path], Decoder] | None = None,
) -> AsyncIterator[Rig]:
    """A rig whose scheduler serves; its tasks are cancelled on the way out."""
    rig = Rig(config, engine, state_dir, cache=cache, spool=spool, load_engine=load_engine)
    scheduler = asyncio.create_task(rig.scheduler.run(), name="rig-scheduler")
    try:
        yield rig
    finally:
        engine.hold.set()
        for task in [*rig.tasks, scheduler]:
            task.cancel()
        await asyncio.gather(*rig.tasks, scheduler, return_exceptions=True)
        await rig.pipeline._webhooks.close()
