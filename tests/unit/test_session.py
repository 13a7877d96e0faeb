"""Utterance assembly: chunks in any order come out in seq order, bounded, with gaps counted.

Each chunk carries its own id in its sample values (chunk i is a run of
``(i + 1) * 2**-16``), so the assembled buffer shows which chunks went in and
in what order. The values stay far below the VAD's quiet threshold, so the
real Silero detector scores them without running the model.
"""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from orac_node.audio.vad import QUIET_RMS, SileroVad
from orac_node.config import EndpointSection
from orac_node.ingest.endpoint import EndpointRules, EndReason
from orac_node.ingest.session import Piece, Utterance, UtteranceKey

VAD = SileroVad()
STEP = 2.0**-16
MAX_CHUNKS = 40
assert MAX_CHUNKS * STEP < QUIET_RMS  # chunk ids stay inaudible to the VAD


def _utterance(*, window: int, max_samples: int = 10**6) -> Utterance:
    return Utterance(
        UtteranceKey("dev", "s"),
        topic="general",
        language="en",
        rate=16_000,
        rules=EndpointRules.from_config(EndpointSection()),
        detector=VAD.detector(),
        max_samples=max_samples,
        reorder_window=window,
        now=0.0,
    )


def _chunk(i: int, size: int) -> Piece:
    return Piece(np.full(size, (i + 1) * STEP, np.float32), end=False)


def _runs(audio: np.ndarray) -> list[tuple[int, int]]:
    """(chunk id, length) of each run of equal samples in the assembled audio."""
    ids = np.rint(audio / STEP).astype(int) - 1
    return [(int(i), len(list(run))) for i, run in itertools.groupby(ids)]


def _feed(utt: Utterance, arrivals: list[int], sizes: list[int]) -> EndReason | None:
    for n, seq in enumerate(arrivals):
        reason = utt.accept(seq, _chunk(seq, sizes[seq]), now=n * 0.001)
        assert utt.samples <= utt._max_samples
        if reason is not None:
            return reason
    return utt.end_now(EndReason.END, now=1.0)


@st.composite
def _jittered(draw: st.DrawFn) -> tuple[int, list[int], list[int], int]:
    """Chunks 0..n-1 arriving at most ``window`` places late, some twice."""
    window = draw(st.integers(0, 8))
    n = draw(st.integers(1, MAX_CHUNKS))
    jitter = draw(st.lists(st.floats(0, window + 0.999), min_size=n, max_size=n))
    order = sorted(range(n), key=lambda i: i + jitter[i])
    repeats = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 10**6)), max_size=6))
    arrivals = list(order)
    for seq, where in repeats:
        first = arrivals.index(seq)
        arrivals.insert(first + 1 + where % (len(arrivals) - first), seq)  # after the original
    sizes = draw(st.lists(st.integers(1, 400), min_size=n, max_size=n))
    return window, arrivals, sizes, len(repeats)


@given(_jittered())
def test_reordering_within_the_window_assembles_every_chunk_in_seq_order(
    case: tuple[int, list[int], list[int], int],
) -> None:
    window, arrivals, sizes, repeats = case
    utt = _utterance(window=window)
    assert _feed(utt, arrivals, sizes) is EndReason.END
    assert _runs(utt.audio()) == [(i, size) for i, size in enumerate(sizes)]
    assert utt.samples == sum(sizes)
    assert (utt.reorderer.gaps, utt.reorderer.duplicates) == (0, repeats)
    assert utt.chunks == len(arrivals)
    assert not utt.incomplete


@given(
    st.integers(0, 8),
    st.lists(st.integers(0, MAX_CHUNKS - 1), min_size=1, max_size=80),
    st.lists(st.integers(1, 400), min_size=MAX_CHUNKS, max_size=MAX_CHUNKS),
)
def test_any_arrival_pattern_assembles_in_order_and_counts_every_hole(
    window: int, arrivals: list[int], sizes: list[int]
) -> None:
    utt = _utterance(window=window)
    assert _feed(utt, arrivals, sizes) is EndReason.END
    runs = _runs(utt.audio())
    ids = [i for i, _ in runs]
    assert all(a < b for a, b in itertools.pairwise(ids))  # in seq order, each at most once
    assert all(size == sizes[i] for i, size in runs)  # whole chunks, never a piece of one
    assert set(ids) <= set(arrivals)
    # every seq passed over without its audio is a gap; a gap makes the final incomplete
    assert utt.reorderer.gaps == (ids[-1] + 1 if ids else 0) - len(ids)
    assert utt.incomplete == (utt.reorderer.gaps > 0)
    assert utt.chunks == len(arrivals)
    assert len(arrivals) == len(ids) + utt.reorderer.duplicates


@given(
    st.integers(1, 3000),
    st.permutations(list(range(20))),
    st.lists(st.integers(1, 400), min_size=20, max_size=20),
)
@example(20, list(range(20)), [1] * 20)  # found by CI: exactly full is full
def test_the_buffer_never_grows_past_max_samples(
    max_samples: int, order: list[int], sizes: list[int]
) -> None:
    utt = _utterance(window=20, max_samples=max_samples)
    reason = _feed(utt, order, sizes)
    assert utt.samples <= max_samples
    assert utt.audio().size == utt.samples
    # A buffer filled to the last sample ends the utterance at once (max_duration):
    # the chunks here carry no end flag that could end it first.
    if sum(sizes) >= max_samples:
        assert reason is EndReason.MAX_DURATION
        assert utt.samples == max_samples
        runs = _runs(utt.audio())
        assert [i for i, _ in runs] == list(range(len(runs)))  # a prefix, in order
    else:
        assert reason is EndReason.END
        assert utt.samples == sum(sizes)


def test_a_chunk_dropped_mid_session_is_a_gap_and_the_final_is_incomplete() -> None:
    """What a throttled chunk does to its session (docs/CONTRACT.md, per-device limits)."""
    utt = _utterance(window=4)
    sizes = [320] * 10
    assert _feed(utt, [0, 1, 2, 4, 5, 6, 7, 8, 9], sizes) is EndReason.END
    assert [i for i, _ in _runs(utt.audio())] == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert utt.reorderer.gaps == 1
    assert utt.incomplete
