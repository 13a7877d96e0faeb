"""Wake-word stripping: only at the start, whole words, longest match, punctuation after it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orac_node.consumers.wakewords import strip_wake_word, strip_words
from orac_node.wire import Word

WAKE = ["computer", "hey jarvis", "hey"]


@pytest.mark.parametrize(
    ("text", "expected", "wake"),
    [
        ("Computer, turn on the lights.", "Turn on the lights.", "computer"),
        ("computer turn on the lights", "Turn on the lights", "computer"),
        ("COMPUTER... what time is it?", "What time is it?", "computer"),
        ("Hey, Jarvis! Open the curtains.", "Open the curtains.", "hey jarvis"),
        ("Hey Jarvis, hey, what's up", "Hey, what's up", "hey jarvis"),  # longest wins, once
        ("Hey - play music", "Play music", "hey"),
        ("Computer.", "", "computer"),
    ],
)
def test_a_leading_wake_word_is_removed(text: str, expected: str, wake: str) -> None:
    stripped = strip_wake_word(text, WAKE)
    assert (stripped.text, stripped.wake_word) == (expected, wake)


@pytest.mark.parametrize(
    "text",
    [
        "Turn on the computer.",  # not at the start
        "Computers are great.",  # a longer word
        "Heyday of radio.",
        "",
    ],
)
def test_text_without_a_leading_wake_word_is_unchanged(text: str) -> None:
    stripped = strip_wake_word(text, WAKE)
    assert (stripped.text, stripped.wake_word, stripped.words_removed) == (text, None, 0)


def test_no_wake_words_configured_changes_nothing() -> None:
    assert strip_wake_word("Computer, lights.", []).text == "Computer, lights."


def test_word_timings_lose_the_wake_words() -> None:
    words = [Word("Hey,", 0.0, 0.2, 0.9), Word("Jarvis!", 0.2, 0.6, 0.8), Word("Go.", 0.7, 1, 1)]
    stripped = strip_wake_word("Hey, Jarvis! Go.", WAKE)
    assert strip_words(words, stripped.words_removed) == [words[2]]


@given(st.text(max_size=60), st.lists(st.text(max_size=12), max_size=3))
def test_stripping_only_ever_removes_a_prefix(text: str, wake_words: list[str]) -> None:
    stripped = strip_wake_word(text, wake_words)
    if stripped.wake_word is None:
        assert stripped.text == text
    else:
        rest = stripped.text
        assert text.lower().endswith(rest[1:].lower()) if rest else True
        assert len(rest) < len(text)
