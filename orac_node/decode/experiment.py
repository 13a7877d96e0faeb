"""A/B tests of the finals model: who gets the candidate, and how each variant did.

``orac-node models ab start CANDIDATE --share 0.1`` puts an experiment in the
retained model selection (wire/models.py). A device is in the candidate's
share when the first 8 bytes of SHA-256 of its name, read as a fraction of
2^64, fall below ``share``: the same device always lands on the same side, on
every node, across restarts, and raising the share only adds devices. Topics
that pin a model (their ``model``) and requests naming one are not part of the
test.

In shadow mode every final is published from the champion; the candidate
decodes the same audio with the same options behind live work (the batch
lane), and only the comparison is kept.

:class:`ExperimentStats` is what ``models ab report`` reads (through
``describe``): per variant the finals, rejections, confidence, latency and
decode time; in shadow mode how often the candidate's text agreed with the
published one; and, when ORAC Core retranscribed a session (its retry for a
doubtful final), how often the retry agreed with the variant's final. Texts
are compared as lower-case words without punctuation.
"""

from __future__ import annotations

import hashlib
import re
import statistics
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

CHAMPION = "champion"
CANDIDATE = "candidate"
KEEP = 1000
"""Figures kept per variant for medians: the last thousand finals, so the figures
follow the running test without growing for ever."""
REMEMBERED_FINALS = 512
"""Finals remembered to compare with a later retranscribe: more than the node's
recent audio ring (requests.recent_sessions, 64), so any session Core can still
retranscribe is here."""
_WORD = re.compile(r"[\w']+")


@dataclass(frozen=True, slots=True)
class Experiment:
    """A running A/B test of the finals model."""

    candidate: str
    share: float
    shadow: bool = False

    def variant(self, device: str) -> str:
        """The side ``device`` is on (in shadow mode everyone's final is the champion's)."""
        if self.shadow:
            return CHAMPION
        return CANDIDATE if in_share(device, self.share) else CHAMPION


def in_share(device: str, share: float) -> bool:
    """Whether ``device`` falls in the first ``share`` of all device names (stable)."""
    digest = hashlib.sha256(device.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def words(text: str) -> list[str]:
    """A text as lower-case words without punctuation: what agreement compares."""
    return _WORD.findall(text.lower())


@dataclass
class _Variant:
    finals: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    confidence: deque[float] = field(default_factory=lambda: deque(maxlen=KEEP))
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=KEEP))
    decode_ms: deque[float] = field(default_factory=lambda: deque(maxlen=KEEP))
    retranscribed: int = 0
    retranscribe_agreed: int = 0

    def report(self) -> dict[str, Any]:
        return {
            "finals": self.finals,
            "rejected": dict(self.rejected),
            "rejected_share": _share(sum(self.rejected.values()), self.finals),
            "confidence_p50": _median(self.confidence),
            "latency_ms_p50": _median(self.latency_ms),
            "decode_ms_p50": _median(self.decode_ms),
            "retranscribed": self.retranscribed,
            "retranscribe_agreement": _share(self.retranscribe_agreed, self.retranscribed),
        }


@dataclass
class _Shadow:
    compared: int = 0
    agreed: int = 0
    candidate_rejected: int = 0
    confidence: deque[float] = field(default_factory=lambda: deque(maxlen=KEEP))
    decode_ms: deque[float] = field(default_factory=lambda: deque(maxlen=KEEP))

    def report(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "agreement": _share(self.agreed, self.compared),
            "candidate_rejected_share": _share(self.candidate_rejected, self.compared),
            "candidate_confidence_p50": _median(self.confidence),
            "candidate_decode_ms_p50": _median(self.decode_ms),
        }


class ExperimentStats:
    """How each variant of the running experiment did on this node (module docstring)."""

    def __init__(self) -> None:
        self.experiment: Experiment | None = None
        self._variants: dict[str, _Variant] = {}
        self._shadow = _Shadow()
        self._finals: OrderedDict[tuple[str, str], tuple[str, str]] = OrderedDict()

    def start(self, experiment: Experiment | None) -> None:
        """A new experiment (or none): figures start from zero when it changes."""
        if experiment != self.experiment:
            self.experiment = experiment
            self._variants.clear()
            self._shadow = _Shadow()
            self._finals.clear()

    def final(
        self,
        *,
        device: str,
        session: str,
        variant: str,
        text: str,
        rejected: str | None,
        confidence: float,
        latency_ms: float,
        decode_ms: float,
    ) -> None:
        """A published final of ``variant``."""
        stats = self._variants.setdefault(variant, _Variant())
        stats.finals += 1
        if rejected is not None:
            stats.rejected[rejected] += 1
        else:
            stats.confidence.append(confidence)
        stats.latency_ms.append(latency_ms)
        if decode_ms:
            stats.decode_ms.append(decode_ms)
        self._finals[(device, session)] = (variant, text)
        while len(self._finals) > REMEMBERED_FINALS:
            self._finals.popitem(last=False)

    def shadow(
        self, *, published: str, candidate: str, rejected: bool, confidence: float, decode_ms: float
    ) -> None:
        """The candidate's decode of a final's audio, next to the published text."""
        shadow = self._shadow
        shadow.compared += 1
        shadow.agreed += words(published) == words(candidate)
        shadow.candidate_rejected += rejected
        if not rejected:
            shadow.confidence.append(confidence)
        shadow.decode_ms.append(decode_ms)

    def retranscribed(self, device: str, session: str, text: str) -> None:
        """Core decoded a session again: count whether the retry agrees with the final."""
        found = self._finals.get((device, session))
        if found is None:
            return
        variant, original = found
        stats = self._variants[variant]
        stats.retranscribed += 1
        stats.retranscribe_agreed += words(original) == words(text)

    def report(self) -> dict[str, Any] | None:
        """The figures as JSON data (None: no experiment runs)."""
        experiment = self.experiment
        if experiment is None:
            return None
        report: dict[str, Any] = {
            "candidate": experiment.candidate,
            "share": experiment.share,
            "shadow": experiment.shadow,
            "variants": {name: v.report() for name, v in sorted(self._variants.items())},
        }
        if experiment.shadow:
            report["shadow_figures"] = self._shadow.report()
        return report


def _median(values: deque[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
