"""Per-topic wake-word stripping, so ORAC Core gets the command without the wake word.

"Computer, turn on the lights." is published as "Turn on the lights.".

Satellites start streaming when their wake-word engine fires, and some keep
the wake word in the audio; Whisper then writes it down and ORAC Core would
have to know every room's wake word to ignore it. Each topic names its wake
words (config ``wake_words``, the topics registry), and transcripts of that
topic lose a wake word they *start* with, with the punctuation after it.

Matching is on words, case- and punctuation-insensitively ("Hey, Jarvis!"
matches the wake word "hey jarvis"), only at the start of the text: a wake
word in the middle of a sentence is speech. The longest matching wake word
wins, so "hey computer" beats "hey".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from orac_node.wire import Word

_WORD = re.compile(r"[\w']+")
_SEPARATORS = " \t,.;:!?-—…"
"""What may follow a wake word before the command ("Computer, ...", "Jarvis - ...")."""


def _norm(word: str) -> str:
    return word.lower().strip("'")


@dataclass(frozen=True, slots=True)
class Stripped:
    """Text with its leading wake word removed; ``wake_word`` None when there was none."""

    text: str
    wake_word: str | None
    words_removed: int


def strip_wake_word(text: str, wake_words: Sequence[str]) -> Stripped:
    """Remove the longest of ``wake_words`` that ``text`` starts with."""
    if not wake_words or not text:
        return Stripped(text, None, 0)
    spoken = list(_WORD.finditer(text))
    best: tuple[int, str] | None = None
    for wake in wake_words:
        wanted = [_norm(w) for w in _WORD.findall(wake)]
        if not wanted or len(wanted) > len(spoken):
            continue
        if [_norm(m.group()) for m in spoken[: len(wanted)]] == wanted and (
            best is None or len(wanted) > best[0]
        ):
            best = (len(wanted), wake)
    if best is None:
        return Stripped(text, None, 0)
    count, wake = best
    # Everything up to the last wake-word word, then the punctuation and spaces after it.
    rest = text[spoken[count - 1].end() :].lstrip(_SEPARATORS)
    return Stripped(rest[:1].upper() + rest[1:], wake, count)


WAKE_WORD_ONLY = "wake_word_only"
"""Rejection reason of a transcript that was nothing but the topic's wake word."""


def strip_transcript(
    text: str, rejection: str | None, wake_words: Sequence[str]
) -> tuple[Stripped, str | None]:
    """A judged transcript without its wake word, and its rejection reason.

    Text that was only the wake word is rejected as :data:`WAKE_WORD_ONLY`:
    the user said "Computer." and nothing else, which no consumer can act on.
    """
    stripped = strip_wake_word(text, wake_words)
    if stripped.wake_word is not None and not stripped.text and rejection is None:
        rejection = WAKE_WORD_ONLY
    return stripped, rejection


def strip_words(words: Sequence[Word], count: int) -> list[Word]:
    """Word timings without the first ``count`` words (the stripped wake word)."""
    return list(words[count:]) if count else list(words)
