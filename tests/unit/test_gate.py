"""Non-speech gate: annotations stripped, stock phrases and low confidence rejected."""

from __future__ import annotations

import pytest

from orac_node.config import GateSection
from orac_node.decode.gate import (
    STOCK_PHRASE_MIN_SPEECH_S,
    GateRules,
    Rejection,
    check_audio,
    check_text,
    judge,
    strip_annotations,
)

RULES = GateRules(min_speech_s=0.2, min_confidence=0.25)


def test_rules_from_config() -> None:
    assert GateRules.from_config(GateSection(min_speech_ms=300, min_confidence=0.4)) == GateRules(
        0.3, 0.4
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("[BLANK_AUDIO]", ""),
        ("(dramatic music)", ""),
        ("*sighs*", ""),
        ("♪ la ♪", ""),
        ("♪♪", ""),
        ("♫ la la la ♫", ""),
        (" [Music] (applause) ", ""),
        ("[BLANK_AUDIO] Turn on the lights. (door slams)", "Turn on the lights."),
        ("Set a *cough* timer", "Set a timer"),
        ("  play   the\tradio  ", "play the radio"),
        ("What time is it?", "What time is it?"),
    ],
    ids=[
        "blank-audio",
        "parenthesised",
        "asterisks",
        "music-notes-around-lyrics",
        "music-notes-only",
        "beamed-notes-around-lyrics",
        "several-tags",
        "mixed-text",
        "tag-inside-text",
        "whitespace",
        "plain-text",
    ],
)
def test_strip_annotations(raw: str, expected: str) -> None:
    assert strip_annotations(raw) == expected


def test_check_audio() -> None:
    assert check_audio(0.0, RULES) is Rejection.NO_SPEECH
    assert check_audio(0.19, RULES) is Rejection.NO_SPEECH
    assert check_audio(0.2, RULES) is None
    assert check_audio(3.0, RULES) is None


@pytest.mark.parametrize("text", ["", "...", " - ", "?!"])
def test_check_text_non_speech(text: str) -> None:
    assert check_text(text, 0.9, 5.0, RULES) is Rejection.NON_SPEECH


def test_check_text_low_confidence() -> None:
    assert check_text("turn on the lights", 0.1, 5.0, RULES) is Rejection.LOW_CONFIDENCE
    assert check_text("turn on the lights", 0.25, 5.0, RULES) is None


@pytest.mark.parametrize("text", ["Thank you.", "you", "Thanks for watching!", "THANK YOU"])
def test_stock_phrase_with_little_speech_is_a_hallucination(text: str) -> None:
    assert check_text(text, 0.9, 0.4, RULES) is Rejection.HALLUCINATION


@pytest.mark.parametrize("text", ["Thank you.", "Okay", "Bye."])
def test_stock_phrase_with_enough_speech_is_accepted(text: str) -> None:
    assert check_text(text, 0.9, STOCK_PHRASE_MIN_SPEECH_S, RULES) is None
    assert check_text(text, 0.9, 2.5, RULES) is None


def test_ordinary_text_with_little_speech_is_accepted() -> None:
    assert check_text("lights off", 0.9, 0.3, RULES) is None
    assert check_text("thank you very much for the help", 0.9, 0.3, RULES) is None


def test_judge_passes_clean_text() -> None:
    assert judge("[BLANK_AUDIO] Turn off the TV.", 0.8, 1.5, RULES) == ("Turn off the TV.", None)


@pytest.mark.parametrize(
    ("raw", "confidence", "speech_s", "reason"),
    [
        ("[BLANK_AUDIO]", 0.9, 2.0, "non_speech"),
        ("(dramatic music)", 0.9, 2.0, "non_speech"),
        ("turn on the lights", 0.05, 2.0, "low_confidence"),
        (" Thank you.", 0.9, 0.3, "hallucination"),
    ],
)
def test_judge_withholds_rejected_text(
    raw: str, confidence: float, speech_s: float, reason: str
) -> None:
    assert judge(raw, confidence, speech_s, RULES) == ("", reason)
