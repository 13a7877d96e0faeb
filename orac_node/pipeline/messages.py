"""What goes into a transcript: a :class:`Partial` or :class:`Final` from an utterance and a decode.

The topic's wake words are stripped here, from the text, the words and the
first segment alike, so every consumer (MQTT, webhooks, Core's answers) gets
the same transcript.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from orac_node.consumers.wakewords import strip_transcript, strip_wake_word, strip_words
from orac_node.decode.decoding import Decoding
from orac_node.ingest.session import Utterance
from orac_node.wire import SAMPLE_RATE, Final, Partial, Segment, Word


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def partial(
    utt: Utterance,
    decoding: Decoding,
    *,
    node: str,
    model: str,
    seq: int,
    decoded_samples: int,
    stable: str,
    unstable: str,
) -> Partial:
    """An interim hypothesis of ``utt``'s audio up to ``decoded_samples``."""
    decoded_s = decoded_samples / SAMPLE_RATE
    return Partial(
        node=node,
        model=model,
        device=utt.key.device,
        session=utt.key.session,
        topic=utt.topic,
        text=" ".join(part for part in (stable, unstable) if part),
        stable=stable,
        unstable=unstable,
        seq=seq,
        audio_s=round(decoded_s, 3),
        lag_ms=_ms(max(0.0, utt.audio_s - decoded_s)),
        decode_ms=decoding.decode_ms,
        ts=time.time(),
    )


def final(
    utt: Utterance,
    *,
    node: str,
    model: str,
    text: str,
    decoding: Decoding | None,
    rejection: str | None,
    queue_ms: float,
    speculative: bool = False,
    wake_words: Sequence[str] = (),
) -> Final:
    """The session's one final transcript, with the topic's ``wake_words`` stripped."""
    stripped, rejection = strip_transcript(text, rejection, wake_words)
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
    return Final(
        node=node,
        model=model,
        device=utt.key.device,
        session=utt.key.session,
        topic=utt.topic,
        text="" if rejection else stripped.text,
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
