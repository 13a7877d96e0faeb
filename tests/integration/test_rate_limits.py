"""A device flooding at 10x its limit cannot hurt another, is told, and has new sessions refused.

The node runs with low per-device limits (60 messages/s, 2 s of audio/s, a
1 s burst) so the flood is short. Limits apply when a session opens: the
flooder's one session is admitted and never cut by a limit, so it ends at the
utterance length limit (everything after it is dropped and counted in
``session_too_long`` reports), and the device's next session is refused
(``rate_limited``) until it has paid for what it sent. Timing is not asserted
here: what a flood costs the other devices' latency is a benchmark figure
(``orac-node bench --scenario flood``, target R1).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orac_node.client import connect
from orac_node.ops.localbroker import BROKER_QUEUES, LocalBroker
from orac_node.wire import AudioChunk, AudioFormat, ErrorReport, audio_topic
from tests.conftest import AUDIO
from tests.integration.conftest import load
from tests.integration.harness import RunningNode, harness

LIMIT_PER_S = 60
NODE_CONFIG: dict[str, object] = {
    "ingest": {
        "device_chunks_per_s": LIMIT_PER_S,
        "device_audio_s_per_s": 2.0,
        "device_burst_s": 1.0,
    },
    # The flood's own session must outlive the flood (silence would otherwise end it
    # by speech timeout and turn its later chunks into uncounted late chunks).
    "endpoint": {"idle_timeout_s": 1.5, "no_speech_timeout_s": 60},
}
FLOOD_S = 4.0
SILENCE_20MS = b"\x00\x00" * 320


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A broker with the production queue limits: the broker must not drop the flood
    (Mosquitto's default queues 1000 messages per client), or the count of what the
    node dropped could not be checked against what was sent."""
    with LocalBroker(Path(tmp_path_factory.mktemp("mosq")), extra_config=BROKER_QUEUES) as b:
        yield b


async def _flood(url: str, device: str, seconds: float) -> tuple[int, float]:
    """One session of 20 ms silence chunks, as fast as this process can publish."""
    sent = 0
    async with connect(url) as mqtt:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            for _ in range(50):
                chunk = AudioChunk("flood", sent, 16000, 1, AudioFormat.S16LE, SILENCE_20MS)
                await mqtt.publish(audio_topic(device), chunk.encode(), qos=1)
                sent += 1
            await asyncio.sleep(0)
        end = AudioChunk("flood", sent, 16000, 1, AudioFormat.S16LE, b"", end=True)
        await mqtt.publish(audio_topic(device), end.encode(), qos=1)
        sent += 1
    return sent, elapsed


async def test_a_flooding_device_is_held_and_told_while_another_streams_untouched(
    node: RunningNode, device: str
) -> None:
    flooder = f"{device}-flood"
    async with harness(node.url) as h:
        stream = asyncio.create_task(
            h.session(device, load(AUDIO / "commands" / "utt013.wav"), realtime=True)
        )
        await asyncio.sleep(0.5)  # the flood starts while the user is speaking
        sent, elapsed = await _flood(node.url, flooder, FLOOD_S)
        # at once, a new session of the flooder: it has used far more than its rate
        fresh = AudioChunk("after", 0, 16000, 1, AudioFormat.S16LE, SILENCE_20MS, end=True)
        await h.mqtt.publish(audio_topic(flooder), fresh.encode(), qos=1)
        result = await stream
        flood_final = await h.wait_final("flood", timeout=15)

        def reported(code: str) -> list[ErrorReport]:
            return [e for e in h.errors[flooder] if e.code == code]

        # the last drops are reported within a second of happening
        deadline = time.monotonic() + 5
        while flood_final.chunks + sum(e.dropped or 0 for e in reported("session_too_long")) < sent:
            assert time.monotonic() < deadline, "dropped chunks were not all reported"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # anything more would be a report too many
    too_long, limited = reported("session_too_long"), reported("rate_limited")

    rate = sent / elapsed
    dropped = sum(e.dropped or 0 for e in too_long)
    print(
        f"flood: {sent} chunks at {rate:.0f}/s, {flood_final.chunks} taken, {dropped} dropped"
        f" in {len(too_long)} report(s); other device final {result.final}"
    )
    assert rate >= 10 * LIMIT_PER_S, f"the test only flooded at {rate:.0f} msg/s"
    # The other device: its command transcribed, whole, and nothing to complain about.
    final = result.final
    assert final is not None and "capital" in final.text.lower()
    assert (final.gaps, final.incomplete) == (0, False)
    assert h.errors[device] == []
    # The flooder's session was admitted and not cut by the limit: whole up to the
    # utterance limit, every chunk after it counted in a few reports.
    assert flood_final.endpoint == "max_duration"
    assert (flood_final.gaps, flood_final.incomplete) == (0, False)
    assert flood_final.chunks + dropped == sent
    assert 1 <= len(too_long) <= elapsed / 1.0 + 3
    assert all(e.dropped and e.message for e in too_long)
    # Its next session was refused up front, not transcribed in pieces.
    assert [(e.dropped, e.session) for e in limited] == [(1, "after")]
    assert "after" not in h.results
    assert len(h.errors[flooder]) == len(too_long) + len(limited)  # nothing else to tell
    assert node.process.poll() is None
