"""Rejecting non-speech before Whisper's inventions reach ORAC Core.

Whisper transcribes silence and noise as "Thank you.", "[BLANK_AUDIO]",
"(dramatic music)" and similar. Three independent signals guard against it:

1. the VAD: too little speech in the utterance and the model is not even run;
2. the model's own non-speech annotations: bracketed or parenthesised tags,
   music symbols; once removed, nothing may be left;
3. token probabilities: a transcript whose geometric-mean token probability
   is very low is a guess, and a stock phrase Whisper emits on silence is only
   believed when the VAD heard enough speech to contain it.

(whisper.cpp's no-speech probability is not exposed by pywhispercpp and is
reported broken upstream, so it is deliberately not used.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from orac_node.config import GateSection

# [BLANK_AUDIO], (dramatic music), *sighs*, ♪ lyrics ♪ and the like; a partial
# decode can also end inside one ("[BLANK_"), so an unclosed one runs to the end.
_ANNOTATION = re.compile(r"\[[^\]]*(\]|$)|\([^)]*(\)|$)|\*[^*]*\*|[♪♫][^♪♫]*[♪♫]|[♪♫]+")
_PUNCT_ONLY = re.compile(r"^[\W_]*$")

# Phrases Whisper is known to produce from silence or noise (from the training
# data's subtitles). Compared after lower-casing and stripping punctuation.
_STOCK_PHRASES = frozenset(
    {
        "thank you",
        "thanks for watching",
        "thank you for watching",
        "you",
        "bye",
        "thank you very much",
        "please subscribe",
        "so",
        "the",
        "oh",
        "okay",
    }
)
STOCK_PHRASE_MIN_SPEECH_S = 1.0
"""A stock phrase is only believed with at least this much VAD speech: a real
"thank you" is ~0.5-1 s, hallucinations come from silence with little or none."""


class Rejection(StrEnum):
    """Why a session's text was withheld (the final's ``rejected`` field)."""

    NO_SPEECH = "no_speech"  # the VAD found (almost) no speech
    NON_SPEECH = "non_speech"  # the model only produced annotations like [BLANK_AUDIO]
    LOW_CONFIDENCE = "low_confidence"
    HALLUCINATION = "hallucination"  # a stock phrase with too little speech behind it


@dataclass(frozen=True, slots=True)
class GateRules:
    """Thresholds of the non-speech gate."""

    min_speech_s: float
    min_confidence: float

    @classmethod
    def from_config(cls, section: GateSection) -> GateRules:
        """Rules from the ``gate`` config section."""
        return cls(section.min_speech_ms / 1000, section.min_confidence)


def strip_annotations(text: str) -> str:
    """Remove Whisper's non-speech annotations and tidy the spaces."""
    return " ".join(_ANNOTATION.sub(" ", text).split())


def check_audio(speech_s: float, rules: GateRules) -> Rejection | None:
    """Before decoding: reject when there is too little speech to be worth transcribing."""
    return Rejection.NO_SPEECH if speech_s < rules.min_speech_s else None


def check_text(text: str, confidence: float, speech_s: float, rules: GateRules) -> Rejection | None:
    """After decoding: reject ``text`` (annotations already stripped) that is not believable."""
    if _PUNCT_ONLY.match(text):
        return Rejection.NON_SPEECH
    if not confidence >= rules.min_confidence:  # also NaN: no number is no confidence
        return Rejection.LOW_CONFIDENCE
    phrase = " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())
    if phrase in _STOCK_PHRASES and speech_s < STOCK_PHRASE_MIN_SPEECH_S:
        return Rejection.HALLUCINATION
    return None


def judge(
    raw_text: str, confidence: float, speech_s: float, rules: GateRules
) -> tuple[str, str | None]:
    """The publishable text of a decode and, if it is withheld, the rejection reason."""
    text = strip_annotations(raw_text)
    rejection = check_text(text, confidence, speech_s, rules)
    return ("", str(rejection)) if rejection else (text, None)
