"""Per-device rate limits: token buckets, applied when a session opens, and their reports.

Owns :class:`DeviceThrottle`, with one bucket per device for messages per
second and one for seconds of audio per second. The limits are applied at
*admission*: a message that would open a session (a chunk of a new session, a
raw stream's next utterance, a file) or belongs to none (one that does not
parse) needs both buckets out of debt (:meth:`DeviceThrottle.admit`), else it
is dropped. A session once admitted is never cut: its chunks are charged to
the buckets, which may go into debt (:meth:`DeviceThrottle.charge`), so the
device's *next* session is refused until it has paid, instead of every
session losing chunks from its middle (a transcript of half the words is
worse than a clear refusal). What one admitted session can cost is bounded by
the utterance length limit.

A refused message is dropped and counted; the device is told with a
``rate_limited`` report, but reports are rate-limited too: the first drop is
reported at once, later ones at most once per :data:`REPORT_EVERY_S` with the
count since the previous report, so a flood of thousands of messages per
second becomes one error message per second, and every dropped message is
still accounted for.

Pure logic: every method takes the current (monotonic) time, so tests drive
the clock. The other per-device limits (session count, payload size,
utterance length) are simple counters and live in intake.
"""

from __future__ import annotations

from dataclasses import dataclass

from orac_node.config import IngestSection

REPORT_EVERY_S = 1.0
"""At most one ``rate_limited`` report per device per second: often enough that a
satellite learns within a second that it is throttled and by how much, rarely
enough that a flood does not turn into an error flood."""
SWEEP_EVERY_S = 1.0
"""How often devices with full buckets are forgotten (a full bucket behaves like
a fresh one). Bounds the table to the devices active in about the last second,
whatever names a sender makes up."""


@dataclass(slots=True)
class TokenBucket:
    """Refills at ``rate`` per second up to ``capacity``; a take needs the whole cost."""

    rate: float
    capacity: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, capacity: float, now: float) -> TokenBucket:
        """A bucket that can take ``capacity`` at once."""
        return cls(rate, capacity, capacity, now)

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, cost: float, now: float) -> bool:
        """Take ``cost`` tokens if there are that many; a refusal takes nothing."""
        self._refill(now)
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True

    def charge(self, cost: float, now: float) -> None:
        """Take ``cost`` tokens, into debt if need be (no deeper than one bucket's depth)."""
        self._refill(now)
        self.tokens = max(-self.capacity, self.tokens - cost)

    def in_debt(self, now: float) -> bool:
        """Whether more was taken than the bucket held."""
        self._refill(now)
        return self.tokens < 0

    def is_full(self, now: float) -> bool:
        """Whether the bucket has refilled completely (it can be forgotten)."""
        self._refill(now)
        return self.tokens >= self.capacity


@dataclass(frozen=True, slots=True)
class DeviceLimits:
    """The per-device rates; 0 means no limit."""

    messages_per_s: float
    audio_s_per_s: float
    burst_s: float

    @classmethod
    def from_config(cls, section: IngestSection) -> DeviceLimits:
        """Limits from the ``ingest`` config section."""
        return cls(
            section.device_chunks_per_s, section.device_audio_s_per_s, section.device_burst_s
        )

    def describe(self) -> str:
        """The limits in words, for the report a throttled device receives."""
        rates = []
        if self.messages_per_s:
            rates.append(f"{self.messages_per_s:g} messages/s")
        if self.audio_s_per_s:
            rates.append(f"{self.audio_s_per_s:g} s of audio/s")
        return f"{' and '.join(rates) or 'no limit'}, bursts of {self.burst_s:g} s"


@dataclass(frozen=True, slots=True)
class ThrottleReport:
    """What a throttled device is told: how many of its messages were dropped."""

    device: str
    dropped: int


@dataclass(slots=True)
class _Device:
    messages: TokenBucket | None
    audio: TokenBucket | None
    pending: int = 0  # drops not yet reported
    reported_at: float | None = None


class DeviceThrottle:
    """Token buckets per device, drop counts, and when to report them."""

    def __init__(self, limits: DeviceLimits) -> None:
        self.limits = limits
        self.dropped = 0  # every message dropped since start, all devices
        self._devices: dict[str, _Device] = {}
        self._pending: set[str] = set()
        self._next_sweep = 0.0

    @property
    def tracked(self) -> int:
        """Devices currently remembered (bounded by :meth:`reports_due`'s sweep)."""
        return len(self._devices)

    def admit(self, device: str, now: float) -> bool:
        """A message that opens a session (or belongs to none): allowed unless in debt.

        Allowed, it is charged one message; refused, it is dropped and counted.
        """
        if not (self.limits.messages_per_s or self.limits.audio_s_per_s):
            return True
        state = self._state(device, now)
        if (state.audio is not None and state.audio.in_debt(now)) or (
            state.messages is not None and not state.messages.take(1.0, now)
        ):
            return self._drop(device, state)
        return True

    def charge(
        self, device: str, now: float, *, messages: float = 1.0, audio_s: float = 0.0
    ) -> None:
        """A message of an admitted session: always taken, paid for by the next session."""
        if not (self.limits.messages_per_s or self.limits.audio_s_per_s):
            return
        state = self._state(device, now)
        if state.messages is not None:
            state.messages.charge(messages, now)
        if state.audio is not None:
            state.audio.charge(audio_s, now)

    def drop(self, device: str, now: float) -> None:
        """A message of a session already refused: dropped and counted with the rest."""
        self._drop(device, self._state(device, now))

    def report(self, device: str, now: float) -> ThrottleReport | None:
        """The device's report if it has unreported drops and may be told now."""
        state = self._devices.get(device)
        if state is None or not state.pending:
            return None
        if state.reported_at is not None and now - state.reported_at < REPORT_EVERY_S:
            return None
        report = ThrottleReport(device, state.pending)
        state.pending, state.reported_at = 0, now
        self._pending.discard(device)
        return report

    def reports_due(self, now: float) -> list[ThrottleReport]:
        """Reports for drops not yet told (call every tick); also forgets idle devices."""
        reports = [r for device in list(self._pending) if (r := self.report(device, now))]
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY_S
            self._sweep(now)
        return reports

    def _state(self, device: str, now: float) -> _Device:
        state = self._devices.get(device)
        if state is None:
            limits = self.limits
            state = self._devices[device] = _Device(
                messages=_bucket(limits.messages_per_s, limits.burst_s, now, least=1.0),
                audio=_bucket(limits.audio_s_per_s, limits.burst_s, now),
            )
        return state

    def _drop(self, device: str, state: _Device) -> bool:
        state.pending += 1
        self.dropped += 1
        self._pending.add(device)
        return False

    def _sweep(self, now: float) -> None:
        """Forget devices whose buckets are full, with nothing left to report.

        Once the report interval has passed too: forgetting a device that was
        just told would let its next drop be reported at once, a second time
        within the interval.
        """
        idle = [
            device
            for device, state in self._devices.items()
            if not state.pending
            and (state.reported_at is None or now - state.reported_at >= REPORT_EVERY_S)
            and (state.messages is None or state.messages.is_full(now))
            and (state.audio is None or state.audio.is_full(now))
        ]
        for device in idle:
            del self._devices[device]


def _bucket(rate: float, burst_s: float, now: float, least: float = 0.0) -> TokenBucket | None:
    """The bucket for one rate (None: no limit); ``least`` keeps one message admissible."""
    return TokenBucket.full(rate, max(least, rate * burst_s), now) if rate else None
