"""Rejecting non-speech before Whisper's inventions reach ORAC Core.

Whisper transcribes silence and noise as "Thank you.", "[BLANK_AUDIO]",
"(dramatic music)", "e e e e ..." and similar. The gate uses evidence that a
short real reply also gives, rather than a list of suspicious phrases (which
withheld a clearly spoken "Okay." or "Thank you."):

1. the VAD: (almost) no speech in the utterance and the model is not even run;
2. the model's own non-speech annotations: bracketed or parenthesised tags,
   music symbols; once removed, nothing may be left;
3. repetition: text that compresses like a loop (zlib ratio above
   :data:`LOOP_RATIO`, Whisper's own threshold, per :data:`LOOP_SPAN_CHARS`)
   is invented;
4. token probabilities: a transcript whose geometric-mean token probability
   is very low is a guess;
5. for short speech (under :data:`VERIFY_BELOW_S`), a second decode of the
   speech alone (:func:`verify_window`) must say the same: a real word is
   heard again in the audio the VAD marked as speech, an invention made from
   the surrounding silence is not.

Measured with :func:`orac_node.decode.offline.transcribe` on 161 short clips
(101 one- to three-word cuts from the shared real recordings, 60 espeak-ng
replies in six voices), 63 non-speech clips (silence, noises, hum, music, room
tone), 38 harder ones (sung vowels, time-reversed speech) and the 91 shared
recordings: the old rules (a stock-phrase list, 0.2 s minimum speech) withheld
41 of the 161, all 19 synthesized "Okay."/"Thank you."/"Bye."/"Oh." among them;
this gate withholds 13 (11 for low confidence, 2 synthesized "Oh." the VAD does
not hear). It still rejects all 63 non-speech clips, 33 of the 38 harder ones
(30 before; the 5 left are time-reversed speech, which both transcribe) and no
whole recording. docs/DECODING.md has the table.

(whisper.cpp's no-speech probability is not exposed by pywhispercpp and is
reported broken upstream, so it is deliberately not used.)
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from enum import StrEnum

from orac_node.config import GateSection

# [BLANK_AUDIO], (dramatic music), *sighs*, ♪ lyrics ♪ and the like; a partial
# decode can also end inside one ("[BLANK_"), so an unclosed one runs to the end.
_ANNOTATION = re.compile(r"\[[^\]]*(\]|$)|\([^)]*(\)|$)|\*[^*]*\*|[♪♫][^♪♫]*[♪♫]|[♪♫]+")
_PUNCT_ONLY = re.compile(r"^[\W_]*$")
_NOT_WORD = re.compile(r"[^\w\s']")

LOOP_RATIO = 2.4
"""Text that zlib compresses more than this is a repetition loop (Whisper's own
compression-ratio threshold). Measured: real transcripts 0.27-1.36 (jfk.wav the
highest), the two loops seen ("e e e ...") 29 and 51."""
LOOP_SPAN_CHARS = 300
"""The ratio is taken over spans of at most this much text (about 20 s of speech):
Whisper sets its threshold per 30 s window, and zlib finds more to share in any
longer text (a 58 s file of read speech, some of it read twice, compresses 3.3
times whole, at most 1.64 per span)."""
VERIFY_BELOW_S = 1.0
"""Utterances with less VAD speech than this are decoded a second time, speech
alone. Longer ones are not: there the second decode often words something
differently ("hole milk" / "whole milk", 5 of 91 recordings), while inventions
from silence are short."""
VERIFY_MARGIN_S = 0.5
"""Audio kept around the VAD's speech for the second decode. With 0.5 s it agreed
with the first decode on all 146 short clips above that were decoded right; with
0.2 s one in eight came back different ("Milk." -> "Nope.")."""


class Rejection(StrEnum):
    """Why a session's text was withheld (the final's ``rejected`` field)."""

    NO_SPEECH = "no_speech"  # the VAD found (almost) no speech
    NON_SPEECH = "non_speech"  # the model only produced annotations like [BLANK_AUDIO]
    LOW_CONFIDENCE = "low_confidence"
    HALLUCINATION = "hallucination"  # a loop, or short text the speech alone does not give


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


def words_of(text: str) -> str:
    """Text as the gate compares it: lower case, punctuation removed, one space."""
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


def compression_ratio(text: str) -> float:
    """How much zlib shrinks ``text``: about 1 for speech, far more for a loop."""
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


def check_audio(speech_s: float, rules: GateRules) -> Rejection | None:
    """Before decoding: reject when there is too little speech to be worth transcribing."""
    return Rejection.NO_SPEECH if speech_s < rules.min_speech_s else None


def check_text(text: str, confidence: float, rules: GateRules) -> Rejection | None:
    """After decoding: reject ``text`` (annotations already stripped) that is not believable."""
    if _PUNCT_ONLY.match(text):
        return Rejection.NON_SPEECH
    spans = range(0, len(text), LOOP_SPAN_CHARS)
    if any(compression_ratio(text[i : i + LOOP_SPAN_CHARS]) > LOOP_RATIO for i in spans):
        return Rejection.HALLUCINATION
    if not confidence >= rules.min_confidence:  # also NaN: no number is no confidence
        return Rejection.LOW_CONFIDENCE
    return None


def verify_window(
    speech_s: float, first_s: float | None, last_s: float | None, audio_s: float
) -> tuple[float, float] | None:
    """The audio to decode again, speech alone, for a short utterance (None: no need).

    None too when the speech and its margins are the whole audio: decoding the
    same audio again would only give the same text.
    """
    if speech_s >= VERIFY_BELOW_S or first_s is None or last_s is None:
        return None
    start, end = max(0.0, first_s - VERIFY_MARGIN_S), min(audio_s, last_s + VERIFY_MARGIN_S)
    return None if start == 0.0 and end == audio_s else (start, end)


def judge(
    raw_text: str, confidence: float, rules: GateRules, *, check: str | None = None
) -> tuple[str, str | None]:
    """The publishable text of a decode and, if it is withheld, the rejection reason.

    ``check`` is the second decode of the speech alone, for a short utterance
    (:func:`verify_window`): it must give the same words.
    """
    text = strip_annotations(raw_text)
    rejection = check_text(text, confidence, rules)
    heard_again = check is None or words_of(strip_annotations(check)) == words_of(text)
    if rejection is None and not heard_again:
        rejection = Rejection.HALLUCINATION
    return ("", str(rejection)) if rejection else (text, None)
