"""Whole audio files to float32 mono 16 kHz: WAV natively, the rest through ffmpeg.

ffmpeg runs over pipes (no temp files), which also covers FLAC, MP3 and OGG. A
file's header is never trusted for its size: decoding stops at ``max_s``.
"""

from __future__ import annotations

import asyncio
import io
import math
import shutil
import subprocess
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from orac_node.audio.pcm import S16_SCALE, Samples
from orac_node.audio.resample import resample
from orac_node.errors import AudioDecodeError
from orac_node.wire import MAX_RATE, MIN_RATE, SAMPLE_RATE


def read_wav_bytes(data: bytes, max_s: float | None = None) -> Samples:
    """Decode a PCM WAV (8/16/32-bit int) held in memory, any channel count.

    Rates outside the contract's 8-192 kHz are refused (the caller may hand the
    file to ffmpeg): resampling a header's 1 Hz to 16 kHz would multiply the
    samples by 16,000. ``max_s`` stops reading after that much audio.
    """
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            if not MIN_RATE <= rate <= MAX_RATE:
                raise AudioDecodeError(f"WAV rate {rate} Hz outside {MIN_RATE}-{MAX_RATE}")
            wanted = wav.getnframes() if max_s is None else math.ceil(max_s * rate)
            frames = wav.readframes(min(wav.getnframes(), wanted))
    except (wave.Error, EOFError) as exc:
        raise AudioDecodeError(f"not a PCM WAV file: {exc}") from exc
    frames = frames[: len(frames) - len(frames) % (width * channels)]  # a truncated last frame
    if width == 2:
        samples = np.frombuffer(frames, "<i2").astype(np.float32) * S16_SCALE
    elif width == 4:
        samples = np.frombuffer(frames, "<i4").astype(np.float32) / np.float32(2**31)
    elif width == 1:
        samples = (np.frombuffer(frames, np.uint8).astype(np.float32) - 128) / np.float32(128)
    else:
        raise AudioDecodeError(f"unsupported WAV sample width {width}")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return resample(samples, rate)


def _ffmpeg_command(max_s: float | None, source: str = "pipe:0") -> list[str]:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioDecodeError("ffmpeg is not installed (needed for non-WAV audio)")
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        source,
        "-f",
        "f32le",
        "-ac",
        "1",
        "-ar",
        str(SAMPLE_RATE),
        # Output duration cap: what a file claims (1 Hz, hours) cannot fill memory.
        *([] if max_s is None else ["-t", f"{max_s:g}"]),
        "pipe:1",
    ]


def _is_wav(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WAVE"


def decode_file_bytes(
    data: bytes, timeout_s: float = 60.0, *, max_s: float | None = None
) -> Samples:
    """Decode any audio file held in memory (blocking: call from a thread).

    ``max_s``: decode at most this many seconds (the rest is not read).
    """
    if _is_wav(data):
        try:
            return read_wav_bytes(data, max_s)
        except AudioDecodeError:
            pass  # e.g. a float or compressed WAV: ffmpeg knows it
    try:
        done = subprocess.run(
            _ffmpeg_command(max_s), input=data, capture_output=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise AudioDecodeError(f"ffmpeg took longer than {timeout_s} s") from exc
    return _ffmpeg_output(done.returncode, done.stdout, done.stderr)


async def decode_file_bytes_async(
    data: bytes, timeout_s: float = 60.0, *, max_s: float | None = None
) -> Samples:
    """Decode any audio file held in memory without blocking the event loop."""
    if _is_wav(data):
        try:
            return await asyncio.to_thread(read_wav_bytes, data, max_s)
        except AudioDecodeError:
            pass
    proc = await asyncio.create_subprocess_exec(
        *_ffmpeg_command(max_s),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout_s):
            stdout, stderr = await proc.communicate(data)
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise AudioDecodeError(f"ffmpeg took longer than {timeout_s} s") from exc
    return await asyncio.to_thread(_ffmpeg_output, proc.returncode or 0, stdout, stderr)


def _ffmpeg_output(returncode: int, stdout: bytes, stderr: bytes) -> Samples:
    if returncode != 0:
        reason = stderr.decode(errors="replace").strip().splitlines()
        raise AudioDecodeError(f"ffmpeg could not decode it: {reason[-1] if reason else '?'}")
    usable = len(stdout) - len(stdout) % 4
    samples = np.frombuffer(stdout[:usable], "<f4").astype(np.float32)
    if samples.size == 0:
        raise AudioDecodeError("the file holds no audio")
    return samples


def load_audio_file(path: Path) -> Samples:
    """Read a file from disk as float32 mono 16 kHz (WAV natively, others via ffmpeg)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AudioDecodeError(f"cannot read {path}: {exc}") from exc
    return decode_file_bytes(data)


STREAM_BLOCK_S = 10.0
"""What :func:`stream_audio_file` reads at a time: a small fraction of a long
recording, large enough that the pipe is not read in slivers."""


async def stream_audio_file(path: Path) -> AsyncIterator[Samples]:
    """A recording of any length and format, decoded by ffmpeg a block at a time.

    For jobs (an hour-long meeting): memory holds one block, not the file.
    """
    if not await asyncio.to_thread(path.is_file):
        raise AudioDecodeError(f"{path}: no such file")
    proc = await asyncio.create_subprocess_exec(
        *_ffmpeg_command(None, str(path)),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    block = int(STREAM_BLOCK_S * SAMPLE_RATE) * 4
    produced = False
    try:
        while data := await _read_block(proc.stdout, block):
            produced = True
            yield np.frombuffer(data[: len(data) - len(data) % 4], "<f4").astype(np.float32)
        stderr = await proc.stderr.read()
        if await proc.wait() != 0:
            reason = stderr.decode(errors="replace").strip().splitlines()
            raise AudioDecodeError(
                f"ffmpeg could not decode {path}: {reason[-1] if reason else '?'}"
            )
        if not produced:
            raise AudioDecodeError(f"{path} holds no audio")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _read_block(stream: asyncio.StreamReader, size: int) -> bytes:
    """``size`` bytes, fewer only at the end of the stream."""
    try:
        return await stream.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        return exc.partial
