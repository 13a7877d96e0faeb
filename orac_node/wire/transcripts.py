"""Transcripts out: JSON :class:`Partial` and :class:`Final` on ``transcript/<topic>``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from orac_node.errors import ContractError
from orac_node.wire.base import PROTOCOL_VERSION, ErrorCode, JsonPayload, json_object

TRANSCRIPT_FILTER = "transcript/#"
DUPLICATE = "duplicate"
"""A final's ``rejected`` when another satellite of its room group won (``duplicate_of``)."""


def transcript_topic(topic: str) -> str:
    """Topic partial and final transcripts for ``topic`` are published on."""
    return f"transcript/{topic}"


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word with its time span in the utterance and probability."""

    word: str
    start: float
    end: float
    p: float


@dataclass(frozen=True, slots=True)
class Segment:
    """One whisper segment: a span of the utterance and its text."""

    start: float
    end: float
    text: str


@dataclass(frozen=True, slots=True)
class Partial(JsonPayload):
    """An interim hypothesis while the user is still speaking.

    ``stable`` only ever grows within a session (LocalAgreement-2): a later
    partial of the same session never takes back a committed word.
    ``unstable`` may change with every partial. ``text`` is ``stable`` +
    ``unstable``. The final is a separate decode of the whole utterance (the
    accurate one): it usually starts with ``stable``, and says so with
    :attr:`Final.stable_revised` when it does not.
    """

    node: str
    model: str
    device: str
    session: str
    topic: str
    text: str
    stable: str
    unstable: str
    seq: int
    audio_s: float
    lag_ms: float
    decode_ms: float
    ts: float
    type: Literal["partial"] = "partial"
    v: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class Final(JsonPayload):
    """The one final transcript of a session.

    ``reason`` is why the utterance ended (``end``, ``silence``,
    ``max_duration``, ``idle``, ``shutdown``) or, when the session was rejected
    as non-speech, why (``no_speech``, ``non_speech``, ``low_confidence``,
    ``hallucination``); ``endpoint`` always holds the end reason and
    ``rejected`` the rejection reason or null (also ``wake_word_only``: the
    text was nothing but the topic's wake word, which ``wake_word`` names when
    one was stripped; ``decode_failed``: the node could not transcribe it).
    ``incomplete`` is true when the node did not get all of the session's
    audio (chunks never received, a satellite that vanished, a shutdown).
    ``stable_revised`` is true when partials of the session committed words
    (``stable``) that the final's text does not begin with (compared without
    case and punctuation): a display showing them as settled must replace them.
    ``latency_ms`` runs from the moment the endpoint was known (the ``end``
    chunk, the last chunk of the trailing silence, the idle deadline) to
    publication. ``language_p`` is the probability of ``language`` when the
    model detected it (the session asked for ``auto``), else null.
    ``variant`` is ``champion`` or ``candidate`` while an A/B test of the
    finals model runs (``orac-node models ab``) and the topic does not pin a
    model, else null.
    ``level_db`` is the speech's loudness (dBFS of the loud frames) and
    ``snr_db`` how far it stands above the quiet frames (the room's noise), both
    from the audio the final decoded; a room group's arbitration prefers the
    satellite that heard the words best. ``duplicate_of`` names the winning
    session when this one was ``rejected: duplicate`` (another satellite of the
    device's room group heard the same words).
    """

    node: str
    model: str
    device: str
    session: str
    topic: str
    text: str
    language: str
    confidence: float
    reason: str
    endpoint: str
    rejected: str | None
    audio_s: float
    speech_s: float
    chunks: int
    gaps: int
    duplicates: int
    incomplete: bool
    latency_ms: float
    decode_ms: float
    queue_ms: float
    ts: float
    speculative: bool = False
    words: list[Word] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    wake_word: str | None = None
    stable_revised: bool = False
    language_p: float | None = None
    variant: str | None = None
    level_db: float | None = None
    snr_db: float | None = None
    duplicate_of: str | None = None
    type: Literal["final"] = "final"
    v: int = PROTOCOL_VERSION


def decode_transcript(payload: bytes | str) -> Partial | Final:
    """Parse a ``transcript/<topic>`` message into a :class:`Partial` or :class:`Final`."""
    data = json_object(payload)
    kind = data.get("type")
    if kind == "partial":
        return Partial.from_dict(data)
    if kind == "final":
        return Final.from_dict(data)
    raise ContractError(ErrorCode.BAD_FIELD, f"unknown transcript type {kind!r}")
