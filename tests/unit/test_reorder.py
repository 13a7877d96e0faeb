"""Reorderer: strictly ordered release, dedupe, bounded window, counted gaps."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from orac_node.ingest.reorder import Reorderer


def _push_all(reorderer: Reorderer[int], seqs: list[int]) -> list[int]:
    released: list[int] = []
    for seq in seqs:
        released.extend(reorderer.push(seq, seq))
    return released


def test_in_order_is_released_at_once() -> None:
    r: Reorderer[str] = Reorderer(window=4)
    assert [r.push(i, f"c{i}") for i in range(3)] == [["c0"], ["c1"], ["c2"]]
    assert (r.next_seq, r.gaps, r.duplicates, r.reordered) == (3, 0, 0, 0)
    assert not r.has_holes
    assert r.flush() == []


def test_duplicates_are_dropped_and_counted() -> None:
    r: Reorderer[int] = Reorderer(window=4)
    assert _push_all(r, [0, 0, 1, 0, 3, 3, 2]) == [0, 1, 2, 3]
    # 0 twice after release, 3 again while held
    assert r.duplicates == 3
    assert r.gaps == 0


def test_out_of_order_within_window_is_put_back_in_order() -> None:
    r: Reorderer[int] = Reorderer(window=4)
    assert r.push(2, 2) == []
    assert r.has_holes
    assert r.push(1, 1) == []
    assert r.push(0, 0) == [0, 1, 2]
    assert not r.has_holes
    assert (r.next_seq, r.gaps, r.reordered) == (3, 0, 2)


def test_window_overflow_skips_the_hole_and_counts_gaps() -> None:
    r: Reorderer[int] = Reorderer(window=2)
    r.push(0, 0)
    # 1 and 2 never come; 3 and 4 fill the window, 5 overflows it
    assert r.push(3, 3) == []
    assert r.push(4, 4) == []
    assert r.gaps == 0
    assert r.push(5, 5) == [3, 4, 5]
    assert r.gaps == 2
    assert r.next_seq == 6
    assert not r.has_holes


def test_overflow_skips_only_up_to_the_first_held_item() -> None:
    r: Reorderer[int] = Reorderer(window=1)
    assert r.push(2, 2) == []
    assert r.push(5, 5) == [2]  # hole 0-1 skipped, 5 still waits for 3-4
    assert r.gaps == 2
    assert r.has_holes
    assert r.flush() == [5]
    assert r.gaps == 4


def test_flush_counts_every_hole() -> None:
    r: Reorderer[int] = Reorderer(window=10)
    _push_all(r, [0, 2, 5, 6, 9])
    assert r.gaps == 0
    assert r.flush() == [2, 5, 6, 9]
    assert r.gaps == 1 + 2 + 2  # 1, 3-4, 7-8
    assert r.next_seq == 10
    assert r.flush() == []


def test_late_chunk_after_its_gap_was_skipped_is_not_released() -> None:
    r: Reorderer[int] = Reorderer(window=1)
    assert _push_all(r, [1, 2]) == [1, 2]
    assert r.gaps == 1
    assert r.push(0, 0) == []  # too late: releasing it now would break the order
    assert r.next_seq == 3


def test_window_zero_never_holds() -> None:
    r: Reorderer[int] = Reorderer(window=0)
    assert r.push(0, 0) == [0]
    assert r.push(3, 3) == [3]
    assert r.gaps == 2
    assert not r.has_holes
    assert r.push(2, 2) == []
    assert r.push(4, 4) == [4]


@given(st.lists(st.integers(0, 40), max_size=80), st.integers(0, 8))
def test_any_arrival_pattern_keeps_the_invariants(seqs: list[int], window: int) -> None:
    r: Reorderer[int] = Reorderer(window=window)
    released: list[int] = []
    for pushed, seq in enumerate(seqs, start=1):
        released.extend(r.push(seq, seq))
        held = pushed - len(released) - r.duplicates
        assert 0 <= held <= window
        assert r.has_holes == (held > 0)
    released.extend(r.flush())
    assert not r.has_holes

    # strictly increasing, so each seq is released at most once
    assert all(a < b for a, b in itertools.pairwise(released))
    # only what was received is released; every push is released or counted duplicate
    assert set(released) <= set(seqs)
    assert len(seqs) == len(released) + r.duplicates
    # gaps: every seq value passed over without being released
    assert r.next_seq == (released[-1] + 1 if released else 0)
    assert r.gaps == r.next_seq - len(released)


@given(st.permutations(list(range(12))), st.lists(st.integers(0, 11), max_size=12))
def test_reordering_within_the_window_loses_nothing(order: list[int], repeats: list[int]) -> None:
    r: Reorderer[int] = Reorderer(window=12)
    released = _push_all(r, order + repeats)
    assert released == list(range(12))
    assert r.gaps == 0
    assert r.duplicates == len(repeats)
    assert r.flush() == []


@given(st.sets(st.integers(0, 30)), st.integers(0, 40))
def test_drops_in_order_count_exactly_the_missing_seqs(kept: set[int], window: int) -> None:
    r: Reorderer[int] = Reorderer(window=window)
    released = _push_all(r, sorted(kept)) + r.flush()
    assert released == sorted(kept)
    top = max(kept) + 1 if kept else 0
    assert r.gaps == top - len(kept)
    assert r.duplicates == 0
