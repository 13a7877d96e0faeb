"""The bench's dictation: one long utterance the node will not split, from real clips."""

from __future__ import annotations

import numpy as np

from orac_node.audio.vad import WINDOW_S, SileroVad, speech_probabilities
from orac_node.bench.corpus import DICTATION_PAUSE_S, compress_pauses, dictation, load_corpus
from tests.conftest import AUDIO


def _longest_pause_s(samples: np.ndarray) -> float:
    longest = run = 0
    for p in speech_probabilities(samples, SileroVad()):
        run = run + 1 if p < 0.5 else 0
        longest = max(longest, run)
    return longest * WINDOW_S


def test_pauses_are_cut_below_the_end_of_speech_silence() -> None:
    jfk = next(c for c in load_corpus([AUDIO / "speech"]) if c.name == "speech/jfk.wav")
    assert _longest_pause_s(jfk.samples) > 0.7  # it would end at the default 0.7 s
    short = compress_pauses(jfk.samples)
    assert 0.5 * jfk.samples.size < short.size < jfk.samples.size
    assert _longest_pause_s(short) < 0.7


def test_dictation_joins_referenced_clips_up_to_the_limit() -> None:
    clips = load_corpus([AUDIO / "speech", AUDIO / "commands"])
    long = dictation(clips, 28.0)
    assert long is not None and long.reference is not None
    assert 20.0 < long.seconds <= 28.0
    assert long.reference.startswith("And so my fellow Americans")  # longest clip first
    assert dictation(clips[:2], 28.0) is None  # too little speech for a dictation
    assert DICTATION_PAUSE_S < 0.7
    assert long.samples.dtype == np.float32
