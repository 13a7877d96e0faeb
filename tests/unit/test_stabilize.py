"""LocalAgreement-2: commit on agreement of two consecutive hypotheses, never take back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orac_node.decode.stabilize import LocalAgreement, trim_point
from orac_node.wire import Segment


def test_first_hypothesis_commits_nothing() -> None:
    la = LocalAgreement()
    assert la.update("turn on the kitchen lights") == ("", "turn on the kitchen lights")
    assert la.stable == ""
    assert la.committed == []


def test_agreement_of_two_consecutive_hypotheses_commits_the_common_prefix() -> None:
    la = LocalAgreement()
    la.update("turn on the")
    assert la.update("turn on the kitchen") == ("turn on the", "kitchen")
    assert la.update("turn on the kitchen lights") == ("turn on the kitchen", "lights")
    assert la.update("turn on the kitchen lights") == ("turn on the kitchen lights", "")


def test_no_commit_without_agreement_between_the_last_two() -> None:
    la = LocalAgreement()
    la.update("tell me a joke")
    assert la.update("turn on the light") == ("", "turn on the light")
    # "tell me" was seen once, two hypotheses ago: that is not agreement
    assert la.update("tell me a joke") == ("", "tell me a joke")
    assert la.update("turn on the heating") == ("", "turn on the heating")
    assert la.update("turn on the heating now") == ("turn on the heating", "now")


def test_agreement_stops_at_the_first_difference() -> None:
    la = LocalAgreement()
    la.update("play the radio in the kitchen")
    assert la.update("play a radio in the kitchen") == ("play", "a radio in the kitchen")


def test_matching_ignores_case_and_punctuation_and_keeps_the_newer_spelling() -> None:
    la = LocalAgreement()
    la.update("Turn on the Lights,")
    stable, unstable = la.update("turn on the lights. Please")
    assert stable.split() == ["turn", "on", "the", "lights."]
    assert unstable == "Please"


def test_committed_spelling_never_changes() -> None:
    la = LocalAgreement()
    la.update("Set a timer")
    la.update("Set a timer")
    assert la.stable == "Set a timer"
    stable, unstable = la.update("set A TIMER, for ten")
    assert stable == "Set a timer"
    assert unstable == "for ten"


def test_rewording_of_the_committed_part_does_not_duplicate_words() -> None:
    la = LocalAgreement()
    la.update("and so my fellow americans ask")
    la.update("and so my fellow americans ask not")
    assert la.stable == "and so my fellow americans ask"
    # the committed part comes back worded differently; the tail starts after the
    # last committed word found in the new hypothesis
    stable, unstable = la.update("And so, my fellow American, ask not what")
    assert stable == "and so my fellow americans ask not"
    assert unstable == "what"
    stable, unstable = la.update("and so my fellow American ask not what your")
    assert stable == "and so my fellow americans ask not what"
    assert unstable == "your"


def test_empty_and_shrinking_hypotheses_keep_the_stable_text() -> None:
    la = LocalAgreement()
    la.update("what is the weather")
    la.update("what is the weather")
    assert la.update("") == ("what is the weather", "")
    assert la.update("what") == ("what is the weather", "")


_words = st.lists(
    st.sampled_from(["turn", "on", "the", "lights", "Lights,", "off", "a"]), max_size=8
)


@given(st.lists(_words, min_size=1, max_size=12))
def test_stable_only_ever_grows(hypotheses: list[list[str]]) -> None:
    la = LocalAgreement()
    previous: list[str] = []
    for i, words in enumerate(hypotheses):
        stable, unstable = la.update(" ".join(words))
        committed = stable.split()
        assert committed[: len(previous)] == previous, "committed text changed or shrank"
        assert committed == la.committed
        if i == 0:
            assert committed == []
        if len(committed) > len(previous):
            # a commit needs agreement between this hypothesis and the one before it
            assert i > 0
        assert set(unstable.split()) <= set(words)
        previous = committed


@given(
    st.lists(st.text("abcdefgh", min_size=1, max_size=5), min_size=1, max_size=12),
    st.lists(st.integers(0, 12), min_size=1, max_size=10),
)
def test_growing_prefixes_of_one_sentence_commit_a_prefix_and_finally_all(
    truth: list[str], cuts: list[int]
) -> None:
    la = LocalAgreement()
    for cut in sorted(cuts):
        stable, unstable = la.update(" ".join(truth[:cut]))
        committed = stable.split()
        assert committed == truth[: len(committed)]
        assert committed + unstable.split() == truth[: max(cut, len(committed))]
    la.update(" ".join(truth))
    assert la.update(" ".join(truth)) == (" ".join(truth), "")


# -- buffer trimming ---------------------------------------------------------


def _segments(*spans: tuple[float, str]) -> list[Segment]:
    start = 0.0
    out = []
    for end, text in spans:
        out.append(Segment(start, end, text))
        start = end
    return out


def test_trim_point_is_the_end_of_the_last_whole_committed_segment() -> None:
    segments = _segments((2.4, "and so my fellow"), (5.0, "Americans, ask not"), (7.9, "a b c d e"))
    assert trim_point(segments, 8.0, committed=7) == (5.0, 7)
    assert trim_point(segments, 8.0, committed=6) == (2.4, 4)  # 2nd segment half committed
    assert trim_point(segments, 8.0, committed=3) is None
    # the newest segment is still being heard: never cut, even when committed
    assert trim_point(segments, 8.0, committed=12) == (5.0, 7)
    assert trim_point(segments[:1], 8.0, committed=4) is None
    assert trim_point([], 8.0, committed=0) is None


def test_trim_point_skips_segments_without_words_and_stays_inside_the_window() -> None:
    blank = _segments((1.0, "[BLANK_AUDIO]"), (4.0, "lights on"))
    assert trim_point(blank, 4.0, committed=2) is None
    mixed = _segments((2.0, "lights on"), (3.0, "(music)"), (6.0, "please"))
    assert trim_point(mixed, 6.0, committed=2) == (2.0, 2)
    # whisper may stamp a segment end past the audio it was given
    assert trim_point(_segments((5.2, "a b"), (6.0, "c")), 5.0, committed=2) == (5.0, 2)


def test_after_a_trim_hypotheses_cover_the_window_only() -> None:
    la = LocalAgreement()
    la.update("and so my fellow americans ask not")
    la.update("and so my fellow americans ask not what")
    assert la.window_committed == 7
    la.trim(5)  # "and so my fellow americans" is no longer in the window
    assert la.window_committed == 2
    stable, unstable = la.update("Ask not what your country")
    assert stable == "and so my fellow americans ask not what"
    assert unstable == "your country"
    stable, unstable = la.update("ask not what your country can do")
    assert stable == "and so my fellow americans ask not what your country"
    assert unstable == "can do"
    assert la.window_committed == 5


def test_only_committed_words_can_leave_the_window() -> None:
    la = LocalAgreement()
    la.update("turn on the")
    la.update("turn on the lights")
    with pytest.raises(ValueError, match="committed"):
        la.trim(4)
    with pytest.raises(ValueError, match="committed"):
        la.trim(0)


@given(
    st.lists(st.text("abcdefgh", min_size=1, max_size=5), min_size=2, max_size=20),
    st.lists(st.tuples(st.integers(1, 20), st.integers(0, 20)), min_size=1, max_size=12),
)
def test_a_trimmed_window_keeps_committing_the_same_sentence(
    truth: list[str], steps: list[tuple[int, int]]
) -> None:
    """Growing hypotheses of a window that is trimmed now and then still commit ``truth``."""
    la = LocalAgreement()
    start = 0  # first word of truth inside the window
    heard = 1
    for grow, cut in steps:
        heard = min(len(truth), heard + grow)
        la.update(" ".join(truth[start:heard]))
        stable, _ = la.update(" ".join(truth[start:heard]))
        assert stable.split() == truth[:heard]
        drop = min(cut, la.window_committed)
        if drop:
            la.trim(drop)
            start += drop
