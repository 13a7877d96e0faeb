"""Simulated satellites and a transcript collector, timed from the client side.

Latency here is what a user feels: from the moment the last chunk of an
utterance (the one with ``end``) leaves the satellite to the moment its final
arrives, measured on this process's monotonic clock. Partial lag is how much
audio the satellite had sent when a partial arrived, minus the audio that
partial covers.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

import aiomqtt

from orac_node.bench.corpus import Clip
from orac_node.client import split_chunks, transcripts
from orac_node.wire import (
    SAMPLE_RATE,
    TRANSCRIPT_FILTER,
    AudioChunk,
    AudioFormat,
    Final,
    audio_topic,
)

log = logging.getLogger(__name__)


@dataclass
class StreamRecord:
    """Everything measured about one streamed utterance."""

    scenario: str
    device: str
    session: str
    clip: Clip
    started: float = 0.0  # first chunk sent
    end_sent: float = 0.0  # last chunk (end=true) sent
    chunks_sent: int = 0
    sent_s: list[tuple[float, float]] = field(default_factory=list)  # (time, audio seconds sent)
    partial_lags_s: list[tuple[float, float]] = field(default_factory=list)  # (time, lag)
    partial_costs: list[tuple[float, float]] = field(default_factory=list)  # (audio s, decode ms)
    final: Final | None = None
    final_at: float = 0.0

    @property
    def latency_ms(self) -> float:
        """End chunk sent -> final received."""
        return (self.final_at - self.end_sent) * 1000

    @property
    def speech_latency_ms(self) -> float:
        """End of speech sent -> final received: what the user waits, trailing silence aside.

        The clip's last speech went out when the audio sent first covered its
        ``speech_end_s``; a clip without measured speech counts from the end chunk.
        """
        end_s = self.clip.speech_end_s
        if end_s is None:
            return self.latency_ms
        sent_at = next((t for t, seconds in self.sent_s if seconds >= end_s), self.end_sent)
        return (self.final_at - sent_at) * 1000

    def audio_sent_at(self, when: float) -> float:
        """Seconds of audio this stream had sent by ``when``."""
        sent = 0.0
        for t, seconds in self.sent_s:
            if t > when:
                break
            sent = seconds
        return sent


class Collector:
    """Reads transcripts on its own connection and files them under their session."""

    def __init__(self, mqtt: aiomqtt.Client) -> None:
        self._mqtt = mqtt
        self.records: dict[str, StreamRecord] = {}
        self._finals: dict[str, asyncio.Event] = {}

    async def start(self) -> None:
        """Subscribe; call before streaming."""
        await self._mqtt.subscribe(TRANSCRIPT_FILTER, qos=1)

    def expect(self, record: StreamRecord) -> asyncio.Event:
        """Register a stream; the returned event is set when its final arrives."""
        self.records[record.session] = record
        event = self._finals[record.session] = asyncio.Event()
        return event

    async def run(self) -> None:
        """Collect until cancelled."""
        async for t in transcripts(self._mqtt):
            now = time.monotonic()
            record = self.records.get(t.session)
            if record is None:
                continue
            if isinstance(t, Final):
                record.final, record.final_at = t, now
                self._finals[t.session].set()
            else:
                lag = max(0.0, record.audio_sent_at(now) - t.audio_s)
                record.partial_lags_s.append((now, lag))
                record.partial_costs.append((t.audio_s, t.decode_ms))


async def stream_clip(
    mqtt: aiomqtt.Client,
    collector: Collector,
    clip: Clip,
    *,
    scenario: str,
    device: str,
    chunk_ms: int = 20,
    realtime: bool = True,
    start_at: float | None = None,
    wait_final_s: float = 60.0,
    topic: str | None = None,
) -> StreamRecord:
    """Stream one clip (in real time unless told otherwise); wait for its final.

    ``topic`` names the transcript topic in every chunk (None: the node's default),
    for scenarios that measure a topic's consumers (webhooks).
    """
    record = StreamRecord(scenario, device, uuid.uuid4().hex[:16], clip)
    done = collector.expect(record)
    if start_at is not None:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    pieces = split_chunks(clip.samples, chunk_ms)
    mqtt_topic = audio_topic(device)
    record.started = time.monotonic()
    sent_samples = 0
    for seq, pcm in enumerate(pieces):
        last = seq == len(pieces) - 1
        chunk = AudioChunk(
            record.session,
            seq,
            SAMPLE_RATE,
            1,
            AudioFormat.S16LE,
            pcm,
            end=last,
            topic=topic,
            ts=time.time(),
        )
        await mqtt.publish(mqtt_topic, chunk.encode(), qos=1)
        now = time.monotonic()
        sent_samples += len(pcm) // 2
        record.sent_s.append((now, sent_samples / SAMPLE_RATE))
        record.chunks_sent += 1
        if last:
            record.end_sent = now
            break
        delay = record.started + (seq + 1) * chunk_ms / 1000 - now
        if realtime and delay > 0:
            await asyncio.sleep(delay)
    try:
        async with asyncio.timeout(wait_final_s):
            await done.wait()
    except TimeoutError:
        log.warning("%-12s %-10s %-28s no final", scenario, device, clip.name)
        return record  # reported as a missing final
    final = record.final
    assert final is not None
    log.info(
        "%-12s %-10s %-28s %6.0f ms  %s",
        scenario,
        device,
        clip.name,
        record.latency_ms,
        final.text or f"({final.rejected})",
    )
    return record
