"""Offered more sessions than it keeps up with, a node keeps the ones it took whole.

A real node and a real broker. 36 satellites start an utterance at the same
moment: a node starts with room for 32 sessions at once (ingest/load.py's
starting cap, which it raises only while it keeps up), so 4 are refused up
front with ``overloaded``, each told once, within a second, and never opened
halfway when room comes back; the 32 it took are transcribed whole. A full
node's status handing its satellites to the others is test_fleet.py's; how
the cap follows the lag of a node truly behind is measured by ``orac-node
bench --scenario ingest`` (docs/BENCHMARKS.md), not timed here.
"""

from __future__ import annotations

import asyncio
import time

from orac_node.audio import float_to_s16
from orac_node.ingest.load import START_CAP
from orac_node.wire import AudioChunk, AudioFormat, audio_topic
from tests.conftest import AUDIO
from tests.integration.conftest import load
from tests.integration.harness import Harness, RunningNode, harness

SATELLITES = START_CAP + 4
NODE_CONFIG: dict[str, object] = {
    # the test holds every session open while it watches the refusals and the status
    "endpoint": {"idle_timeout_s": 10},
}
CHUNK = 320  # 20 ms


def _chunks(session: str) -> list[bytes]:
    pcm = float_to_s16(load(AUDIO / "commands" / "utt000.wav"))  # "turn on the kitchen lights"
    pieces = [pcm[i : i + CHUNK * 2] for i in range(0, len(pcm), CHUNK * 2)]
    pieces.append(bytes(16000 * 2 // 2))  # half a second of silence, as a satellite sends
    return [
        AudioChunk(
            session, seq, 16000, 1, AudioFormat.S16LE, piece, end=seq == len(pieces) - 1
        ).encode()
        for seq, piece in enumerate(pieces)
    ]


async def test_a_full_node_refuses_new_sessions_whole_and_keeps_the_rest_whole(
    node: RunningNode,
) -> None:
    devices = [f"crowd-{i}" for i in range(SATELLITES)]
    sessions = {device: _chunks(f"{device}-s") for device in devices}
    async with harness(node.url) as h:
        started = time.monotonic()
        for device in devices:  # every satellite starts speaking at once
            await h.mqtt.publish(audio_topic(device), sessions[device][0], qos=1)
        told = await _told(h, devices, SATELLITES - START_CAP)
        for device in devices:  # the rest of every utterance, the refused ones' too
            for payload in sessions[device][1:]:
                await h.mqtt.publish(audio_topic(device), payload, qos=1)
        admitted = [d for d in devices if d not in told]
        finals = {d: await h.wait_final(f"{d}-s", timeout=120) for d in admitted}
        await asyncio.sleep(1.0)  # time for a wrong final or a second error to show
        # room again: a refused satellite's next utterance is taken
        first = next(iter(told))
        for payload in _chunks(f"{first}-again"):
            await h.mqtt.publish(audio_topic(first), payload, qos=1)
        retried = await h.wait_final(f"{first}-again", timeout=60)

    assert len(told) == SATELLITES - START_CAP
    for device, when in told.items():
        (report,) = h.errors[device]  # told once, not once per chunk
        assert (report.code, report.session) == ("overloaded", f"{device}-s")
        assert when - started < 1.0
        assert f"{device}-s" not in h.results  # never opened halfway
    for device, final in finals.items():
        assert h.errors[device] == []
        assert (final.chunks, final.gaps, final.incomplete) == (len(sessions[device]), 0, False)
        assert "kitchen" in final.text.lower()
    assert "kitchen" in retried.text.lower()
    assert node.process.poll() is None


async def _told(h: Harness, devices: list[str], expected: int) -> dict[str, float]:
    """When each device that was refused heard so, once ``expected`` have (or 5 s passed)."""
    told: dict[str, float] = {}
    deadline = time.monotonic() + 5.0
    while len(told) < expected and time.monotonic() < deadline:
        now = time.monotonic()
        for device in devices:
            if h.errors[device] and device not in told:
                told[device] = now
        await asyncio.sleep(0.01)
    return told
