"""Scoring transcripts the way the project reports them: WER after Whisper's normalization."""

from __future__ import annotations

import math


def wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus WER after Whisper's English normalization (NaN without references)."""
    import jiwer  # noqa: PLC0415 - bench-only dependency
    from whisper_normalizer.english import EnglishTextNormalizer  # noqa: PLC0415

    if not refs:
        return math.nan
    norm = EnglishTextNormalizer()
    pairs = [(norm(r).strip(), norm(h).strip()) for r, h in zip(refs, hyps, strict=True)]
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))
