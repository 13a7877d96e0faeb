"""The talk button's audio on the server: checked, and resampled to the wire's 16 kHz.

tests/integration/test_console.py runs Talk for real (Chromium's fake microphone,
a real node); this covers what a page may send.
"""

from __future__ import annotations

import numpy as np
import pytest

from orac_node.audio import float_to_s16
from orac_node.client import Client
from orac_node.console.talk import MAX_BLOCK_BYTES, Talk, TalkError
from orac_node.console.view import Event


async def _ignore(event: Event) -> None:
    del event


def _talk(rate: int) -> Talk:
    return Talk(Client("mqtt://127.0.0.1:1"), _ignore, rate=rate, language=None)


async def _sent(talk: Talk) -> bytes:
    talk.stop()
    return b"".join([block async for block in talk._audio()])


async def test_a_48_khz_microphone_arrives_at_16_khz() -> None:
    talk = _talk(48_000)
    t = np.arange(48_000) / 48_000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for block in np.split(tone, 50):  # 20 ms blocks, as the page's worklet sends
        talk.feed(float_to_s16(block))
    talk.stop()
    talk.feed(float_to_s16(tone[:960]))  # in flight after stop: dropped
    sent = np.frombuffer(await _sent(talk), np.int16)  # stopping again is harmless
    assert abs(sent.size - 16_000) <= 2  # stopping flushes soxr's filter: nothing held back
    spectrum = np.abs(np.fft.rfft(sent[1000:9000]))
    assert abs(np.argmax(spectrum) * 16_000 / 8000 - 440) <= 2  # the same tone


async def test_a_16_khz_microphone_passes_unchanged() -> None:
    talk = _talk(16_000)
    block = float_to_s16(np.full(320, 0.25, np.float32))
    talk.feed(block)
    assert await _sent(talk) == block


def test_what_is_not_microphone_audio_is_refused() -> None:
    with pytest.raises(TalkError, match="outside"):
        _talk(0)
    talk = _talk(16_000)
    with pytest.raises(TalkError, match="not s16le"):
        talk.feed(b"\x00\x01\x02")
    with pytest.raises(TalkError, match="not s16le"):
        talk.feed(bytes(MAX_BLOCK_BYTES + 2))
