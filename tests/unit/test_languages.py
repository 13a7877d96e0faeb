"""Languages: what a session may ask for, and the detected language's probability.

The probability is measured with the real multilingual base model on real speech.
"""

from __future__ import annotations

import pytest

from orac_node.audio import load_audio_file
from orac_node.decode.decoding import DecodeOptions
from orac_node.decode.engine import WhisperEngine
from orac_node.decode.languages import (
    model_languages,
    unsupported,
    whisper_code,
    whisper_languages,
)
from tests.conftest import AUDIO, SHARED

BASE = SHARED / "models" / "ggml-base.bin"


def test_whisper_languages_are_whisper_cpps_codes() -> None:
    languages = whisper_languages()
    assert languages[0] == "en" and {"de", "fr", "ja"} <= set(languages)
    assert len(languages) == len(set(languages)) == 100
    assert model_languages(multilingual=False) == ["en"]
    assert model_languages(multilingual=True)[:2] == ["auto", "en"]


@pytest.mark.parametrize(("code", "whisper"), [("en", "en"), ("pt-BR", "pt"), ("EN-gb", "en")])
def test_region_tags_decode_as_their_language(code: str, whisper: str) -> None:
    assert whisper_code(code) == whisper


@pytest.mark.parametrize(
    ("language", "models", "refused"),
    [
        ("en", {"tiny.en": False}, None),
        ("en-GB", {"tiny.en": False}, None),
        ("auto", {"tiny.en": False}, None),  # an English-only model decodes English
        ("de", {"base": True}, None),
        ("pt-BR", {"base": True}, None),
        ("de", {"tiny.en": False}, "English-only"),
        ("de", {"base": True, "tiny.en": False}, "model tiny.en is English-only"),
        ("xx", {"base": True}, "not one Whisper knows"),
    ],
)
def test_which_language_a_model_set_refuses(
    language: str, models: dict[str, bool], refused: str | None
) -> None:
    why = unsupported(language, models)
    assert (why is None) if refused is None else (why is not None and refused in why)


@pytest.fixture(scope="module")
def base() -> WhisperEngine:
    return WhisperEngine(BASE, threads=2)


def test_a_detected_language_comes_with_its_probability(base: WhisperEngine) -> None:
    samples = load_audio_file(AUDIO / "speech" / "jfk.wav")
    final = DecodeOptions(language="auto", language_p=True)
    detected = base.decode(samples, final)
    assert base.multilingual
    assert detected.language == "en"
    assert detected.language_p is not None and 0.5 < detected.language_p <= 1.0
    assert "country" in detected.text
    given = base.decode(samples, DecodeOptions(language="en", language_p=True))
    assert given.language_p is None  # asked for English: nothing was detected
    partial = base.decode(samples, DecodeOptions(language="auto"))
    assert partial.language == "en" and partial.language_p is None  # not asked for


def test_a_region_tag_reaches_whisper_as_its_language(base: WhisperEngine) -> None:
    samples = load_audio_file(AUDIO / "commands" / "utt002.wav")
    decoding = base.decode(samples, DecodeOptions(language="en-GB"))
    assert decoding.language == "en"
    assert "timer" in decoding.text.lower()
