"""The ``flood`` scenario: what one flooding device costs everyone else (target R1).

The single-stream clips are streamed twice in real time on one satellite:
first with nothing else on the bus, then while another device publishes at
10x a satellite's rate (20 ms chunks at 500/s, QoS 1, in ended 5 s sessions
of silence, as a satellite stuck replaying would). The node's per-device
limits (default 150 messages/s and 3 s of audio/s) drop most of the flood
before parsing it; what remains costs the node the VAD and session work of
3x a live stream. R1 compares the satellite's final-latency p50 in the two
passes. The flood starts :data:`WARMUP_S` before the second pass, so the
clips meet the steady, throttled flood rather than its initial burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import aiomqtt
import numpy as np

from orac_node.bench.corpus import Clip
from orac_node.bench.streams import Collector, StreamRecord, stream_clip
from orac_node.client import connect
from orac_node.errors import ContractError
from orac_node.wire import (
    SAMPLE_RATE,
    AudioChunk,
    AudioFormat,
    ErrorCode,
    ErrorReport,
    audio_topic,
    error_topic,
)

log = logging.getLogger(__name__)

CHUNK_MS = 20
FLOOD_PER_S = 500
"""10x the 50 chunks/s of a satellite sending 20 ms chunks."""
FLOOD_SESSION_CHUNKS = 250
"""5 s sessions, each ended, so the flood is not also a pile of open sessions."""
WARMUP_S = 6.0
"""Flood before the measured pass: at 500/s against 150/s the default 1500-message
burst allowance lasts ~4.3 s; after it the flood is throttled."""
GAP_S = 0.3
"""Pause between utterances, as in the ``single`` scenario."""


@dataclass
class FloodStats:
    """What the flooding device sent and what it was told."""

    sent: int = 0
    seconds: float = 0.0
    reports: int = 0
    dropped: int = 0

    @property
    def rate(self) -> float:
        """Messages per second actually offered."""
        return self.sent / self.seconds if self.seconds else 0.0


async def _listen(mqtt: aiomqtt.Client, stats: FloodStats) -> None:
    async for message in mqtt.messages:
        if not isinstance(message.payload, bytes | bytearray):
            continue
        try:
            report = ErrorReport.decode(bytes(message.payload))
        except ContractError:
            continue
        if report.code == ErrorCode.RATE_LIMITED:
            stats.reports += 1
            stats.dropped += report.dropped or 0


async def flood(url: str, device: str, stop: asyncio.Event, stats: FloodStats) -> None:
    """Publish silence at :data:`FLOOD_PER_S` until ``stop``; count the reports."""
    silence = bytes(SAMPLE_RATE * CHUNK_MS // 1000 * 2)
    per_tick = FLOOD_PER_S * CHUNK_MS // 1000
    async with connect(url) as mqtt:
        await mqtt.subscribe(error_topic(device), qos=1)
        listener = asyncio.create_task(_listen(mqtt, stats), name="flood-errors")
        started = time.monotonic()
        tick = 0
        while not stop.is_set():
            for _ in range(per_tick):
                n = stats.sent
                seq = n % FLOOD_SESSION_CHUNKS
                chunk = AudioChunk(
                    f"flood-{n // FLOOD_SESSION_CHUNKS}",
                    seq,
                    SAMPLE_RATE,
                    1,
                    AudioFormat.S16LE,
                    silence,
                    end=seq == FLOOD_SESSION_CHUNKS - 1,
                )
                await mqtt.publish(audio_topic(device), chunk.encode(), qos=1)
                stats.sent += 1
            tick += 1
            delay = started + tick * CHUNK_MS / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        stats.seconds = time.monotonic() - started
        await asyncio.sleep(1.5)  # the last rate_limited report comes a second late
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


def _p50(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _p95(values: list[float]) -> float | None:
    return round(float(np.percentile(values, 95)), 1) if values else None


async def _pass(
    mqtt: aiomqtt.Client, collector: Collector, clips: list[Clip], scenario: str
) -> list[StreamRecord]:
    records = []
    for clip in clips:
        records.append(await stream_clip(mqtt, collector, clip, scenario=scenario, device="sat-0"))
        await asyncio.sleep(GAP_S)
    return records


async def run_flood(
    url: str, mqtt: aiomqtt.Client, collector: Collector, clips: list[Clip]
) -> tuple[list[StreamRecord], dict[str, Any]]:
    """Both passes; the flooded pass's records, and the quiet pass's figures in ``extra``."""
    quiet = await _pass(mqtt, collector, clips, "flood-quiet")
    stop, stats = asyncio.Event(), FloodStats()
    flooding = asyncio.create_task(flood(url, "flood-0", stop, stats), name="flooder")
    try:
        await asyncio.sleep(WARMUP_S)
        flooded = await _pass(mqtt, collector, clips, "flood")
    finally:
        stop.set()
        await flooding
    quiet_ms = [r.latency_ms for r in quiet if r.final is not None]
    flood_ms = [r.latency_ms for r in flooded if r.final is not None]
    extra: dict[str, Any] = {
        "quiet_latency_ms": [round(ms, 1) for ms in quiet_ms],
        "quiet_missing_finals": len(quiet) - len(quiet_ms),
        "quiet_p50_ms": _p50(quiet_ms),
        "flood_p50_ms": _p50(flood_ms),
        "quiet_p95_ms": _p95(quiet_ms),
        "flood_p95_ms": _p95(flood_ms),
        # The node's own endpoint -> publish time, without the network in between.
        "quiet_node_p50_ms": _p50([r.final.latency_ms for r in quiet if r.final is not None]),
        "flood_node_p50_ms": _p50([r.final.latency_ms for r in flooded if r.final is not None]),
        "flooder": {**asdict(stats), "rate": round(stats.rate, 1)},
    }
    log.info(
        "flood: p50 %s ms quiet, %s ms flooded; flooder sent %d at %.0f/s, %d dropped in %d"
        " report(s)",
        extra["quiet_p50_ms"],
        extra["flood_p50_ms"],
        stats.sent,
        stats.rate,
        stats.dropped,
        stats.reports,
    )
    return flooded, extra
