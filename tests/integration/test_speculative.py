"""Speculative finals: decoded at the pause, published the moment the endpoint confirms it."""

from __future__ import annotations

import numpy as np

from orac_node.wire import SAMPLE_RATE
from tests.conftest import AUDIO
from tests.integration.conftest import load
from tests.integration.harness import RunningNode, harness

NODE_CONFIG: dict[str, object] = {}  # defaults: speculate at 200 ms, silence endpoint 700 ms


async def test_final_is_ready_when_end_arrives_after_trailing_silence(
    node: RunningNode, device: str
) -> None:
    # The shared commands end with 0.3 s of silence before the satellite's end=true.
    command = load(AUDIO / "commands" / "utt016.wav")  # "turn on the porch light at sunset"
    async with harness(node.url) as h:
        result = await h.session(device, command, realtime=True)
    final = result.final
    assert final is not None
    assert final.speculative is True
    assert final.endpoint == "end"
    assert "porch" in final.text.lower()
    # Decoding started before end arrived, so publishing does not wait for a decode.
    assert final.latency_ms < final.decode_ms


async def test_speech_after_a_short_pause_discards_the_speculation(
    node: RunningNode, device: str
) -> None:
    first = load(AUDIO / "commands" / "utt004.wav")  # "turn the volume down"
    second = load(AUDIO / "commands" / "utt014.wav")  # "pause the music"
    # A 0.45 s pause between the two: past the 200 ms speculation point, short of the
    # 700 ms silence endpoint.
    pause = np.zeros(int(0.45 * SAMPLE_RATE), np.float32)
    audio = np.concatenate((_speech_only(first), pause, _speech_only(second)))
    async with harness(node.url) as h:
        result = await h.session(device, audio, realtime=True)
    final = result.final
    assert final is not None
    text = final.text.lower()
    assert "volume" in text and "music" in text, text  # not the speculation made at the pause


def _speech_only(samples: np.ndarray) -> np.ndarray:
    """The clip without its leading and trailing silence (samples above -40 dBFS)."""
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return samples[loud[0] : loud[-1] + 1]
