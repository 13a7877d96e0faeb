"""Building the node's outgoing messages and handing them to the bus.

Every transcript, error report and status the node publishes is assembled here
from contract classes, so node.py reads as decisions (what to publish, when)
rather than field plumbing.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence

from orac_node import __version__
from orac_node.bus import Bus, Outgoing
from orac_node.contract import (
    SAMPLE_RATE,
    ErrorReport,
    Final,
    NodeState,
    NodeStatus,
    Partial,
    Segment,
    Word,
    error_topic,
    status_topic,
    transcript_topic,
)
from orac_node.engine import Decoding
from orac_node.session import Utterance
from orac_node.wakeword import strip_transcript, strip_wake_word, strip_words

log = logging.getLogger(__name__)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def offline_status(node_id: str, model: str) -> Outgoing:
    """The retained ``offline`` status, also used as the MQTT Last Will."""
    status = NodeStatus(node_id, "offline", __version__, model, 0, 0, time.time())
    return Outgoing(status_topic(node_id), status.encode(), qos=1, retain=True)


class TranscriptPublisher:
    """Turns node events into contract messages on the bus."""

    def __init__(self, bus: Bus, *, node_id: str, model: str) -> None:
        self._bus = bus
        self.node_id = node_id
        self.model = model

    def partial(
        self, utt: Utterance, decoding: Decoding, decoded_samples: int, stable: str, unstable: str
    ) -> Partial:
        """Publish an interim hypothesis (dropped first if the outbox is full)."""
        decoded_s = decoded_samples / SAMPLE_RATE
        message = Partial(
            node=self.node_id,
            model=self.model,
            device=utt.key.device,
            session=utt.key.session,
            topic=utt.topic,
            text=" ".join(part for part in (stable, unstable) if part),
            stable=stable,
            unstable=unstable,
            seq=utt.partial_seq,
            audio_s=round(decoded_s, 3),
            lag_ms=_ms(max(0.0, utt.audio_s - decoded_s)),
            decode_ms=decoding.decode_ms,
            ts=time.time(),
        )
        self._bus.publish(
            Outgoing(transcript_topic(utt.topic), message.encode(), qos=0, droppable=True)
        )
        return message

    def final(
        self,
        utt: Utterance,
        *,
        text: str,
        decoding: Decoding | None,
        rejection: str | None,
        queue_ms: float,
        speculative: bool = False,
        on_sent: Callable[[], None] | None = None,
        model: str | None = None,
        wake_words: Sequence[str] = (),
    ) -> Final:
        """Publish the session's one final transcript; ``on_sent`` runs on the broker's PUBACK.

        ``wake_words``: the topic's, stripped from the start of the text (and of
        its words and first segment). Not published when the utterance is a
        transcribe request that asked not to be (``utt.publish``).
        """
        stripped, rejection = strip_transcript(text, rejection, wake_words)
        text = stripped.text
        words: list[Word] = []
        segments: list[Segment] = []
        if decoding and not rejection:
            words = strip_words(decoding.words, stripped.words_removed)
            segments = list(decoding.segments)
            if stripped.wake_word is not None and segments:
                first = strip_wake_word(segments[0].text, [stripped.wake_word]).text
                segments[0] = dataclasses.replace(segments[0], text=first)
        endpoint = str(utt.reason)
        endpoint_at = utt.endpoint_at if utt.endpoint_at is not None else time.monotonic()
        message = Final(
            node=self.node_id,
            model=model or self.model,
            device=utt.key.device,
            session=utt.key.session,
            topic=utt.topic,
            text="" if rejection else text,
            language=decoding.language if decoding else utt.language,
            confidence=decoding.confidence if decoding else 0.0,
            reason=rejection or endpoint,
            endpoint=endpoint,
            rejected=rejection,
            audio_s=round(utt.audio_s, 3),
            speech_s=round(utt.endpointer.speech_s, 3),
            chunks=utt.chunks,
            gaps=utt.reorderer.gaps,
            duplicates=utt.reorderer.duplicates,
            incomplete=utt.incomplete,
            latency_ms=_ms(time.monotonic() - endpoint_at),
            decode_ms=decoding.decode_ms if decoding else 0.0,
            queue_ms=queue_ms,
            speculative=speculative,
            ts=time.time(),
            words=words,
            segments=segments,
            wake_word=stripped.wake_word,
        )
        if utt.publish:
            self._bus.publish(
                Outgoing(transcript_topic(utt.topic), message.encode(), qos=1, on_sent=on_sent)
            )
        return message

    def error(
        self,
        device: str,
        code: str,
        message: str,
        *,
        session: str | None = None,
        seq: int | None = None,
        dropped: int | None = None,
    ) -> None:
        """Tell a device what was wrong with its message."""
        report = ErrorReport(
            node=self.node_id,
            device=device,
            code=code,
            message=message,
            ts=time.time(),
            session=session,
            seq=seq,
            dropped=dropped,
        )
        self._bus.publish(Outgoing(error_topic(device), report.encode(), qos=1))

    def status(self, state: NodeState, *, sessions: int, queued: int) -> None:
        """Publish the retained node status."""
        status = NodeStatus(
            node=self.node_id,
            state=state,
            version=__version__,
            model=self.model,
            sessions=sessions,
            queued=queued,
            ts=time.time(),
        )
        self._bus.publish(Outgoing(status_topic(self.node_id), status.encode(), qos=1, retain=True))
