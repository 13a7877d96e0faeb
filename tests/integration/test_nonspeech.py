"""Silence and noise never become text (Whisper would say "Thank you." or [BLANK_AUDIO])."""

from __future__ import annotations

import numpy as np
import pytest

from orac_node.wire import SAMPLE_RATE
from tests.integration.harness import RunningNode, harness

_T = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
_RNG = np.random.default_rng(7)

NOISES = {
    "digital silence": np.zeros(3 * SAMPLE_RATE),
    "white noise": _RNG.normal(0, 0.05, 3 * SAMPLE_RATE),
    "loud white noise": _RNG.normal(0, 0.3, 3 * SAMPLE_RATE),
    "mains hum": 0.2 * np.sin(2 * np.pi * 50 * _T) + 0.1 * np.sin(2 * np.pi * 100 * _T),
    "pink-ish rumble": np.cumsum(_RNG.normal(0, 0.01, 3 * SAMPLE_RATE)) * 0.1,
    "440 Hz tone": 0.3 * np.sin(2 * np.pi * 440 * _T),
    "clicks": np.where(_RNG.random(3 * SAMPLE_RATE) < 0.001, 0.8, 0.0),
}


@pytest.mark.parametrize("name", sorted(NOISES))
async def test_non_speech_gets_an_empty_final_with_a_reason(
    node: RunningNode, device: str, name: str
) -> None:
    samples = np.clip(NOISES[name], -1, 1).astype(np.float32)
    async with harness(node.url) as h:
        result = await h.session(device, samples)
    final = result.final
    assert final is not None
    assert final.text == ""
    assert final.rejected in {"no_speech", "non_speech", "low_confidence", "hallucination"}
    assert final.reason == final.rejected
    assert final.endpoint == "end"
    assert final.words == []
    assert result.partials == []
