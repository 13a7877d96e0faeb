"""LocalAgreement-2: which words of a partial hypothesis are safe to show as final.

Each partial decode of the growing utterance gives a new hypothesis. A word is
*committed* once two consecutive hypotheses agree on it and on every word
before it (Macháček et al., "Turning Whisper into Real-Time Transcription
System", 2023). Committed words are never taken back, so a display built on
``stable`` never flickers; the rest of the newest hypothesis is ``unstable``.

Words are compared case- and punctuation-insensitively ("lights," agrees with
"lights"), and the first spelling seen is the one kept.
"""

from __future__ import annotations

import re

_NON_WORD = re.compile(r"[^\w']+")


def _key(word: str) -> str:
    return _NON_WORD.sub("", word.lower())


class LocalAgreement:
    """Commits the longest common word prefix of consecutive hypotheses."""

    def __init__(self) -> None:
        self.committed: list[str] = []
        self._previous: list[str] = []

    @property
    def stable(self) -> str:
        """The committed prefix, as text."""
        return " ".join(self.committed)

    def update(self, hypothesis: str) -> tuple[str, str]:
        """Take the newest hypothesis; return ``(stable, unstable)`` text."""
        words = hypothesis.split()
        keys = [_key(w) for w in words]
        previous = [_key(w) for w in self._previous]
        agreed = 0
        for a, b in zip(previous, keys, strict=False):
            if a != b:
                break
            agreed += 1
        n = len(self.committed)
        committed_keys = [_key(w) for w in self.committed]
        if agreed > n and keys[:n] == committed_keys:
            self.committed.extend(words[n:agreed])
            n = agreed
        self._previous = words
        return self.stable, " ".join(words[n:])
