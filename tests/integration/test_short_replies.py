"""Short replies get through; silence and noise still do not (the non-speech gate, gate.py).

"Okay.", "Thank you.", "Bye.", "Oh." spoken clearly, and single words cut out of
real people's recorded orders, go through the node's own rules (offline.py:
the VAD, the engine, the gate, its verifying decode of the speech alone) and
must come out as spoken; silence, noise and hum must come out empty. One of
each is also streamed through a real node. The spoken replies are synthesized
here with espeak-ng (the project's setup installs it; without it they fail), the real words cut from
../shared/audio/orders at fixed spans.
"""

from __future__ import annotations

import functools
import re
import subprocess

import numpy as np
import pytest

from orac_node.audio import Samples, load_audio_file, read_wav_bytes
from orac_node.audio.vad import SileroVad
from orac_node.config import NodeConfig
from orac_node.decode.engine import WhisperEngine
from orac_node.decode.offline import transcribe
from orac_node.wire import SAMPLE_RATE
from tests.conftest import AUDIO, MODEL
from tests.integration.harness import RunningNode, harness

REPLIES = ["Okay.", "Thank you.", "Bye.", "Oh.", "Yes.", "No.", "Thanks.", "Stop."]
VOICES = ["en-us", "en-gb", "en+f3", "en+m3"]
REAL_WORDS = {
    # orders file: where its last word starts (s), and the word; the recording's own
    # trailing silence follows it. The second has 0.13 s of VAD speech, which the
    # old 0.2 s minimum refused undecoded.
    "333064e4-f6af-4a72-9378-b7eebff92d71": (4.3, "milk"),
    "42b059cf-c87e-4b10-84cc-13e0b4f3bc31": (5.33, "milk"),
    "1698c3c6-aa49-4059-a86d-c1207b83bf17": (2.38, "sugar"),
    "458e9432-c9c7-45f1-8887-0490fbccca6d": (1.46, "cappuccino"),
    "c266bd5f-7a13-4f1d-b14f-49cfd607bd35": (3.65, "cream"),
    "5d52900c-d287-4f2c-8bd9-aacbd68f0409": (5.12, "mocha"),
}


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


@functools.cache
def _engine() -> WhisperEngine:
    return WhisperEngine(MODEL, threads=2)


@functools.cache
def _vad() -> SileroVad:
    return SileroVad()


def _heard(samples: Samples) -> tuple[str, str | None]:
    result = transcribe(_engine(), samples, NodeConfig(), _vad())
    return result.text, result.rejected


def _spoken(text: str, voice: str) -> Samples:
    """espeak-ng saying ``text``, 16 kHz, between 0.4 s of silence."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", "160", "--stdout", text],
        capture_output=True,
        check=True,
    ).stdout
    pad = np.zeros(int(0.4 * SAMPLE_RATE), np.float32)
    return np.concatenate((pad, read_wav_bytes(wav), pad))


def _cut(name: str, start_s: float) -> Samples:
    """An order's last word and the silence after it, behind 0.3 s of its own room tone."""
    audio = load_audio_file(AUDIO / "orders" / f"{name}.wav")
    tone = audio[-int(0.3 * SAMPLE_RATE) :]
    return np.concatenate((tone, audio[int(start_s * SAMPLE_RATE) :]))


# Silero gives this synthesized "Oh." at most 0.50 speech probability, under the VAD
# threshold: the VAD hears no speech at all, and no gate rule can bring it back.
# Strict, so that a better VAD or voice shows up as a pass to take in.
_VAD_DEAF = pytest.mark.xfail(strict=True, reason="the VAD hears no speech in it")


@pytest.mark.parametrize(
    ("reply", "voice"),
    [
        pytest.param(r, v, marks=[_VAD_DEAF] if (r, v) == ("Oh.", "en-us") else [])
        for r in REPLIES
        for v in VOICES
    ],
)
def test_a_clearly_spoken_short_reply_is_heard(reply: str, voice: str) -> None:
    text, rejected = _heard(_spoken(reply, voice))
    assert rejected is None, f"{reply!r} in {voice} withheld as {rejected}"
    assert _words(text) == _words(reply)


@pytest.mark.parametrize("name", sorted(REAL_WORDS))
def test_a_real_persons_single_word_is_heard(name: str) -> None:
    start_s, word = REAL_WORDS[name]
    text, rejected = _heard(_cut(name, start_s))
    assert rejected is None, f"{word!r} withheld as {rejected}"
    assert word in _words(text)


_RNG = np.random.default_rng(11)
_T = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
QUIET: dict[str, np.ndarray] = {
    "digital silence": np.zeros(3 * SAMPLE_RATE),
    "white noise": _RNG.normal(0, 0.05, 3 * SAMPLE_RATE),
    "mains hum": 0.2 * np.sin(2 * np.pi * 50 * _T) + 0.1 * np.sin(2 * np.pi * 100 * _T),
    "room tone, louder": np.tile(
        load_audio_file(AUDIO / "orders" / "02b77977-ada7-4f37-a1b3-8cb433c8c8da.wav")[-8000:],
        6,
    )
    * 30,
    "clicks": np.where(_RNG.random(3 * SAMPLE_RATE) < 0.001, 0.8, 0.0),
}


@pytest.mark.parametrize("name", sorted(QUIET))
def test_silence_and_noise_still_give_no_text(name: str) -> None:
    samples = np.clip(QUIET[name], -1.0, 1.0).astype(np.float32)
    text, rejected = _heard(samples)
    assert (text, rejected is not None) == ("", True), f"{name} heard as {text!r}"


async def test_short_replies_through_a_real_node(node: RunningNode, device: str) -> None:
    okay = _spoken("Okay.", "en-us")
    milk = _cut("42b059cf-c87e-4b10-84cc-13e0b4f3bc31", 5.33)  # 0.13 s of VAD speech
    async with harness(node.url) as h:
        first = await h.session(device, okay, realtime=True)
        second = await h.session(device, milk)
        quiet = await h.session(device, np.zeros(2 * SAMPLE_RATE, np.float32))
    assert first.final is not None and _words(first.final.text) == "okay", first.final
    assert second.final is not None and "milk" in _words(second.final.text), second.final
    assert quiet.final is not None and quiet.final.text == "" and quiet.final.rejected
