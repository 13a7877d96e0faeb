"""The retranscribe ring: bounded by count and time, audio kept as 16-bit."""

from __future__ import annotations

import numpy as np

from orac_node.consumers.recent import RecentAudio


def _add(ring: RecentAudio, session: str, now: float, seconds: float = 1.0) -> None:
    audio = np.linspace(-0.5, 0.5, int(16_000 * seconds), dtype=np.float32)
    ring.add(
        device="d", session=session, topic="t", language="en", speech_s=0.8, audio=audio, now=now
    )


def test_sessions_expire_and_the_oldest_go_first() -> None:
    ring = RecentAudio(max_sessions=2, ttl_s=10)
    for i, session in enumerate("abc"):
        _add(ring, session, now=i)
    assert ring.get("d", "a", now=2) is None  # evicted: over the count
    assert ring.get("d", "b", now=10.9) is not None
    assert ring.get("d", "b", now=11) is None  # expired
    assert len(ring) == 1


def test_audio_comes_back_within_16_bit_precision() -> None:
    ring = RecentAudio(max_sessions=4, ttl_s=10)
    _add(ring, "a", now=0, seconds=2)
    held = ring.get("d", "a", now=1)
    assert held is not None and held.audio_s == 2.0 and ring.bytes == 64_000
    original = np.linspace(-0.5, 0.5, 32_000, dtype=np.float32)
    assert np.max(np.abs(held.samples() - original)) < 1e-4
    assert held.samples().dtype == np.float32


def test_zero_sessions_keeps_nothing() -> None:
    ring = RecentAudio(max_sessions=0, ttl_s=10)
    _add(ring, "a", now=0)
    assert ring.get("d", "a", now=0) is None
