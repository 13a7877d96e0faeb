"""Per-device limits: token buckets, drop accounting, rate-limited reports, bounded memory."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from orac_node.config import IngestSection
from orac_node.ingest.limits import (
    REPORT_EVERY_S,
    SWEEP_EVERY_S,
    DeviceLimits,
    DeviceThrottle,
    TokenBucket,
)

# --- TokenBucket -----------------------------------------------------------------------


def test_bucket_starts_full_and_refuses_past_its_capacity() -> None:
    bucket = TokenBucket.full(rate=10, capacity=3, now=0.0)
    assert [bucket.take(1, 0.0) for _ in range(4)] == [True, True, True, False]


def test_bucket_refills_at_its_rate_up_to_capacity() -> None:
    bucket = TokenBucket.full(rate=10, capacity=3, now=0.0)
    for _ in range(3):
        bucket.take(1, 0.0)
    assert not bucket.take(1, 0.05)  # half a token back
    assert bucket.take(1, 0.1)
    assert not bucket.is_full(0.1)
    assert bucket.is_full(100.0)
    assert bucket.tokens == 3  # never more than its capacity


def test_refusal_takes_nothing() -> None:
    bucket = TokenBucket.full(rate=1, capacity=2, now=0.0)
    assert not bucket.take(2.5, 0.0)
    assert bucket.take(2.0, 0.0)


def test_clock_going_backwards_does_not_refill_or_drain() -> None:
    bucket = TokenBucket.full(rate=10, capacity=2, now=5.0)
    bucket.take(2, 5.0)
    assert not bucket.take(1, 4.0)
    assert bucket.tokens == 0


@given(
    st.floats(0.5, 500),
    st.floats(0.1, 20),
    st.lists(st.tuples(st.floats(0, 0.5), st.floats(0, 3)), max_size=200),
)
def test_bucket_never_admits_more_than_capacity_plus_rate_times_time(
    rate: float, burst_s: float, steps: list[tuple[float, float]]
) -> None:
    capacity = rate * burst_s
    bucket = TokenBucket.full(rate, capacity, 0.0)
    now, admitted = 0.0, 0.0
    for dt, cost in steps:
        now += dt
        if bucket.take(cost, now):
            admitted += cost
        assert 0 <= bucket.tokens <= capacity + 1e-9
    assert admitted <= capacity + rate * now + 1e-6


# --- DeviceLimits ------------------------------------------------------------------------


def test_limits_come_from_the_ingest_section() -> None:
    section = IngestSection(device_chunks_per_s=40, device_audio_s_per_s=2.0, device_burst_s=5)
    assert DeviceLimits.from_config(section) == DeviceLimits(40, 2.0, 5)
    assert DeviceLimits.from_config(IngestSection()) == DeviceLimits(150.0, 3.0, 10.0)


def test_description_names_the_limits() -> None:
    assert DeviceLimits(150, 3, 10).describe() == (
        "150 messages/s and 3 s of audio/s, bursts of 10 s"
    )
    assert DeviceLimits(0, 3, 10).describe() == "3 s of audio/s, bursts of 10 s"


# --- DeviceThrottle ------------------------------------------------------------------------


def _throttle(messages: float = 10, audio: float = 1.0, burst_s: float = 1.0) -> DeviceThrottle:
    return DeviceThrottle(DeviceLimits(messages, audio, burst_s))


def test_devices_have_their_own_buckets() -> None:
    throttle = _throttle(messages=10, burst_s=1)
    assert all(throttle.admit("flood", 0.0) for _ in range(10))
    assert not throttle.admit("flood", 0.0)
    assert throttle.admit("kitchen", 0.0)  # untouched by the other device's flood


def test_a_ten_times_flood_is_held_to_the_limit() -> None:
    throttle = _throttle(messages=10, burst_s=2)
    sent = admitted = 0
    for i in range(1000):  # 100 msg/s for 10 s against a limit of 10/s
        sent += 1
        admitted += throttle.admit("flood", i / 100)
    assert admitted == pytest.approx(20 + 10 * 10, abs=2)  # burst + rate x time
    assert throttle.dropped == sent - admitted


def test_audio_rate_is_separate_from_the_message_rate() -> None:
    throttle = _throttle(messages=1000, audio=1.0, burst_s=2)
    throttle.charge("big", 0.0, audio_s=1.5)  # an admitted session's chunks
    assert throttle.admit("big", 0.0)  # 0.5 s left: not in debt
    throttle.charge("big", 0.0, audio_s=1.0)  # charged past the bucket: 0.5 s of debt
    assert not throttle.admit("big", 0.0)  # the next session waits for the debt
    assert throttle.admit("big", 0.6)  # paid back at 1 s/s


def test_debt_is_no_deeper_than_one_bucket() -> None:
    throttle = _throttle(messages=1000, audio=1.0, burst_s=2)
    throttle.charge("big", 0.0, audio_s=1000.0)  # a session far past the rate
    assert not throttle.admit("big", 1.9)
    assert throttle.admit("big", 2.01)  # 2 s of debt at most, repaid at 1 s/s


def test_charging_an_admitted_session_never_drops() -> None:
    throttle = _throttle(messages=1, audio=1.0, burst_s=1)
    for _ in range(100):
        throttle.charge("d", 0.0, audio_s=0.02)
    assert throttle.dropped == 0
    assert throttle.report("d", 0.0) is None


def test_zero_means_no_limit_and_no_state() -> None:
    throttle = _throttle(messages=0, audio=0)
    assert all(throttle.admit("d", 0.0) for _ in range(10_000))
    throttle.charge("d", 0.0, audio_s=1e6)
    assert throttle.admit("d", 0.0)
    assert throttle.tracked == 0


def test_first_drop_is_reported_at_once_then_at_most_once_per_interval() -> None:
    throttle = _throttle(messages=1, burst_s=1)
    assert throttle.admit("d", 0.0)
    assert not throttle.admit("d", 0.0)
    first = throttle.report("d", 0.0)
    assert first is not None and first.dropped == 1
    for _ in range(50):
        throttle.admit("d", 0.1)
    assert throttle.report("d", 0.1) is None  # within the interval: held back
    assert throttle.reports_due(0.5) == []
    due = throttle.reports_due(REPORT_EVERY_S)
    assert [(r.device, r.dropped) for r in due] == [("d", 50)]
    assert throttle.reports_due(5.0) == []  # nothing new: nothing to say


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(0, 0.05), st.booleans()),
        max_size=400,
    )
)
@example(  # found by CI: the last drop's report fell a rounding error short of due
    [
        ("a", 0.02723927146674599, True),
        ("a", 0.014237432819518229, True),
        ("a", 0.005, False),
        ("a", 0.0, False),
    ]
)
def test_every_drop_is_reported_exactly_once_and_reports_are_rate_limited(
    events: list[tuple[str, float, bool]],
) -> None:
    throttle = _throttle(messages=20, audio=0.5, burst_s=0.5)
    now = 0.0
    dropped: dict[str, int] = {}
    reported: dict[str, list[tuple[float, int]]] = {}

    def collect(at: float, device: str, n: int) -> None:
        times = reported.setdefault(device, [])
        if times:
            assert at - times[-1][0] >= REPORT_EVERY_S - 1e-9
        times.append((at, n))

    for device, dt, audio in events:
        now += dt
        if audio:
            throttle.charge(device, now, audio_s=0.2)  # a chunk of an admitted session
        elif not throttle.admit(device, now):
            dropped[device] = dropped.get(device, 0) + 1
            if (report := throttle.report(device, now)) is not None:
                collect(now, device, report.dropped)
        for report in throttle.reports_due(now):
            collect(now, report.device, report.dropped)
    # Past the interval, not exactly at it: (t + R) - t may come out a hair under R in
    # floating point, and the report then rightly waits for the next tick.
    now += 2 * REPORT_EVERY_S
    for report in throttle.reports_due(now):
        collect(now, report.device, report.dropped)
    assert {d: sum(n for _, n in r) for d, r in reported.items()} == dropped
    assert throttle.dropped == sum(dropped.values())


def test_idle_devices_are_forgotten_so_made_up_names_cannot_grow_the_table() -> None:
    throttle = _throttle(messages=100, audio=1.0, burst_s=1)
    for i in range(10_000):
        throttle.admit(f"dev-{i}", 0.0)
    assert throttle.tracked == 10_000
    throttle.reports_due(SWEEP_EVERY_S)  # every bucket has refilled by now
    assert throttle.tracked == 0


def test_a_device_with_unreported_drops_is_not_forgotten() -> None:
    throttle = _throttle(messages=1, burst_s=1)
    throttle.admit("d", 0.0)
    throttle.admit("d", 0.0)  # dropped, reported at once
    throttle.report("d", 0.0)
    throttle.admit("d", 0.5)  # dropped, pending
    throttle.reports_due(0.6)
    assert throttle.tracked == 1
    due = throttle.reports_due(2.0)
    assert [(r.device, r.dropped) for r in due] == [("d", 1)]
    throttle.reports_due(10.0)
    assert throttle.tracked == 0


def test_a_tiny_message_rate_still_admits_one_message_at_a_time() -> None:
    throttle = _throttle(messages=0.5, audio=0, burst_s=1)  # 0.5 tokens of depth
    assert throttle.admit("d", 0.0)
    assert not throttle.admit("d", 1.0)
    assert throttle.admit("d", 2.0)
