"""The overload gate: a session cap learned from the node's lag (ingest/load.py)."""

from __future__ import annotations

from orac_node.ingest.load import (
    CUT,
    CUT_EVERY_S,
    MIN_CAP,
    RAISE_EVERY_S,
    START_CAP,
    SUSTAINED_S,
    LoadGate,
)

TICK = 0.05


def _run(gate: LoadGate, start: float, seconds: float, lag: float, open_sessions: int) -> float:
    """Tick ``gate`` every 50 ms for ``seconds`` with ``lag`` observed; return the end time."""
    now = start
    for _ in range(round(seconds / TICK)):
        now += TICK
        gate.observe(lag)
        gate.tick(now, open_sessions)
    return now


def test_a_node_that_keeps_up_admits_up_to_its_starting_cap() -> None:
    gate = LoadGate(max_sessions=256)
    _run(gate, 0.0, 5.0, 0.001, open_sessions=10)
    assert gate.may_open(10)
    assert gate.cap == START_CAP  # an unused cap is not raised
    assert not gate.may_open(START_CAP)


def test_a_stall_is_not_a_backlog() -> None:
    gate = LoadGate(max_sessions=256)
    now = _run(gate, 0.0, SUSTAINED_S - 0.1, 2.0, open_sessions=20)  # a neighbour took the CPU
    assert gate.may_open(20)
    _run(gate, now, 0.5, 0.001, open_sessions=20)
    assert gate.may_open(20)
    assert gate.cuts == 0


def test_a_growing_backlog_stops_new_sessions_and_cuts_the_cap() -> None:
    gate = LoadGate(max_sessions=256)
    now = _run(gate, 0.0, SUSTAINED_S + 2 * TICK, 0.5, open_sessions=30)
    assert gate.behind
    assert not gate.may_open(MIN_CAP)  # behind: no session past the few it always takes
    assert gate.may_open(MIN_CAP - 1)
    assert gate.cap == int(30 * CUT)
    # still behind a second later: cut again, from the sessions open then
    _run(gate, now, CUT_EVERY_S, 0.5, open_sessions=25)
    assert gate.cap == int(25 * CUT)
    assert gate.cuts == 2
    _run(gate, now + CUT_EVERY_S, 2 * CUT_EVERY_S, 0.5, open_sessions=17)
    assert gate.cap == MIN_CAP  # a few sessions are not what slows it


def test_the_cap_comes_back_while_it_is_used_and_the_lag_stays_clear() -> None:
    gate = LoadGate(max_sessions=40)
    now = _run(gate, 0.0, SUSTAINED_S + 2 * TICK, 0.5, open_sessions=30)
    cap = gate.cap
    assert cap == 21
    now = _run(gate, now, 0.3, 0.1, open_sessions=21)  # between clear and limit: still behind
    assert gate.behind
    assert not gate.may_open(MIN_CAP)
    now = _run(gate, now, RAISE_EVERY_S + TICK, 0.001, open_sessions=21)
    assert not gate.behind
    assert gate.cap == cap + 2  # a tenth
    assert gate.may_open(22)
    _run(gate, now, 30.0, 0.001, open_sessions=40)
    assert gate.cap is None  # back at max_sessions: no cap of its own
    assert gate.may_open(300)


def test_a_cap_left_unused_stays_where_it_is() -> None:
    gate = LoadGate(max_sessions=256)
    now = _run(gate, 0.0, SUSTAINED_S + 2 * TICK, 0.5, open_sessions=30)
    assert gate.cap == 21
    _run(gate, now, 10.0, 0.001, open_sessions=2)
    assert gate.cap == 21


def test_a_cut_never_raises_the_cap() -> None:
    gate = LoadGate(max_sessions=256)
    now = _run(gate, 0.0, SUSTAINED_S + 2 * TICK, 0.5, open_sessions=30)
    assert gate.cap == 21
    _run(gate, now, CUT_EVERY_S + TICK, 0.5, open_sessions=40)  # sessions it admitted earlier
    assert gate.cap == 21


def test_a_limit_of_zero_never_refuses() -> None:
    gate = LoadGate(max_sessions=256, lag_limit_s=0.0)
    _run(gate, 0.0, 2.0, 30.0, open_sessions=200)
    assert gate.may_open(200)
    assert not gate.overloaded(1000)


def test_the_cap_doubles_while_used_until_the_first_cut() -> None:
    gate = LoadGate(max_sessions=1000)
    now = _run(gate, 0.0, RAISE_EVERY_S + 2 * TICK, 0.001, open_sessions=START_CAP)
    assert gate.cap == 2 * START_CAP  # slow start
    now = _run(gate, now, RAISE_EVERY_S + 2 * TICK, 0.001, open_sessions=2 * START_CAP)
    assert gate.cap == 4 * START_CAP
    now = _run(gate, now, SUSTAINED_S + 2 * TICK, 0.5, open_sessions=4 * START_CAP)
    cut = gate.cap
    assert cut == int(4 * START_CAP * CUT)
    _run(gate, now, RAISE_EVERY_S + 2 * TICK, 0.001, open_sessions=cut)
    assert gate.cap == cut + cut // 10  # after a cut: a tenth at a time
