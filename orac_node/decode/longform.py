"""Audio longer than one encoder window, decoded a window at a time in the batch lane.

A whole file or a transcribe request may hold up to 10 minutes of audio. Sent to
whisper.cpp in one call it would hold a worker for many seconds, and every
live session's final would wait behind it. Instead the audio is cut into
windows of at most :data:`WINDOW_S` at the quietest point near each window's
end (the VAD's speech probability, so a cut does not split a word), each
window is one batch job that live work can preempt, and the windows' segments
and words are stitched back on the file's timeline.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from orac_node.audio import Samples
from orac_node.audio.vad import WINDOW
from orac_node.decode.decoding import DecodeOptions, Decoding, FinalDecoding
from orac_node.decode.scheduler import InferenceScheduler, Lane
from orac_node.wire import SAMPLE_RATE, Segment, Word

WINDOW_S = 28.0
"""Longest window: under whisper's 30 s encoder window, with room for the margin
the engine adds around the audio."""
SEARCH_S = 8.0
"""A cut is looked for in the last 8 s of a window: long enough to find a pause
between sentences in ordinary speech, short enough that windows stay long."""

SpeechProbabilities = Callable[[Samples], npt.NDArray[np.float32]]
"""The VAD over a whole recording: one speech probability per 32 ms window."""


def cut_points(samples: Samples, speech: SpeechProbabilities) -> list[int]:
    """Where to cut ``samples`` into windows: sample offsets, first 0, last the end."""
    total = samples.size
    limit = int(WINDOW_S * SAMPLE_RATE)
    if total <= limit:
        return [0, total]
    probs = speech(samples)
    points = [0]
    start = 0
    while total - start > limit:
        lo = (start + limit - int(SEARCH_S * SAMPLE_RATE)) // WINDOW
        hi = (start + limit) // WINDOW
        window = probs[lo:hi]
        # the quietest 32 ms window; the latest of equals keeps windows long
        best = lo + int(len(window) - 1 - np.argmin(window[::-1])) if len(window) else hi
        cut = max(start + SAMPLE_RATE, min(best * WINDOW + WINDOW // 2, start + limit))
        points.append(cut)
        start = cut
    points.append(total)
    return points


async def decode_long(
    scheduler: InferenceScheduler,
    samples: Samples,
    options: DecodeOptions,
    *,
    model: str,
    speech: SpeechProbabilities,
) -> FinalDecoding:
    """Decode ``samples`` window by window in the batch lane; one decoding on its timeline."""
    points = await asyncio.to_thread(cut_points, samples, speech)  # the VAD: ~2 ms/s of audio
    parts: list[tuple[float, Decoding]] = []
    queue_ms = 0.0
    for start, end in itertools.pairwise(points):
        result = await scheduler.final(samples[start:end], options, model=model, lane=Lane.BATCH)
        parts.append((start / SAMPLE_RATE, result.decoding))
        queue_ms += result.queue_ms
    return FinalDecoding(_stitch(parts), queue_ms=round(queue_ms, 1), model=model)


def _stitch(parts: list[tuple[float, Decoding]]) -> Decoding:
    """One decoding from windows: times shifted by each window's offset.

    The confidence is the geometric mean of the windows', each weighted by its
    word count: the words' share of the whole, as the engine's own mean is over
    tokens.
    """
    if len(parts) == 1:
        return parts[0][1]
    words: list[Word] = []
    segments: list[Segment] = []
    texts: list[str] = []
    log_sum = weight = 0.0
    for offset, decoding in parts:
        words += [
            Word(w.word, round(w.start + offset, 2), round(w.end + offset, 2), w.p)
            for w in decoding.words
        ]
        segments += [
            Segment(round(s.start + offset, 2), round(s.end + offset, 2), s.text)
            for s in decoding.segments
        ]
        if decoding.text:
            texts.append(decoding.text)
        n = max(1, len(decoding.words))
        log_sum += n * math.log(max(decoding.confidence, 1e-9))
        weight += n
    first = parts[0][1]
    return Decoding(
        text=" ".join(texts),
        language=first.language,
        confidence=round(math.exp(log_sum / weight), 4),
        decode_ms=round(sum(d.decode_ms for _, d in parts), 1),
        words=words,
        segments=segments,
        aborted=any(d.aborted for _, d in parts),
    )
