"""Non-speech gate: annotations; loops, low confidence, unconfirmed short text."""

from __future__ import annotations

import pytest

from orac_node.config import GateSection
from orac_node.decode.gate import (
    LOOP_RATIO,
    VERIFY_BELOW_S,
    VERIFY_MARGIN_S,
    GateRules,
    Rejection,
    check_audio,
    check_text,
    compression_ratio,
    judge,
    strip_annotations,
    verify_window,
    words_of,
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
    assert check_text(text, 0.9, RULES) is Rejection.NON_SPEECH


def test_check_text_low_confidence() -> None:
    assert check_text("turn on the lights", 0.1, RULES) is Rejection.LOW_CONFIDENCE
    assert check_text("turn on the lights", float("nan"), RULES) is Rejection.LOW_CONFIDENCE
    assert check_text("turn on the lights", 0.25, RULES) is None


@pytest.mark.parametrize("text", ["Thank you.", "Okay", "Bye.", "Oh.", "you", "So."])
def test_short_replies_are_believed_on_their_own(text: str) -> None:
    # The stock-phrase list withheld these whenever the VAD heard under 1 s of speech,
    # which is every real "Okay.": now only a second decode of the speech can refute them.
    assert check_text(text, 0.9, RULES) is None


def test_a_repetition_loop_is_a_hallucination() -> None:
    loop = "e " * 60
    assert compression_ratio(loop) > LOOP_RATIO
    assert check_text(loop, 0.9, RULES) is Rejection.HALLUCINATION
    sentence = "And so my fellow Americans, ask not what your country can do for you."
    assert compression_ratio(sentence) < LOOP_RATIO
    assert check_text(sentence, 0.9, RULES) is None


def test_a_long_transcript_is_judged_in_spans() -> None:
    # zlib finds repetition in any long text; Whisper's threshold is per 30 s window.
    speech = " ".join(
        [
            "And so my fellow Americans, ask not what your country can do for you,",
            "ask what you can do for your country. Set a timer for ten minutes,",
            "then turn off the kitchen lights and play some music in the living room.",
        ]
        * 4
    )
    assert compression_ratio(speech) > LOOP_RATIO
    assert check_text(speech, 0.9, RULES) is None
    looping = speech[:400] + " I won't see you," * 20
    assert check_text(looping, 0.9, RULES) is Rejection.HALLUCINATION


def test_words_of_ignores_case_and_punctuation() -> None:
    assert words_of(" Okay. ") == words_of("okay") == "okay"
    assert words_of("Don't, STOP!") == "don't stop"


def test_verify_window_covers_short_speech_with_a_margin() -> None:
    assert verify_window(0.4, 1.0, 1.6, 5.0) == (1.0 - VERIFY_MARGIN_S, 1.6 + VERIFY_MARGIN_S)
    assert verify_window(0.4, 0.2, 3.0, 5.0) == (0.0, 3.0 + VERIFY_MARGIN_S)  # clamped
    assert verify_window(0.4, 0.2, 4.9, 5.0) is None  # all of it: the same decode again
    assert verify_window(VERIFY_BELOW_S, 1.0, 2.0, 5.0) is None  # long enough to be believed
    assert verify_window(0.4, None, None, 5.0) is None  # no speech window at all


def test_judge_passes_clean_text() -> None:
    assert judge("[BLANK_AUDIO] Turn off the TV.", 0.8, RULES) == ("Turn off the TV.", None)


def test_judge_believes_short_text_heard_again() -> None:
    assert judge(" Okay.", 0.9, RULES, check="okay") == ("Okay.", None)


def test_judge_withholds_short_text_the_speech_alone_does_not_give() -> None:
    assert judge(" Thank you.", 0.9, RULES, check="") == ("", "hallucination")
    assert judge(" Thank you.", 0.9, RULES, check=" Milk.") == ("", "hallucination")


@pytest.mark.parametrize(
    ("raw", "confidence", "reason"),
    [
        ("[BLANK_AUDIO]", 0.9, "non_speech"),
        ("(dramatic music)", 0.9, "non_speech"),
        ("turn on the lights", 0.05, "low_confidence"),
        ("e e e e e e e e e e e e e e e e e e e e e e e e e e e e e e", 0.9, "hallucination"),
    ],
)
def test_judge_withholds_rejected_text(raw: str, confidence: float, reason: str) -> None:
    assert judge(raw, confidence, RULES) == ("", reason)
