"""Jobs' pure parts: where a window is cut, what carries across, the output formats.

tests/integration/test_jobs.py runs the queue on a real redis-server with real nodes.
"""

from __future__ import annotations

import itertools

import numpy as np
import srt
import webvtt

from orac_node.bench.corpus import Clip
from orac_node.bench.jobs import build_recording
from orac_node.jobs.formats import render, vtt_time
from orac_node.jobs.windows import CARRY_CHARS, Window, carry, pause_middle, plan
from orac_node.wire import SAMPLE_RATE, JobInfo, Segment


def _probs(pattern: str) -> np.ndarray:
    """'s' speech, '.' pause: one character per VAD window."""
    return np.array([1.0 if c == "s" else 0.0 for c in pattern], np.float32)


def test_a_cut_goes_in_the_middle_of_the_longest_pause_not_a_gap_between_words() -> None:
    assert pause_middle(_probs("sss.....sss.ss")) == 5  # not the later one-window gap
    assert pause_middle(_probs("s...s...s")) == 6  # equal pauses: the later
    speech = np.array([0.9, 0.7, 0.95, 0.8], np.float32)
    assert pause_middle(speech) == 1  # no pause at all: the quietest


async def test_windows_cover_the_recording_end_to_end() -> None:
    total = 70 * SAMPLE_RATE
    audio = np.zeros(total, np.float32)

    async def read(start: int, end: int) -> np.ndarray:
        return audio[start:end]

    def speech(samples: np.ndarray) -> np.ndarray:
        return np.zeros(len(samples) // 512, np.float32)

    start, windows = 0, []
    while start < total:
        window = await plan(start, total, read, speech)
        windows.append(window)
        start = window.cut
    assert windows[0].start == 0 and windows[-1].cut == total
    assert all(a.cut == b.start for a, b in itertools.pairwise(windows))
    assert all(0 < w.cut - w.start <= 28 * SAMPLE_RATE for w in windows)


def test_segments_are_placed_on_the_recordings_timeline_within_their_window() -> None:
    window = Window(60 * SAMPLE_RATE, 70 * SAMPLE_RATE)
    placed = window.place(
        [Segment(1.0, 3.0, " Hello."), Segment(3.0, 30.0, "Bye."), Segment(4, 5, " ")]
    )
    assert placed == [Segment(61.0, 63.0, "Hello."), Segment(63.0, 70.0, "Bye.")]


def test_the_next_window_is_prompted_with_the_end_of_what_was_said() -> None:
    assert carry("", "Turn on the lights.") == "Turn on the lights."
    assert carry("Names: Ada.", "Hi.") == "Names: Ada. Hi."
    long = " ".join(f"word{i}" for i in range(100))
    tail = carry("", long)
    assert len(tail) <= CARRY_CHARS and long.endswith(tail) and tail.startswith("word")


def test_a_job_renders_as_text_srt_webvtt_and_json() -> None:
    segments = [Segment(0.5, 2.25, "Hello there."), Segment(3661.0, 3662.5, "An hour later.")]
    job = JobInfo(
        "j1",
        "done",
        "memo.wav",
        1.0,
        3663.0,
        3663.0,
        text="Hello there. An hour later.",
        segments=segments,
    )
    assert render(job, "text") == "Hello there. An hour later.\n"
    subs = list(srt.parse(render(job, "srt")))
    assert [(s.start.total_seconds(), s.content) for s in subs] == [
        (0.5, "Hello there."),
        (3661.0, "An hour later."),
    ]
    captions = webvtt.from_string(render(job, "vtt")).captions
    assert [(c.start, c.end) for c in captions][1] == ("01:01:01.000", "01:01:02.500")
    assert vtt_time(0.5) == "00:00:00.500"
    assert JobInfo.decode(render(job, "json")) == job


def test_the_bench_recording_repeats_the_referenced_clips_to_its_length() -> None:
    one_s = np.ones(SAMPLE_RATE, np.float32)
    clips = [Clip("a/1.wav", one_s, "one"), Clip("a/2.wav", one_s, None), Clip("b/3", one_s, "3")]
    samples, texts = build_recording(clips, minutes=0.1)  # 6 s: 1 s clips, 0.8 s pauses
    assert texts == ["one", "3", "one", "3"]  # the unreferenced clip left out
    assert samples.size == 4 * int(1.8 * SAMPLE_RATE)
