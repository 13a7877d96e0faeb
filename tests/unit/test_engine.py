"""WhisperEngine with the real tiny.en model on real audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orac_node.audio import Samples, load_audio_file
from orac_node.config import GateSection, NodeConfig
from orac_node.decode.decoding import DecodeOptions, Decoding
from orac_node.decode.engine import (
    FULL_WINDOW,
    WINDOW_QUANTUM,
    WhisperEngine,
    encoder_window,
)
from orac_node.decode.gate import GateRules, judge, strip_annotations
from orac_node.decode.offline import transcribe
from orac_node.errors import ModelError
from orac_node.wire import SAMPLE_RATE
from tests.conftest import AUDIO, MODEL

OPTIONS = DecodeOptions()


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    return WhisperEngine(MODEL, threads=2)


def _load(name: str) -> Samples:
    return load_audio_file(AUDIO / name)


# --- encoder window ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "margin", "window"),
    [
        (1.0, 6.0, 512),  # 50 + 300 frames
        (4.24, 6.0, 512),  # 212 + 300 = 512 exactly
        (4.25, 6.0, 768),  # 213 + 300 = 513
        (11.0, 6.0, 1024),  # 550 + 300
        (2.0, 0.0, 256),
        (24.0, 6.0, 1500),  # 1500 frames: the full window
        (60.0, 6.0, 1500),  # capped
    ],
)
def test_encoder_window_values(seconds: float, margin: float, window: int) -> None:
    assert encoder_window(round(seconds * SAMPLE_RATE), margin) == window


@given(st.integers(1, 40 * SAMPLE_RATE), st.floats(0, 30))
def test_encoder_window_is_a_quantum_multiple_covering_the_audio(n: int, margin: float) -> None:
    window = encoder_window(n, margin)
    assert window == FULL_WINDOW or window % WINDOW_QUANTUM == 0
    assert window <= FULL_WINDOW
    needed = n / (SAMPLE_RATE / 50) + margin * 50
    assert window >= min(needed, FULL_WINDOW)
    assert encoder_window(n + SAMPLE_RATE, margin) >= window


# --- loading -------------------------------------------------------------------------------


def test_missing_model_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        WhisperEngine(tmp_path / "ggml-none.bin", threads=1)


def test_engine_name_and_language(engine: WhisperEngine) -> None:
    assert engine.name == "tiny.en"
    assert engine.multilingual is False


# --- decoding real audio ---------------------------------------------------------------------


def _check_words(decoding: Decoding, audio_s: float) -> None:
    starts = [w.start for w in decoding.words]
    assert decoding.words, decoding
    assert starts == sorted(starts), starts
    for word in decoding.words:
        assert 0.0 <= word.start <= word.end <= audio_s + 0.05, word
        assert 0.0 < word.p <= 1.0
        assert word.word.strip() == word.word and word.word


def test_command_clip_is_transcribed(engine: WhisperEngine) -> None:
    samples = _load("commands/utt002.wav")  # "set a timer for ten minutes"
    decoding = engine.decode(samples, OPTIONS)
    assert "timer" in decoding.text.lower()
    assert "minute" in decoding.text.lower()
    assert 0.0 < decoding.confidence < 1.0
    assert decoding.language == "en"
    assert not decoding.aborted
    assert decoding.decode_ms > 0
    assert decoding.segments and decoding.segments[0].start >= 0
    _check_words(decoding, samples.size / SAMPLE_RATE)
    assert "timer" in [w.word.lower().strip(".,") for w in decoding.words]


def test_word_times_on_a_long_clip_increase_within_the_audio(engine: WhisperEngine) -> None:
    samples = _load("speech/jfk.wav")
    decoding = engine.decode(samples, OPTIONS)
    audio_s = samples.size / SAMPLE_RATE
    _check_words(decoding, audio_s)
    assert decoding.words[-1].end > audio_s / 2  # timings span the clip, not one instant
    assert "country" in decoding.text.lower()


def test_confidence_comes_from_the_audio(engine: WhisperEngine) -> None:
    a = engine.decode(_load("commands/utt002.wav"), OPTIONS)
    b = engine.decode(_load("commands/utt000.wav"), OPTIONS)
    assert a.text != b.text
    assert a.confidence != b.confidence
    assert 0.0 < b.confidence < 1.0


def test_timestamps_off_gives_no_words(engine: WhisperEngine) -> None:
    decoding = engine.decode(_load("commands/utt002.wav"), DecodeOptions(timestamps=False))
    assert decoding.words == []
    assert "timer" in decoding.text.lower()


def test_decoding_does_not_depend_on_the_previous_clip(engine: WhisperEngine) -> None:
    short = _load("commands/utt002.wav")
    before = engine.decode(short, OPTIONS)
    engine.decode(_load("speech/jfk.wav"), OPTIONS)  # a longer clip, a larger window
    after = engine.decode(short, OPTIONS)
    assert after.text == before.text
    assert after.words == before.words
    assert after.confidence == before.confidence


def test_silence_produces_nothing_publishable(engine: WhisperEngine) -> None:
    # Whisper may invent a word for digital silence ("you", at 0.22-0.24): the VAD gate
    # stops silence before any decode, and the raw decode's confidence is far below speech
    # (median 0.80), though above gate.min_confidence (0.15, set for beam finals).
    silence = np.zeros(2 * SAMPLE_RATE, np.float32)
    result = transcribe(engine, silence, NodeConfig())
    assert (result.text, result.rejected, result.decoding) == ("", "no_speech", None)
    decoding = engine.decode(silence, DecodeOptions(beam_size=5, window_margin_s=10))
    text, _ = judge(decoding.text, decoding.confidence, GateRules.from_config(GateSection()))
    assert strip_annotations(text) in {"", "you"}
    assert decoding.confidence < 0.4


def test_abort_callback_is_honoured(engine: WhisperEngine) -> None:
    decoding = engine.decode(_load("speech/jfk.wav"), OPTIONS, should_abort=lambda: True)
    assert decoding.aborted
    assert decoding.text == ""  # whisper.cpp stopped before producing any text
    assert decoding.words == []
    again = engine.decode(_load("commands/utt002.wav"), OPTIONS, should_abort=lambda: False)
    assert not again.aborted
    assert "timer" in again.text.lower()


# --- aborting a decode (the scheduler's preemption) ---------------------------------------


def test_a_decode_is_asked_whether_to_stop_while_it_encodes(engine: WhisperEngine) -> None:
    """The patched build hands the abort callback to ggml (whisperbuild.py): it is asked
    between graph nodes, not only twice per decode, so a preempted partial stops in ms."""
    audio = _load("commands/utt001.wav")
    asked = 0

    def never() -> bool:
        nonlocal asked
        asked += 1
        return False

    engine.decode(audio, OPTIONS, never)
    assert asked > 2, "asked only between whole graphs: the encoder cannot be stopped"


def test_a_decode_stopped_inside_the_encoder_leaves_the_engine_as_it_was(
    engine: WhisperEngine,
) -> None:
    audio = _load("commands/utt001.wav")
    before = engine.decode(audio, OPTIONS)
    asked = 0

    def on_second_question() -> bool:
        nonlocal asked
        asked += 1
        return asked >= 2  # the first question comes before the encoder

    stopped = engine.decode(audio, OPTIONS, on_second_question)
    assert stopped.aborted
    assert engine.decode(audio, OPTIONS).text == before.text
