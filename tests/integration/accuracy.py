"""Scoring transcripts the way the shared audio's README prescribes."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jiwer
from whisper_normalizer.english import EnglishTextNormalizer


@functools.cache
def _normalizer() -> EnglishTextNormalizer:
    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    """Whisper's English normalization (numbers, spelling, punctuation)."""
    return str(_normalizer()(text)).strip()


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER after normalization, as a fraction."""
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    return float(jiwer.wer(refs, hyps))
