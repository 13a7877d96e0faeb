"""Telling a live stream from audio that arrives faster than real time (ingest/pace.py)."""

from __future__ import annotations

from orac_node.ingest.pace import WINDOW_S, Pace
from orac_node.wire import SAMPLE_RATE

CHUNK = SAMPLE_RATE // 50  # 20 ms


def _feed(pace: Pace, start: float, chunks: int, every_s: float, samples: int) -> tuple[float, int]:
    """``chunks`` 20 ms chunks, one every ``every_s`` from ``start``; the new time and total."""
    now = start
    for _ in range(chunks):
        pace.arrived(now, samples)
        samples += CHUNK
        now += every_s
    return now - every_s, samples


def test_a_live_stream_is_never_ahead() -> None:
    pace = Pace(0.0)
    samples, now = 0, 0.0
    for i in range(500):  # 10 s of 20 ms chunks, in real time
        now = i * 0.02
        pace.arrived(now, samples)
        samples += CHUNK
        assert not pace.ahead(now, samples), f"ahead at {now:.2f} s"


def test_a_live_stream_with_jitter_is_not_ahead() -> None:
    """A network hiccup delivers 0.3 s of chunks together; the stream is still live."""
    pace = Pace(0.0)
    now, samples = _feed(pace, 0.0, 50, 0.02, 0)  # 1 s live
    now, samples = _feed(pace, now + 0.3, 15, 0.0005, samples)  # 15 chunks held, then at once
    assert not pace.ahead(now, samples)


def test_a_recording_sent_at_once_is_ahead_from_its_first_half_second() -> None:
    pace = Pace(0.0)
    now, samples = _feed(pace, 0.0, 25, 0.0002, 0)  # 0.5 s of audio in 5 ms
    assert pace.ahead(now, samples)
    now, samples = _feed(pace, now, 125, 0.0002, samples)  # the rest of a 3 s command
    assert pace.ahead(now, samples)


def test_a_pre_roll_is_caught_up_within_two_windows() -> None:
    """A satellite sends 1 s it held from before the wake word, then streams live."""
    pace = Pace(0.0)
    now, samples = _feed(pace, 0.0, 50, 0.0001, 0)
    assert pace.ahead(now, samples)
    now, samples = _feed(pace, now + 0.02, round(2 * WINDOW_S / 0.02) + 1, 0.02, samples)
    assert not pace.ahead(now, samples)


def test_a_flush_after_an_outage_is_ahead() -> None:
    """Live, then 3 s of silence on the wire (a broker restart), then the held audio at once."""
    pace = Pace(0.0)
    now, samples = _feed(pace, 0.0, 50, 0.02, 0)
    now, samples = _feed(pace, now + 3.0, 150, 0.0002, samples)
    assert pace.ahead(now, samples)
