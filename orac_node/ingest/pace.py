"""Whether a device's audio arrives faster than real time.

A satellite streams its microphone: audio arrives as fast as it is spoken.
A recording sent at once, a client that buffered, or a satellite flushing
what it held through a broker outage delivers seconds of audio in
milliseconds. Partials of such audio are wasted work (they are stale before
they are published, and they hold the worker the final needs), so the
pipeline decodes none until the device has caught up with real time; the
final starts as soon as the endpoint is known.

The rate is measured over the last :data:`WINDOW_S` to :data:`2 x WINDOW_S` of
wall-clock time, not since the session began: a satellite that opens with a
second of pre-roll (audio from before its wake word) catches up half a second
later instead of counting as "ahead" for the rest of the session.
"""

from __future__ import annotations

from orac_node.wire import SAMPLE_RATE

WINDOW_S = 0.5
"""Wall-clock span the arrival rate is measured over (between one and two of these)."""
MIN_SPAN_S = 0.1
"""The shortest span a rate is judged on at a session's start: 0.5 s of audio within
a few milliseconds is a burst, but two 20 ms chunks 1 ms apart are not."""
AHEAD_RATE = 2.0
"""Audio arriving at more than this many seconds per second is catching up. A live
stream runs at ~1 (a little over with 100 ms chunks or network jitter bunching a few
together); a buffered burst at hundreds."""


class Pace:
    """Arrival rate of one utterance's audio, updated per chunk in O(1)."""

    __slots__ = ("_prev_at", "_prev_samples", "_start_at", "_start_samples")

    def __init__(self, now: float) -> None:
        self._prev_at = self._start_at = now
        self._prev_samples = self._start_samples = 0

    def arrived(self, now: float, samples_before: int) -> None:
        """A chunk arrives at ``now``; the utterance held ``samples_before`` (16 kHz) until then."""
        age = now - self._start_at
        if age < WINDOW_S:
            return
        if age >= 2 * WINDOW_S:
            # Nothing arrived in the last window (the previous chunk would have moved it
            # on): measure from one window ago, or a flush after an outage would be
            # averaged over the silence before it.
            self._prev_at, self._prev_samples = now - WINDOW_S, samples_before
        else:
            self._prev_at, self._prev_samples = self._start_at, self._start_samples
        self._start_at, self._start_samples = now, samples_before

    def ahead(self, now: float, samples: int) -> bool:
        """Whether audio came faster than :data:`AHEAD_RATE` x real time lately."""
        span_s = max(now - self._prev_at, MIN_SPAN_S)
        return (samples - self._prev_samples) / SAMPLE_RATE > AHEAD_RATE * span_s
