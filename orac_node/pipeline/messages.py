"""What goes into a transcript: a :class:`Partial` or :class:`Final` from an utterance and a decode.

The topic's wake words are stripped here, from the text, the words and the
first segment alike, so every consumer (MQTT, webhooks, Core's answers) gets
the same transcript. Every number is finite (:func:`finite`): JSON has no NaN,
and a final that cannot be encoded would be a final lost.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence

from orac_node.audio import Level
from orac_node.consumers.wakewords import strip_transcript, strip_wake_word, strip_words
from orac_node.decode.decoding import Decoding
from orac_node.ingest.session import Utterance
from orac_node.wire import SAMPLE_RATE, Final, Partial, Segment, Word

FAILED = "decode_failed"
"""The rejection of a final the node could not transcribe or build."""


def finite(value: float, ndigits: int = 4) -> float:
    """``value`` rounded, or 0.0 when it is NaN or infinite."""
    return round(value, ndigits) if math.isfinite(value) else 0.0


def _ms(seconds: float) -> float:
    return finite(seconds * 1000, 1)


def _word(word: Word) -> Word:
    return Word(word.word, finite(word.start, 2), finite(word.end, 2), finite(word.p))


def _segment(segment: Segment) -> Segment:
    return Segment(finite(segment.start, 2), finite(segment.end, 2), segment.text)


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
        audio_s=finite(decoded_s, 3),
        lag_ms=_ms(max(0.0, utt.audio_s - decoded_s)),
        decode_ms=finite(decoding.decode_ms, 1),
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
    stable_revised: bool = False,
    variant: str | None = None,
    level: Level | None = None,
) -> Final:
    """The session's one final transcript, with the topic's ``wake_words`` stripped.

    ``level``: the speech level and SNR of the audio it decoded (audio/level.py).
    """
    stripped, rejection = strip_transcript(text, rejection, wake_words)
    words: list[Word] = []
    segments: list[Segment] = []
    if decoding and not rejection:
        words = [_word(w) for w in strip_words(decoding.words, stripped.words_removed)]
        segments = [_segment(s) for s in decoding.segments]
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
        confidence=finite(decoding.confidence) if decoding else 0.0,
        reason=rejection or endpoint,
        endpoint=endpoint,
        rejected=rejection,
        audio_s=finite(utt.audio_s, 3),
        speech_s=finite(utt.endpointer.speech_s, 3),
        chunks=utt.chunks,
        gaps=utt.reorderer.gaps,
        duplicates=utt.reorderer.duplicates,
        incomplete=utt.incomplete,
        latency_ms=_ms(time.monotonic() - endpoint_at),
        decode_ms=finite(decoding.decode_ms, 1) if decoding else 0.0,
        queue_ms=finite(queue_ms, 1),
        speculative=speculative,
        ts=time.time(),
        words=words,
        segments=segments,
        wake_word=stripped.wake_word,
        stable_revised=stable_revised,
        language_p=(
            finite(decoding.language_p) if decoding and decoding.language_p is not None else None
        ),
        variant=variant,
        level_db=level.level_db if level else None,
        snr_db=level.snr_db if level else None,
    )


def failed(utt: Utterance, *, node: str, model: str) -> Final:
    """The final of a session whose transcript could not be built: no text, but never lost."""
    endpoint = str(utt.reason)
    endpoint_at = utt.endpoint_at if utt.endpoint_at is not None else time.monotonic()
    return Final(
        node=node,
        model=model,
        device=utt.key.device,
        session=utt.key.session,
        topic=utt.topic,
        text="",
        language=utt.language,
        confidence=0.0,
        reason=FAILED,
        endpoint=endpoint,
        rejected=FAILED,
        audio_s=finite(utt.audio_s, 3),
        speech_s=finite(utt.endpointer.speech_s, 3),
        chunks=utt.chunks,
        gaps=utt.reorderer.gaps,
        duplicates=utt.reorderer.duplicates,
        incomplete=utt.incomplete,
        latency_ms=_ms(time.monotonic() - endpoint_at),
        decode_ms=0.0,
        queue_ms=0.0,
        ts=time.time(),
    )
