"""What goes into a decode and what comes out, with no model attached.

The scheduler, the cache, the pipeline and the answers to Core's requests pass
these around; only engine.py touches whisper.cpp.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orac_node.wire import Segment, Word


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """What may change from one decode to the next."""

    language: str = "en"
    beam_size: int = 1
    window_margin_s: float = 6.0
    prompt: str = ""
    timestamps: bool = True
    temperature_fallback: bool = False
    threads: int = 0  # 0: the engine's own count; the scheduler sets it per decode


@dataclass(frozen=True, slots=True)
class Decoding:
    """Result of one decode; ``confidence`` is from token probabilities."""

    text: str
    language: str
    confidence: float
    decode_ms: float
    words: list[Word] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    aborted: bool = False


@dataclass(frozen=True, slots=True)
class FinalDecoding:
    """A final's decoding, the model that made it, and how long it waited for a worker.

    ``fallback`` says why ``model`` is not the one asked for, the first time a
    model asked for turns out not to load (then it is quietly the node's own).
    ``check`` is the text of a second decode of the speech alone, made for short
    utterances (decode/gate.py): the gate believes the text only if it agrees.
    """

    decoding: Decoding
    queue_ms: float
    model: str = ""
    fallback: str | None = None
    check: str | None = None  # the second decode of the speech alone (decode/gate.py)
