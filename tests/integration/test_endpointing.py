"""Every way an utterance can end, through the real node (issue 2: endpointing)."""

from __future__ import annotations

import asyncio
import uuid

import aiomqtt
import numpy as np

from orac_node.audio import float_to_s16
from orac_node.wire import SAMPLE_RATE, AudioChunk, AudioFormat, audio_topic
from tests.conftest import AUDIO
from tests.integration.conftest import load
from tests.integration.harness import RunningNode, harness

NODE_CONFIG: dict[str, object] = {
    "endpoint": {"idle_timeout_s": 1.0, "max_duration_s": 4.0, "no_speech_timeout_s": 2.0}
}


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)


async def _stream_without_end(mqtt: aiomqtt.Client, device: str, samples: np.ndarray) -> str:
    """Publish all chunks but never end=true (a satellite that relies on the node's VAD)."""
    session = uuid.uuid4().hex[:12]
    pcm = float_to_s16(samples)
    step = SAMPLE_RATE // 50 * 2
    for seq, i in enumerate(range(0, len(pcm), step)):
        chunk = AudioChunk(session, seq, SAMPLE_RATE, 1, AudioFormat.S16LE, pcm[i : i + step])
        await mqtt.publish(audio_topic(device), chunk.encode(), qos=1)
    return session


async def test_trailing_silence_ends_the_utterance(node: RunningNode, device: str) -> None:
    command = load(AUDIO / "commands" / "utt002.wav")  # "set a timer for ten minutes"
    async with harness(node.url) as h:
        session = await _stream_without_end(
            h.mqtt, device, np.concatenate((command, _silence(1.5)))
        )
        final = await h.wait_final(session)
    assert final.endpoint == "silence" and final.reason == "silence"
    assert "timer" in final.text.lower()
    assert not final.incomplete
    # It ended 0.7 s into the silence, not at the end of what was sent.
    assert final.audio_s < command.size / SAMPLE_RATE + 1.2


async def test_idle_satellite_is_finalized_and_flagged(node: RunningNode, device: str) -> None:
    command = load(AUDIO / "commands" / "utt000.wav")
    speech_only = command[: int(1.8 * SAMPLE_RATE)]  # cut mid-command, no trailing silence
    async with harness(node.url) as h:
        session = await _stream_without_end(h.mqtt, device, speech_only)
        final = await h.wait_final(session, timeout=10)
    assert final.endpoint == "idle"
    assert final.incomplete is True
    assert "kitchen" in final.text.lower()


async def test_max_duration_ends_the_session_and_later_audio_is_refused(
    node: RunningNode, device: str
) -> None:
    speech = load(AUDIO / "speech" / "ps_librivox_0870.wav")  # 7.1 s, limit is 4 s
    async with harness(node.url) as h:
        session = await _stream_without_end(h.mqtt, device, speech)
        final = await h.wait_final(session)
        errors = await h.wait_errors(device, 1)
    assert final.endpoint == "max_duration"
    assert abs(final.audio_s - 4.0) < 0.05
    assert final.text
    assert {e.code for e in errors} == {"session_too_long"}
    assert errors[0].session == session and errors[0].dropped == 1  # the first, told at once


async def test_no_speech_stream_times_out_with_empty_final(node: RunningNode, device: str) -> None:
    async with harness(node.url) as h:
        session = await _stream_without_end(h.mqtt, device, _silence(3.0))
        final = await h.wait_final(session)
    assert final.endpoint == "speech_timeout"
    assert final.text == "" and final.rejected == "no_speech"


async def test_late_chunks_of_a_finished_session_are_dropped(
    node: RunningNode, device: str
) -> None:
    command = load(AUDIO / "commands" / "utt005.wav")
    async with harness(node.url) as h:
        result = await h.session(device, command)
        # Replay the whole session: it must not open a second session or final.
        chunk = AudioChunk(
            result.session, 0, SAMPLE_RATE, 1, AudioFormat.S16LE, float_to_s16(command), end=True
        )
        await h.mqtt.publish(audio_topic(device), chunk.encode(), qos=1)
        (report,) = await h.wait_errors(device, 1)
        await asyncio.sleep(1.5)  # no second final, no second report
    assert result.final is not None and "time" in result.final.text.lower()
    assert [r.session for r in h.results.values() if r.final] == [result.session]
    assert (report.code, report.session, report.dropped) == ("late_audio", result.session, 1)
    assert h.errors[device] == [report]
