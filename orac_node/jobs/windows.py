"""A long recording, cut at pauses into windows and stitched back together.

Whisper hears at most 30 s at a time. A job's recording is read from the start
(or its last checkpoint) a window at a time, each cut at the quietest point of
its last :data:`~orac_node.decode.longform.SEARCH_S` (the VAD's speech
probability, as decode/longform.py does), so a cut falls in a pause between
words; the windows' segments are stitched on the recording's timeline. What
carries across a cut is the *text*: each window is decoded with the end of the
previous window's transcript as whisper's prompt (:data:`CARRY_CHARS`), as
whisper's own long-form transcription conditions on the text before.

The windows do not overlap in audio: every way of overlapping them that was
built and measured made the transcript worse (docs/JOBS.md, "Why the windows
do not overlap"). Stitched by timestamps, words were said twice at two of four
cuts of tests/integration/test_jobs.py's recording (whisper.cpp's timestamps
drift near a window's end). Stitched by aligning the two windows' texts over
the overlap, tiny.en's WER on the jobs bench's 30-minute recording went from
4.2 % to 8.3 %, and to 11.2 % when the later window only lent its opening as
context; cutting in running speech, it went from 4.9 % to 7.9 %. A window
that opens just before a phrase often mishears its first words ("Pause the
music" as "possible music"), and then the texts do not align. A cut in the
longest pause, carrying the text across, splits no word and was the best of
all the designs measured.

Only the window being decoded is in memory, never the recording.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orac_node.audio import Samples
from orac_node.audio.vad import WINDOW
from orac_node.decode.longform import SEARCH_S, WINDOW_S, SpeechProbabilities
from orac_node.wire import SAMPLE_RATE, Segment

PAUSE_BELOW = 0.5
"""A VAD window under this speech probability is a pause (``endpoint.vad_threshold``'s
default)."""
CARRY_CHARS = 200
"""The previous window's text given to the next as its prompt: a sentence or two,
well under the 224 tokens whisper keeps of a prompt."""

ReadSpan = Callable[[int, int], Awaitable[Samples]]
"""Samples [start, end) of the recording, read from wherever it is stored."""


@dataclass(frozen=True, slots=True)
class Window:
    """One window of the recording: samples [start, cut)."""

    start: int
    cut: int

    def place(self, segments: list[Segment]) -> list[Segment]:
        """The window's decoded segments (times from its start) on the recording's timeline.

        Whisper may end the last segment at its 30 s frame, past the audio: the
        window's end bounds it.
        """
        offset = self.start / SAMPLE_RATE
        length = (self.cut - self.start) / SAMPLE_RATE
        return [
            Segment(
                round(min(s.start, length) + offset, 2),
                round(min(s.end, length) + offset, 2),
                s.text.strip(),
            )
            for s in segments
            if s.text.strip()
        ]


async def plan(start: int, total: int, read: ReadSpan, speech: SpeechProbabilities) -> Window:
    """The window that begins at ``start`` of a ``total``-sample recording."""
    limit = int(WINDOW_S * SAMPLE_RATE)
    if total - start <= limit:
        return Window(start, total)
    search_from = start + limit - int(SEARCH_S * SAMPLE_RATE)
    probs = speech(await read(search_from, start + limit))
    return Window(
        start, min(search_from + pause_middle(probs) * WINDOW + WINDOW // 2, start + limit)
    )


def pause_middle(probs: npt.NDArray[np.float32]) -> int:
    """The VAD window in the middle of the longest pause (the latest of equals).

    The longest, not merely the quietest point: the VAD reads zero in the short
    gaps between words too, and a cut there splits a sentence whose halves
    whisper then hears without each other. Without any pause, the quietest point.
    """
    quiet = np.flatnonzero(probs < PAUSE_BELOW)
    if not quiet.size:
        return int(len(probs) - 1 - np.argmin(probs[::-1])) if len(probs) else 0
    runs = np.split(quiet, np.flatnonzero(np.diff(quiet) != 1) + 1)
    longest = max(reversed(runs), key=len)  # reversed: max keeps the first, the latest
    return int(longest[len(longest) // 2])


def carry(prompt: str, text: str) -> str:
    """The prompt of the next window: the job's own, then the end of what was just said."""
    tail = text[-CARRY_CHARS:]
    if len(text) > CARRY_CHARS and " " in tail:
        tail = tail.split(" ", 1)[1]  # from a word's start
    return f"{prompt} {tail}".strip()
