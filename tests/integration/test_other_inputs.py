"""The plain-PCM and whole-file paths, and chunk streams that need fixing up."""

from __future__ import annotations

import asyncio
import io
import random
import subprocess
import time
import wave

import numpy as np
import pytest
import soxr

from orac_node.audio import float_to_s16
from orac_node.wire import SAMPLE_RATE, AudioChunk, AudioFormat, AudioKind, audio_topic
from tests.conftest import AUDIO
from tests.integration.accuracy import word_error_rate
from tests.integration.conftest import load, load_refs
from tests.integration.harness import RunningNode, harness

LONG_FILE = [
    (path.name, ref)
    for path, ref in load_refs("speech")
    if path.name
    in {"jfk.wav", "ps_librivox_0870.wav", "ps_librivox_0880.wav", "ps_librivox_0920.wav"}
] * 2
"""Read speech, about 70 s with the pauses between: three windows."""

COMMAND = AUDIO / "commands" / "utt009.wav"  # "open the curtains in the lounge"


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)


async def test_raw_stream_is_cut_into_utterances_by_vad(node: RunningNode, device: str) -> None:
    """Two commands in one endless raw stream become two finals; the silence becomes nothing."""
    first, second = load(COMMAND), load(AUDIO / "commands" / "utt014.wav")  # "pause the music"
    stream = np.concatenate((_silence(1.0), first, _silence(1.5), second, _silence(1.5)))
    pcm = float_to_s16(stream)
    step = SAMPLE_RATE // 10 * 2  # 100 ms per publish, like `arecord | mosquitto_pub`
    async with harness(node.url) as h:
        for i in range(0, len(pcm), step):
            await h.mqtt.publish(audio_topic(device, AudioKind.RAW), pcm[i : i + step])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            finals = [r.final for r in h.results.values() if r.final and r.final.device == device]
            if len(finals) == 2:
                break
            await asyncio.sleep(0.1)
    assert len(finals) == 2, finals
    assert all(f.session.startswith(f"raw-{device}-") for f in finals)
    assert all(f.endpoint == "silence" for f in finals)
    texts = [f.text.lower() for f in finals]
    assert "curtains" in texts[0] and "music" in texts[1]


async def test_raw_silence_publishes_nothing(node: RunningNode, device: str) -> None:
    pcm = float_to_s16(_silence(3.0))
    async with harness(node.url) as h:
        for i in range(0, len(pcm), 3200):
            await h.mqtt.publish(audio_topic(device, AudioKind.RAW), pcm[i : i + 3200])
        await asyncio.sleep(1.5)
    assert not [r for r in h.results.values() if r.final and r.final.device == device]
    assert not h.errors[device]


@pytest.mark.parametrize("codec", ["flac", "ogg", "mp3", "wav"])
async def test_whole_file_in_one_message(node: RunningNode, device: str, codec: str) -> None:
    encoded = subprocess.run(  # noqa: ASYNC221 - test setup, before any traffic
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(COMMAND), "-f", codec, "pipe:1"],
        capture_output=True,
        check=True,
    ).stdout
    async with harness(node.url) as h:
        await h.mqtt.publish(audio_topic(device, AudioKind.FILE), encoded, qos=1)
        deadline = time.monotonic() + 20
        while not any(r.final and r.final.device == device for r in h.results.values()):
            assert time.monotonic() < deadline, "no final for the file"
            await asyncio.sleep(0.1)
    final = next(r.final for r in h.results.values() if r.final and r.final.device == device)
    assert final.session.startswith("file-")
    assert "curtains" in final.text.lower()


async def test_a_file_longer_than_a_window_is_stitched_on_its_timeline(
    node: RunningNode, device: str
) -> None:
    """58 s of read speech: decoded in windows cut at pauses, stitched on one timeline."""
    clips = [load(AUDIO / "speech" / name) for name, _ in LONG_FILE]
    pause = np.zeros(SAMPLE_RATE // 2, np.float32)
    audio = np.concatenate([piece for clip in clips for piece in (clip, pause)])
    wav = io.BytesIO()
    with wave.open(wav, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(float_to_s16(audio))
    async with harness(node.url) as h:
        await h.mqtt.publish(audio_topic(device, AudioKind.FILE), wav.getvalue(), qos=1)
        deadline = time.monotonic() + 60
        while not any(r.final and r.final.device == device for r in h.results.values()):
            assert time.monotonic() < deadline, "no final for the file"
            await asyncio.sleep(0.1)
    final = next(r.final for r in h.results.values() if r.final and r.final.device == device)
    assert final.audio_s == pytest.approx(audio.size / SAMPLE_RATE, abs=0.05)
    assert word_error_rate([" ".join(ref for _, ref in LONG_FILE)], [final.text]) < 0.1
    ends = [segment.end for segment in final.segments]
    assert ends == sorted(ends) and ends[-1] > 50  # one timeline, well past the first window
    assert final.words[-1].end == pytest.approx(final.audio_s, abs=2.0)


async def test_undecodable_file_gets_an_error(node: RunningNode, device: str) -> None:
    async with harness(node.url) as h:
        await h.mqtt.publish(audio_topic(device, AudioKind.FILE), b"this is no audio" * 64, qos=1)
        errors = await h.wait_errors(device, 1, timeout=20)
    assert errors[0].code == "decode_failed"


async def test_out_of_order_duplicate_and_missing_chunks(node: RunningNode, device: str) -> None:
    """Shuffled within the reorder window, some sent twice, one lost: transcribed, counted."""
    samples = load(COMMAND)
    pcm = float_to_s16(samples)
    step = 640
    pieces = [pcm[i : i + step] for i in range(0, len(pcm), step)]
    chunks = [
        AudioChunk(
            "shuffled", seq, SAMPLE_RATE, 1, AudioFormat.S16LE, p, end=seq == len(pieces) - 1
        )
        for seq, p in enumerate(pieces)
    ]
    lost = 40
    order = [c for c in chunks if c.seq != lost]
    rng = random.Random(3)
    for i in range(0, len(order) - 4, 4):  # swap within blocks of 4 (< window of 16)
        block = order[i : i + 4]
        rng.shuffle(block)
        order[i : i + 4] = block
    order[-1], order[-2] = order[-2], order[-1]  # end arrives before its predecessor
    order.insert(20, chunks[5])
    order.insert(30, chunks[10])
    async with harness(node.url) as h:
        for chunk in order:
            await h.mqtt.publish(audio_topic(device), chunk.encode(), qos=1)
        final = await h.wait_final("shuffled")
    assert "curtains" in final.text.lower()
    assert final.gaps == 1
    assert final.duplicates == 2
    assert final.chunks == len(order)
    assert final.incomplete is True


@pytest.mark.parametrize(
    ("rate", "channels", "fmt"),
    [(44100, 2, AudioFormat.S16LE), (48000, 1, AudioFormat.F32LE), (8000, 1, AudioFormat.S16LE)],
)
async def test_other_rates_and_channel_counts_are_converted(
    node: RunningNode, device: str, rate: int, channels: int, fmt: AudioFormat
) -> None:
    samples = soxr.resample(load(COMMAND), SAMPLE_RATE, rate).astype(np.float32)
    interleaved = np.repeat(samples, channels) if channels > 1 else samples
    pcm = (
        float_to_s16(interleaved)
        if fmt is AudioFormat.S16LE
        else interleaved.astype("<f4").tobytes()
    )
    frame = fmt.sample_width * channels
    step = rate // 50 * frame  # 20 ms
    pieces = [pcm[i : i + step] for i in range(0, len(pcm), step)]
    async with harness(node.url) as h:
        for seq, p in enumerate(pieces):
            chunk = AudioChunk("resampled", seq, rate, channels, fmt, p, end=seq == len(pieces) - 1)
            await h.mqtt.publish(audio_topic(device), chunk.encode(), qos=1)
        final = await h.wait_final("resampled")
    assert "curtain" in final.text.lower()  # 8 kHz telephone band hears "curtain"
    assert abs(final.audio_s - samples.size / rate) < 0.05
