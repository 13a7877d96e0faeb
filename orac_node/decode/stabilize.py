"""LocalAgreement-2: which words of a partial hypothesis are safe to show as final.

Each partial decode of the growing utterance gives a new hypothesis. A word is
*committed* once two consecutive hypotheses agree on it and on every word
before it (Macháček et al., "Turning Whisper into Real-Time Transcription
System", 2023). Committed words are never taken back, so a display built on
``stable`` never flickers; the rest of the newest hypothesis is ``unstable``.

Words are compared case- and punctuation-insensitively ("lights," agrees with
"lights"); a committed word keeps the spelling of the newer of the two
hypotheses, which had heard more of the sentence.

Buffer trimming (as in whisper_streaming): once a partial window grows long,
the audio of whole segments whose words are all committed is dropped from
the front of the window (:func:`trim_point`), so a partial's cost depends on
the uncommitted audio, not on how long the user has been talking. Hypotheses
then cover only the window; :meth:`LocalAgreement.trim` records how many
committed words lie before it. Unlike whisper_streaming, the committed text is
*not* given to whisper as an initial prompt: on the bench's 28 s dictation,
tiny.en prompted with it stopped transcribing new speech after the prompt's
last sentence, while the unprompted window recognised it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from orac_node.decode.gate import strip_annotations
from orac_node.wire import Segment

_NON_WORD = re.compile(r"[^\w']+")


def _key(word: str) -> str:
    return _NON_WORD.sub("", word.lower())


class LocalAgreement:
    """Commits the longest common prefix of consecutive hypotheses' uncommitted tails."""

    def __init__(self) -> None:
        self.committed: list[str] = []
        self._committed_keys: list[str] = []
        self._previous_tail: list[str] = []
        self._outside = 0  # committed words whose audio was trimmed from the window
        self.window_committed = 0
        """Leading words of the newest hypothesis that are committed."""

    @property
    def stable(self) -> str:
        """The committed prefix, as text."""
        return " ".join(self.committed)

    def begins(self, text: str) -> bool:
        """Whether ``text`` starts with the committed words (case and punctuation aside)."""
        keys = [_key(w) for w in text.split()]
        return keys[: len(self._committed_keys)] == self._committed_keys

    def update(self, hypothesis: str) -> tuple[str, str]:
        """Take the newest hypothesis of the window; return ``(stable, unstable)`` text."""
        words = hypothesis.split()
        keys = [_key(w) for w in words]
        start = self._tail_start(keys)
        tail = words[start:]
        tail_keys = [_key(w) for w in tail]
        agreed = 0
        for a, b in zip(self._previous_tail, tail_keys, strict=False):
            if a != b:
                break
            agreed += 1
        if agreed:
            self.committed.extend(tail[:agreed])
            self._committed_keys.extend(tail_keys[:agreed])
            tail, tail_keys = tail[agreed:], tail_keys[agreed:]
        self._previous_tail = tail_keys
        self.window_committed = start + agreed
        return self.stable, " ".join(tail)

    def trim(self, words: int) -> None:
        """The first ``words`` words of the newest hypothesis left the window (all committed)."""
        if not 0 < words <= self.window_committed:
            raise ValueError(f"can only trim committed words, not {words}")
        still_inside = self.window_committed - words
        self._outside = max(self._outside, len(self.committed) - still_inside)
        self.window_committed = still_inside

    def _tail_start(self, keys: list[str]) -> int:
        """Where the not-yet-committed words begin in a hypothesis of the window.

        Each hypothesis re-transcribes the window, and may word the committed
        part differently ("asked" vs "ask"). The committed words inside the
        window are aligned to the hypothesis and the tail starts after the last
        one found; with no alignment at all, it starts at their count.
        """
        inside = self._committed_keys[self._outside :]
        n = len(inside)
        if keys[:n] == inside:
            return n
        matcher = difflib.SequenceMatcher(a=inside, b=keys, autojunk=False)
        end = 0
        for block in matcher.get_matching_blocks():
            if block.size:
                end = block.b + block.size
        return end or min(n, len(keys))


def trim_point(
    segments: Sequence[Segment], window_s: float, committed: int
) -> tuple[float, int] | None:
    """Where to cut the window: after the last whole segment that is all committed.

    ``segments`` are the newest hypothesis's (times in the window, which is
    ``window_s`` long), ``committed`` how many of its leading words are
    committed. The last segment is never cut (its end is still being heard),
    nor is one without words (a ``[BLANK_AUDIO]``). Returns ``(end_s,
    words_before)`` or None when no segment qualifies.
    """
    point = None
    words = 0
    for segment in segments[:-1]:
        count = len(strip_annotations(segment.text).split())
        words += count
        if words > committed:
            break
        if count:
            point = (min(segment.end, window_s), words)
    return point
