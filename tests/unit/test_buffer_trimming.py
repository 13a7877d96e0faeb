"""Buffer trimming on real speech: partial windows stay short, the stable text stays right.

Replays what the node does for one long utterance (a partial every 0.5 s of
audio, LocalAgreement, trim past ``partials.trim_after_s``) with the real
model, without the broker: the node-level path is covered by
tests/integration/test_partials.py, which streams 11 s of speech.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orac_node.bench.corpus import load_corpus
from orac_node.bench.scoring import wer
from orac_node.decode.decoding import DecodeOptions
from orac_node.decode.engine import WhisperEngine
from orac_node.decode.gate import strip_annotations
from orac_node.decode.stabilize import LocalAgreement, trim_point
from orac_node.wire import SAMPLE_RATE
from tests.conftest import AUDIO, MODEL

TRIM_AFTER_S = 4.0  # the default
STEP = SAMPLE_RATE // 2  # partials.interval_ms: 500


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    return WhisperEngine(MODEL, threads=2)


def _speech() -> tuple[np.ndarray, str]:
    """jfk.wav and two LibriVox sentences back to back: 20 s of read speech."""
    clips = {c.name: c for c in load_corpus([Path(AUDIO / "speech")])}
    names = ["speech/jfk.wav", "speech/ps_librivox_0870.wav", "speech/ps_librivox_0920.wav"]
    audio = np.concatenate([clips[n].samples for n in names])
    return audio, " ".join(clips[n].reference or "" for n in names)


def test_partial_windows_stay_short_and_the_stable_text_follows_the_speech(
    engine: WhisperEngine,
) -> None:
    audio, reference = _speech()
    agreement = LocalAgreement()
    offset, windows, trims = 0, [], 0
    previous: list[str] = []
    for n in range(STEP, audio.size + 1, STEP):
        window = audio[offset:n]
        decoding = engine.decode(window, DecodeOptions(timestamps=False))
        windows.append(window.size / SAMPLE_RATE)
        stable, _ = agreement.update(strip_annotations(decoding.text))
        assert stable.split()[: len(previous)] == previous, "stable text changed"
        previous = stable.split()
        if window.size / SAMPLE_RATE >= TRIM_AFTER_S:
            point = trim_point(
                decoding.segments, window.size / SAMPLE_RATE, agreement.window_committed
            )
            if point is not None:
                offset += round(point[0] * SAMPLE_RATE)
                agreement.trim(point[1])
                trims += 1
    assert audio.size / SAMPLE_RATE > 18
    assert trims >= 3, f"only {trims} trims in {audio.size / SAMPLE_RATE:.0f} s"
    assert max(windows) < 10.0, windows  # untrimmed, the last window would be 20 s
    # Partials are a preview, not the final: most of the speech is committed, and right.
    assert len(previous) >= 0.7 * len(reference.split())
    assert wer([reference], [" ".join(previous)]) < 0.2
