"""LocalAgreement-2: which words of a partial hypothesis are safe to show as final.

Each partial decode of the growing utterance gives a new hypothesis. A word is
*committed* once two consecutive hypotheses agree on it and on every word
before it (Macháček et al., "Turning Whisper into Real-Time Transcription
System", 2023). Committed words are never taken back, so a display built on
``stable`` never flickers; the rest of the newest hypothesis is ``unstable``.

Words are compared case- and punctuation-insensitively ("lights," agrees with
"lights"); a committed word keeps the spelling of the newer of the two
hypotheses, which had heard more of the sentence.
"""

from __future__ import annotations

import difflib
import re

_NON_WORD = re.compile(r"[^\w']+")


def _key(word: str) -> str:
    return _NON_WORD.sub("", word.lower())


class LocalAgreement:
    """Commits the longest common prefix of consecutive hypotheses' uncommitted tails."""

    def __init__(self) -> None:
        self.committed: list[str] = []
        self._committed_keys: list[str] = []
        self._previous_tail: list[str] = []

    @property
    def stable(self) -> str:
        """The committed prefix, as text."""
        return " ".join(self.committed)

    def update(self, hypothesis: str) -> tuple[str, str]:
        """Take the newest hypothesis; return ``(stable, unstable)`` text."""
        words = hypothesis.split()
        keys = [_key(w) for w in words]
        tail = words[self._tail_start(keys) :]
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
        return self.stable, " ".join(tail)

    def _tail_start(self, keys: list[str]) -> int:
        """Where the not-yet-committed words begin in a full-utterance hypothesis.

        Each hypothesis re-transcribes the whole utterance, and may word the
        committed part differently ("asked" vs "ask"). The committed words are
        aligned to the hypothesis and the tail starts after the last one found;
        with no alignment at all, it starts at the committed word count.
        """
        n = len(self._committed_keys)
        if keys[:n] == self._committed_keys:
            return n
        matcher = difflib.SequenceMatcher(a=self._committed_keys, b=keys, autojunk=False)
        end = 0
        for block in matcher.get_matching_blocks():
            if block.size:
                end = block.b + block.size
        return end or min(n, len(keys))
