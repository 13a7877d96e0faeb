"""What a webhook receiver gets: one :class:`TranscriptionEvent` per final with text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from orac_node.wire.base import PROTOCOL_VERSION, JsonPayload
from orac_node.wire.transcripts import Final

WEBHOOK_EVENT = "transcription.complete"


@dataclass(frozen=True, slots=True)
class TranscriptionEvent(JsonPayload):
    """What a webhook receives for each final with text (JSON body of the POST).

    ``id`` is unique per event and repeated on retries: receivers deduplicate on it.
    """

    id: str
    event: str
    topic: str
    device: str
    session: str
    text: str
    confidence: float
    language: str
    timestamp: float
    node: str
    model: str
    audio_s: float
    v: int = PROTOCOL_VERSION

    @classmethod
    def from_final(cls, final: Final) -> Self:
        """The event for a published final (its id: node, device and session)."""
        return cls(
            id=f"{final.node}:{final.device}:{final.session}",
            event=WEBHOOK_EVENT,
            topic=final.topic,
            device=final.device,
            session=final.session,
            text=final.text,
            confidence=final.confidence,
            language=final.language,
            timestamp=final.ts,
            node=final.node,
            model=final.model,
            audio_s=final.audio_s,
        )
