"""Bad input gets a clear error on the device's error topic and the node keeps serving."""

from __future__ import annotations

import asyncio

import msgpack
import numpy as np
import pytest

from orac_node.wire import AudioChunk, AudioFormat
from tests.conftest import AUDIO
from tests.integration.conftest import load
from tests.integration.harness import RunningNode, harness

GOOD = {
    "v": 1,
    "session": "s1",
    "seq": 0,
    "rate": 16000,
    "channels": 1,
    "format": "s16le",
    "pcm": b"\x00\x00" * 320,
    "end": False,
}


def _with(**changes: object) -> bytes:
    data = dict(GOOD, **changes)
    return msgpack.packb({k: v for k, v in data.items() if v is not ...})


BAD_CHUNKS = {
    "not msgpack": (b"\xc1\xff garbage", "bad_payload"),
    "empty payload": (b"", "bad_payload"),
    "truncated": (_with()[:-7], "bad_payload"),
    "a list, not a map": (msgpack.packb([1, 2, 3]), "bad_payload"),
    "missing pcm": (_with(pcm=...), "bad_field"),
    "seq is a string": (_with(seq="7"), "bad_field"),
    "seq is a bool": (_with(seq=True), "bad_field"),
    "huge seq": (_with(seq=2**63), "bad_field"),
    "negative seq": (_with(seq=-1), "bad_field"),
    "pcm is a str": (_with(pcm="abcd"), "bad_field"),
    "version 2": (_with(v=2), "unsupported_version"),
    "mp3 format": (_with(format="mp3"), "unsupported_format"),
    "absurd rate": (_with(rate=3), "bad_rate"),
    "huge rate": (_with(rate=10**9), "bad_rate"),
    "odd byte count": (_with(pcm=b"\x00" * 641), "bad_audio"),
    "NaN samples": (
        _with(format="f32le", pcm=np.full(160, np.nan, np.float32).tobytes()),
        "bad_audio",
    ),
    "topic with a slash": (_with(topic="a/b"), "bad_field"),
    "session with spaces": (_with(session="has space"), "bad_field"),
    "oversized": (_with(pcm=b"\x00" * (300 * 1024)), "too_large"),
}


async def test_every_malformed_chunk_gets_its_error_and_the_node_keeps_serving(
    node: RunningNode, device: str
) -> None:
    async with harness(node.url) as h:
        for payload, _ in BAD_CHUNKS.values():
            await h.mqtt.publish(f"audio/{device}/chunk", payload, qos=1)
        errors = await h.wait_errors(device, len(BAD_CHUNKS))
        # The same connection then streams a real utterance, which still transcribes.
        result = await h.session(device, load(AUDIO / "commands" / "utt013.wav"))
    assert [e.code for e in errors] == [code for _, code in BAD_CHUNKS.values()]
    assert all(e.device == device and e.message for e in errors)
    assert result.final is not None and "capital" in result.final.text.lower()
    assert node.process.poll() is None


@pytest.mark.parametrize("name", ["bad device!", "kitchen/left", ""])
async def test_device_name_that_is_not_a_plain_level_is_refused(
    node: RunningNode, name: str
) -> None:
    chunk = AudioChunk("s", 0, 16000, 1, AudioFormat.S16LE, b"\x00\x00" * 320, end=True)
    async with harness(node.url) as h:
        await h.mqtt.publish(f"audio/{name}/chunk", chunk.encode(), qos=1)
        errors = await h.wait_errors(name, 1)
    assert errors[0].code == "bad_device"
    assert errors[0].device == name
    assert not [r for r in h.results.values() if r.final]


async def test_rate_change_within_a_session_is_refused_not_mixed(
    node: RunningNode, device: str
) -> None:
    async with harness(node.url) as h:
        first = AudioChunk("mix", 0, 16000, 1, AudioFormat.S16LE, b"\x00\x00" * 320)
        second = AudioChunk("mix", 1, 48000, 1, AudioFormat.S16LE, b"\x00\x00" * 960, end=True)
        await h.mqtt.publish(f"audio/{device}/chunk", first.encode(), qos=1)
        await h.mqtt.publish(f"audio/{device}/chunk", second.encode(), qos=1)
        errors = await h.wait_errors(device, 1)
        final = await h.wait_final("mix", timeout=10)  # idle timeout closes it
    assert errors[0].code == "bad_rate" and errors[0].seq == 1
    assert final.endpoint == "idle" and final.text == ""


@pytest.mark.parametrize("payload", [b"\x01", b"\x00" * 1001])
async def test_raw_payload_of_odd_length_is_refused(
    node: RunningNode, device: str, payload: bytes
) -> None:
    async with harness(node.url) as h:
        await h.mqtt.publish(f"audio/{device}/raw", payload, qos=1)
        errors = await h.wait_errors(device, 1)
        await asyncio.sleep(0.2)
    assert errors[0].code == "bad_audio"
