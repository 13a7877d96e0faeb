"""Scoring transcripts the way the project reports them.

WER after Whisper's English normalization for folders with reference texts;
slot recall for folders with spoken-order labels (``labels.json``): the share
of labelled values (drink, size, milk ...) found in the transcript, both sides
normalized, as whole words, and the share of orders with every value found.
A voice assistant acts on the values, so this is the figure that says whether
the user got their order, where WER also counts "a" against "the".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

LABELS_FILE = "labels.json"


def _normalizer() -> Callable[[str], str]:
    from whisper_normalizer.english import EnglishTextNormalizer  # noqa: PLC0415 - bench only

    return EnglishTextNormalizer()  # type: ignore[no-any-return]


def wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus WER after Whisper's English normalization (NaN without references)."""
    import jiwer  # noqa: PLC0415 - bench-only dependency

    if not refs:
        return math.nan
    norm = _normalizer()
    pairs = [(norm(r).strip(), norm(h).strip()) for r, h in zip(refs, hyps, strict=True)]
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))


def load_slot_labels(folder: Path) -> dict[str, list[str]]:
    """File name -> its labelled slot values, from ``folder/labels.json`` ({} without one).

    The file maps each recording to ``{"slots": {"size": "eight ounce", ...}}``;
    values are kept as spoken (some carry stray spaces), normalized when scored.
    """
    path = folder / LABELS_FILE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {name: [str(v) for v in entry.get("slots", {}).values()] for name, entry in data.items()}


@dataclass(frozen=True, slots=True)
class SlotScore:
    """Slot recall over a set of orders."""

    values: int
    values_found: int
    orders: int
    orders_right: int

    @property
    def value_recall(self) -> float:
        """Share of labelled values found (NaN for no values)."""
        return self.values_found / self.values if self.values else math.nan

    @property
    def order_accuracy(self) -> float:
        """Share of orders with every value found (NaN for no orders)."""
        return self.orders_right / self.orders if self.orders else math.nan


def slot_score(labels: list[list[str]], hyps: list[str]) -> SlotScore:
    """How many labelled values appear, as whole normalized words, in each transcript.

    "eight ounce" is found in "An 8 ounce mocha." (the normalizer writes numbers
    as digits on both sides) but "milk" is not found in "buttermilk".
    """
    norm = _normalizer()
    values = found = right = 0
    for slots, hyp in zip(labels, hyps, strict=True):
        text = f" {norm(hyp).strip()} "
        hits = sum(f" {norm(v).strip()} " in text for v in slots)
        values += len(slots)
        found += hits
        right += hits == len(slots)
    return SlotScore(values, found, len(labels), right)
