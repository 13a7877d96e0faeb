"""Turning bytes into float32 mono 16 kHz samples, the only format past ingest.

Chunks are converted with numpy (never a per-sample Python loop) and resampled
with soxr, whose streaming resampler keeps filter state across chunks so a
44.1 kHz stream has no clicks at chunk borders. Whole files go through ffmpeg
over pipes (no temp files), which also covers FLAC, MP3 and OGG.
"""

from __future__ import annotations

import asyncio
import io
import math
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soxr

from orac_node.contract import MAX_RATE, MIN_RATE, SAMPLE_RATE, AudioFormat
from orac_node.errors import AudioDecodeError

Samples = npt.NDArray[np.float32]

_S16_SCALE = np.float32(1 / 32768)


def pcm_to_float(pcm: bytes, fmt: AudioFormat, channels: int) -> Samples:
    """Interleaved PCM bytes to float32 mono in [-1, 1] (channels averaged).

    Raises :class:`AudioDecodeError` on NaN/inf samples, which would otherwise
    poison the VAD state and the encoder.
    """
    if fmt is AudioFormat.S16LE:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) * _S16_SCALE
    else:
        samples = np.frombuffer(pcm, dtype="<f4").astype(np.float32)
        if not np.isfinite(samples).all():
            raise AudioDecodeError("f32le samples contain NaN or infinity")
        np.clip(samples, -1.0, 1.0, out=samples)
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return samples


class StreamResampler:
    """Resamples one stream to 16 kHz chunk by chunk (identity at 16 kHz)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._stream = (
            None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, "float32")
        )

    def process(self, samples: Samples, *, last: bool = False) -> Samples:
        """Resample the next piece; ``last`` flushes the filter's tail."""
        if self._stream is None:
            return samples
        out: Samples = self._stream.resample_chunk(samples, last=last)
        return out


def resample(samples: Samples, rate: int) -> Samples:
    """Resample a whole signal to 16 kHz."""
    if rate == SAMPLE_RATE:
        return samples
    out: Samples = soxr.resample(samples, rate, SAMPLE_RATE).astype(np.float32, copy=False)
    return out


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
        samples = np.frombuffer(frames, "<i2").astype(np.float32) * _S16_SCALE
    elif width == 4:
        samples = np.frombuffer(frames, "<i4").astype(np.float32) / np.float32(2**31)
    elif width == 1:
        samples = (np.frombuffer(frames, np.uint8).astype(np.float32) - 128) / np.float32(128)
    else:
        raise AudioDecodeError(f"unsupported WAV sample width {width}")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return resample(samples, rate)


def _ffmpeg_command(max_s: float | None) -> list[str]:
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
        "pipe:0",
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


def float_to_s16(samples: Samples) -> bytes:
    """float32 [-1, 1] to s16le bytes (what satellites send)."""
    clipped = np.clip(samples, -1.0, 1.0) * 32767.0
    return clipped.astype("<i2").tobytes()
