"""Silero VAD: one model, per-stream state; high on speech, low on silence and noise."""

from __future__ import annotations

import numpy as np
import pytest

from orac_node.audio import Samples, load_audio_file
from orac_node.audio.vad import WINDOW, WINDOW_S, SileroVad, speech_probabilities
from orac_node.wire import SAMPLE_RATE
from tests.conftest import AUDIO


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return SileroVad()


@pytest.fixture(scope="module")
def jfk() -> Samples:
    return load_audio_file(AUDIO / "speech" / "jfk.wav")


def test_window_is_32_ms() -> None:
    assert WINDOW == 512
    assert round(WINDOW_S, 6) == 0.032


def test_reset_detector_starts_from_scratch(vad: SileroVad, jfk: Samples) -> None:
    detector = vad.detector()
    fresh = detector.feed(jfk[: 40 * WINDOW])
    detector.feed(jfk[: 3 * WINDOW + 100])  # leaves RNN state and 100 pending samples
    detector.reset()
    np.testing.assert_allclose(detector.feed(jfk[: 40 * WINDOW]), fresh, atol=1e-6)


def test_streams_do_not_share_state(vad: SileroVad, jfk: Samples) -> None:
    """One model serves every stream; each stream's recurrent state is its own."""
    alone = vad.detector().feed(jfk[: 60 * WINDOW])
    a, b = vad.detector(), vad.detector()
    interleaved_a = []
    for i in range(0, 60 * WINDOW, WINDOW):
        interleaved_a.append(a.feed(jfk[i : i + WINDOW]))
        b.feed(jfk[: 60 * WINDOW][::-1][i : i + WINDOW].copy())  # other audio in between
    np.testing.assert_allclose(np.concatenate(interleaved_a), alone, atol=1e-6)


def test_chunking_does_not_change_the_scores(vad: SileroVad, jfk: Samples) -> None:
    whole = speech_probabilities(jfk[: 50 * WINDOW], vad)
    detector = vad.detector()
    pieces = [detector.feed(jfk[i : i + 320]) for i in range(0, 50 * WINDOW, 320)]
    np.testing.assert_allclose(np.concatenate(pieces), whole, atol=1e-6)


def test_quiet_windows_are_not_scored() -> None:
    calls = []

    class Counting(SileroVad):
        def score(self, window: Samples, state: Samples) -> tuple[float, Samples]:
            calls.append(1)
            return super().score(window, state)

    detector = Counting().detector()
    rng = np.random.default_rng(3)
    quiet_room = rng.normal(0, 10 ** (-65 / 20), 16000 * 5).astype(np.float32)
    probs = detector.feed(np.concatenate((np.zeros(16000, np.float32), quiet_room)))
    assert probs.size == 6 * 16000 // WINDOW
    assert not probs.any()
    assert calls == []


def test_feed_buffers_partial_windows(vad: SileroVad, jfk: Samples) -> None:
    detector = vad.detector()
    assert detector.feed(jfk[:300]).size == 0
    assert detector.feed(jfk[300:600]).size == 1  # 600 samples: one window done
    assert detector.feed(jfk[600 : 3 * WINDOW]).size == 2
    whole = speech_probabilities(jfk[: 3 * WINDOW], vad)
    assert whole.size == 3


def test_speech_is_detected(vad: SileroVad, jfk: Samples) -> None:
    probs = speech_probabilities(jfk, vad)
    assert probs.dtype == np.float32
    assert probs.size == jfk.size // WINDOW
    assert probs.max() > 0.9
    assert (probs > 0.5).mean() > 0.4  # most of the clip is speech


def _seconds(n: float) -> int:
    return round(n * SAMPLE_RATE)


def test_silence_is_not_speech(vad: SileroVad) -> None:
    assert speech_probabilities(np.zeros(_seconds(3), np.float32), vad).max() < 0.3


def test_white_noise_is_not_speech(vad: SileroVad) -> None:
    rng = np.random.default_rng(11)
    noise = rng.normal(0, 0.05, _seconds(3)).astype(np.float32)
    assert speech_probabilities(noise, vad).max() < 0.3


def test_mains_hum_is_not_speech(vad: SileroVad) -> None:
    t = np.arange(_seconds(3)) / SAMPLE_RATE
    hum = (0.1 * np.sin(2 * np.pi * 50 * t) + 0.03 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    assert speech_probabilities(hum, vad).max() < 0.3


def test_speech_after_noise_is_still_detected(vad: SileroVad, jfk: Samples) -> None:
    rng = np.random.default_rng(5)
    noise = rng.normal(0, 0.02, _seconds(2)).astype(np.float32)
    probs = speech_probabilities(np.concatenate([noise, jfk[: _seconds(4)]]), vad)
    split = _seconds(2) // WINDOW
    assert probs[:split].max() < 0.3
    assert probs[split:].max() > 0.9
