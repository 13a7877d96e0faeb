"""Silero VAD: a pool of reset detectors; high on speech, low on silence and noise."""

from __future__ import annotations

import numpy as np
import pytest

from orac_node.audio import Samples, load_audio_file
from orac_node.contract import SAMPLE_RATE
from orac_node.vad import WINDOW, WINDOW_S, VadPool, speech_probabilities
from tests.conftest import AUDIO


@pytest.fixture(scope="module")
def pool() -> VadPool:
    return VadPool()


@pytest.fixture(scope="module")
def jfk() -> Samples:
    return load_audio_file(AUDIO / "speech" / "jfk.wav")


def test_window_is_32_ms() -> None:
    assert WINDOW == 512
    assert round(WINDOW_S, 6) == 0.032


def test_released_model_is_reused_and_reset(jfk: Samples) -> None:
    pool = VadPool()
    first = pool.acquire()
    fresh = first.feed(jfk[: 40 * WINDOW])
    first.feed(jfk[: 3 * WINDOW + 100])  # leaves RNN state and 100 pending samples
    pool.release(first)
    again = pool.acquire()
    # the same model serves the new stream: no pending samples carried over, and
    # the RNN starts from scratch
    np.testing.assert_allclose(again.feed(jfk[: 40 * WINDOW]), fresh, atol=1e-6)
    pool.release(again)
    assert pool.created == 1


def test_pool_keeps_at_most_keep(jfk: Samples) -> None:
    pool = VadPool(keep=1)
    a, b = pool.acquire(), pool.acquire()
    a.feed(jfk[: 20 * WINDOW])
    b.feed(jfk[: 20 * WINDOW])
    assert pool.created == 2
    pool.release(a)
    pool.release(b)  # one too many to keep
    c, d = pool.acquire(), pool.acquire()
    c.feed(jfk[: 20 * WINDOW])
    d.feed(jfk[: 20 * WINDOW])
    assert pool.created == 3


def test_quiet_stream_never_takes_a_model() -> None:
    pool = VadPool()
    detector = pool.acquire()
    rng = np.random.default_rng(3)
    quiet_room = rng.normal(0, 10 ** (-65 / 20), 16000 * 5).astype(np.float32)
    probs = detector.feed(np.concatenate((np.zeros(16000, np.float32), quiet_room)))
    assert probs.size == 6 * 16000 // WINDOW
    assert not probs.any()
    assert pool.created == 0
    pool.release(detector)


def test_prepared_models_are_used_first(jfk: Samples) -> None:
    pool = VadPool(keep=4)
    pool.prepare(2)
    assert pool.created == 2
    detectors = [pool.acquire() for _ in range(3)]
    for detector in detectors:
        detector.feed(jfk[: 20 * WINDOW])
    assert pool.created == 3


def test_feed_buffers_partial_windows(pool: VadPool, jfk: Samples) -> None:
    detector = pool.acquire()
    try:
        assert detector.feed(jfk[:300]).size == 0
        assert detector.feed(jfk[300:600]).size == 1  # 600 samples: one window done
        assert detector.feed(jfk[600 : 3 * WINDOW]).size == 2
    finally:
        pool.release(detector)
    whole = speech_probabilities(jfk[: 3 * WINDOW], pool)
    assert whole.size == 3


def test_speech_is_detected(pool: VadPool, jfk: Samples) -> None:
    probs = speech_probabilities(jfk, pool)
    assert probs.dtype == np.float32
    assert probs.size == jfk.size // WINDOW
    assert probs.max() > 0.9
    assert (probs > 0.5).mean() > 0.4  # most of the clip is speech


def _seconds(n: float) -> int:
    return round(n * SAMPLE_RATE)


def test_silence_is_not_speech(pool: VadPool) -> None:
    assert speech_probabilities(np.zeros(_seconds(3), np.float32), pool).max() < 0.3


def test_white_noise_is_not_speech(pool: VadPool) -> None:
    rng = np.random.default_rng(11)
    noise = rng.normal(0, 0.05, _seconds(3)).astype(np.float32)
    assert speech_probabilities(noise, pool).max() < 0.3


def test_mains_hum_is_not_speech(pool: VadPool) -> None:
    t = np.arange(_seconds(3)) / SAMPLE_RATE
    hum = (0.1 * np.sin(2 * np.pi * 50 * t) + 0.03 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    assert speech_probabilities(hum, pool).max() < 0.3


def test_speech_after_noise_is_still_detected(pool: VadPool, jfk: Samples) -> None:
    rng = np.random.default_rng(5)
    noise = rng.normal(0, 0.02, _seconds(2)).astype(np.float32)
    probs = speech_probabilities(np.concatenate([noise, jfk[: _seconds(4)]]), pool)
    split = _seconds(2) // WINDOW
    assert probs[:split].max() < 0.3
    assert probs[split:].max() > 0.9
