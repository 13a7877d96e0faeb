"""The ``rooms`` scenario: whether the right satellite wins, and what winning costs.

A room group of three satellites (``room-a``, ``room-b``, ``room-c``) on the
bench's node, set the way a user sets one (a retained group, the default
window and wait). For every voice-assistant clip (every set but read speech):

- **same words**: the clip streamed by two satellites of the group at once, one
  at full level and one 12 dB quieter (a speaker near one, across the room from
  the other); which device is near alternates, so "the first device" cannot
  pass for "the louder". Right: the near one's final is published and the far
  one's is ``rejected: duplicate`` naming it. Even clips are streamed in real
  time, odd ones at once.
- **different words**: the clip on one satellite and the next clip on another,
  at once: both must be published.
- **alone**: the clip sent at once by ``room-c`` alone and by ``sat-outside``,
  a device in no group, one after the other (which goes first alternates): a
  lone satellite of a group must not wait, so their latencies should match.

No targets: the figures go in the report's ``rooms`` extra and the table.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import statistics
from typing import Any

import aiomqtt

from orac_node.bench.corpus import Clip
from orac_node.bench.streams import Collector, StreamRecord, stream_clip
from orac_node.wire import DUPLICATE, RoomGroup, room_group_topic

log = logging.getLogger(__name__)

GROUP = "bench-room"
NEAR_A, NEAR_B, ALONE, OUTSIDE = "room-a", "room-b", "room-c", "sat-outside"
FAR_GAIN = 0.25
"""12 dB quieter: a satellite a few metres further from the speaker than the other."""
SKIPPED_SETS = frozenset({"speech"})
"""Read passages are dictation, not voice commands two satellites would both wake on."""
GAP_S = 1.3
"""Pause after each pair: longer than the group's 1 s window, so one pair's sessions
are never peers of the next pair's. Sent at once, a pair takes well under a second,
and without it the next pair's same words would be taken for the previous pair's
echo; people do not ask again within a second either."""
SETTLE_S = 0.5
"""Time for the node's registry to take the retained room group."""


async def run_rooms(
    url: str, mqtt: aiomqtt.Client, collector: Collector, clips: list[Clip]
) -> tuple[list[StreamRecord], dict[str, Any]]:
    """Stream the pairs; return the winners' records and the scenario's figures."""
    del url  # the scenario needs no connection of its own
    chosen = [c for c in clips if c.set_name not in SKIPPED_SETS] or clips
    group = RoomGroup(devices=[NEAR_A, NEAR_B, ALONE])
    topic = room_group_topic(GROUP)
    await mqtt.publish(topic, group.model_dump_json().encode(), qos=1, retain=True)
    await asyncio.sleep(SETTLE_S)
    try:
        same = [await _same_words(mqtt, collector, clip, i) for i, clip in enumerate(chosen)]
        different = [
            await _different_words(mqtt, collector, clip, chosen[(i + 1) % len(chosen)])
            for i, clip in enumerate(chosen)
            if len(chosen) > 1
        ]
        alone = [await _alone(mqtt, collector, clip, i) for i, clip in enumerate(chosen)]
    finally:
        await mqtt.publish(topic, b"", qos=1, retain=True)
    winners = [near for near, _, _ in same]
    return winners, _figures(same, different, alone)


async def _same_words(
    mqtt: aiomqtt.Client, collector: Collector, clip: Clip, i: int
) -> tuple[StreamRecord, StreamRecord, bool]:
    near_device, far_device = (NEAR_A, NEAR_B) if i % 2 == 0 else (NEAR_B, NEAR_A)
    realtime = i % 2 == 0
    far_clip = dataclasses.replace(clip, samples=clip.samples * FAR_GAIN)
    # the far one starts first: arriving first must not be what wins
    far, near = await asyncio.gather(
        stream_clip(
            mqtt, collector, far_clip, scenario="rooms", device=far_device, realtime=realtime
        ),
        stream_clip(mqtt, collector, clip, scenario="rooms", device=near_device, realtime=realtime),
    )
    await asyncio.sleep(GAP_S)
    return near, far, realtime


async def _different_words(
    mqtt: aiomqtt.Client, collector: Collector, clip: Clip, other: Clip
) -> tuple[StreamRecord, StreamRecord]:
    first, second = await asyncio.gather(
        stream_clip(mqtt, collector, clip, scenario="rooms-diff", device=NEAR_A, realtime=False),
        stream_clip(mqtt, collector, other, scenario="rooms-diff", device=NEAR_B, realtime=False),
    )
    await asyncio.sleep(GAP_S)
    return first, second


async def _alone(
    mqtt: aiomqtt.Client, collector: Collector, clip: Clip, i: int
) -> tuple[StreamRecord, StreamRecord]:
    """The clip from the group's lone satellite and from outside; who goes first alternates."""
    records: dict[str, StreamRecord] = {}
    for device in (ALONE, OUTSIDE) if i % 2 == 0 else (OUTSIDE, ALONE):
        records[device] = await stream_clip(
            mqtt, collector, clip, scenario="rooms-alone", device=device, realtime=False
        )
        await asyncio.sleep(GAP_S)
    return records[ALONE], records[OUTSIDE]


def _accepted(record: StreamRecord) -> bool:
    return record.final is not None and record.final.rejected is None


def _figures(
    same: list[tuple[StreamRecord, StreamRecord, bool]],
    different: list[tuple[StreamRecord, StreamRecord]],
    alone: list[tuple[StreamRecord, StreamRecord]],
) -> dict[str, Any]:
    """Counts of each outcome, and the latencies that show what arbitration costs."""

    def outcome(near: StreamRecord, far: StreamRecord) -> str:
        if near.final is None or far.final is None:
            return "missing"
        if not _accepted(near) and not _accepted(far):
            return "neither"  # both rejected (no speech heard), nothing to arbitrate
        if _accepted(near) and far.final.rejected == DUPLICATE:
            return "right" if far.final.duplicate_of == near.session else "wrong"
        if _accepted(far) and near.final.rejected == DUPLICATE:
            return "wrong"  # the far satellite won
        return "both" if _accepted(near) and _accepted(far) else "other"

    by_way: dict[str, dict[str, int]] = {}
    for near, far, realtime in same:
        way = by_way.setdefault("real time" if realtime else "at once", {})
        result = outcome(near, far)
        way[result] = way.get(result, 0) + 1
    both_published = sum(1 for a, b in different if _accepted(a) and _accepted(b))
    grouped = [g.latency_ms for g, _ in alone if g.final is not None]
    outside = [o.latency_ms for _, o in alone if o.final is not None]
    winners = [n.latency_ms for n, f, _ in same if _accepted(n) and f.final is not None]
    return {
        "pairs": len(same),
        "same_words": by_way,
        "different_words": {"pairs": len(different), "both_published": both_published},
        "winner_latency_ms_p50": statistics.median(winners) if winners else None,
        "alone_in_group_latency_ms_p50": statistics.median(grouped) if grouped else None,
        "outside_group_latency_ms_p50": statistics.median(outside) if outside else None,
    }


def format_rooms(extra: dict[str, Any]) -> list[str]:
    """The ``rooms`` scenario's lines for the bench's table."""
    lines = ["rooms (one answer per room group; measurements, no targets):"]
    for way, counts in extra["same_words"].items():
        total = sum(counts.values())
        detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        lines.append(f"  same words, {way}: {counts.get('right', 0)}/{total} right ({detail})")
    diff = extra["different_words"]
    lines.append(f"  different words: {diff['both_published']}/{diff['pairs']} both published")

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f} ms"

    lines.append(
        f"  final p50: winner {ms(extra['winner_latency_ms_p50'])}; lone satellite in the group"
        f" {ms(extra['alone_in_group_latency_ms_p50'])} vs outside any group"
        f" {ms(extra['outside_group_latency_ms_p50'])} (sent at once)"
    )
    return lines
