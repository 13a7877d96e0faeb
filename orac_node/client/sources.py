"""What the client sends: audio sources turned into file bytes or a stream, and names checked.

:meth:`~orac_node.client.Client.transcribe` takes a :data:`FileSource`,
:meth:`~orac_node.client.Client.stream` an :data:`AudioSource`.
"""

from __future__ import annotations

import asyncio
import io
import os
import wave
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path

import numpy as np

from orac_node.audio import Samples, decode_file_bytes, float_to_s16, load_audio_file
from orac_node.wire import SAMPLE_RATE, is_valid_name

AudioSource = str | os.PathLike[str] | bytes | Samples | AsyncIterable[bytes] | Iterable[bytes]
"""What :meth:`Client.stream` takes: a file path, a file's bytes, float32 16 kHz
samples, or live s16le 16 kHz mono blocks (async, or blocking reads)."""
FileSource = str | os.PathLike[str] | bytes | Samples
"""What :meth:`Client.transcribe` takes: a file path, a file's bytes, or samples."""


def check_name(what: str, name: str) -> str:
    """``name`` if it is a valid device or topic name (one topic level), else ValueError."""
    if not is_valid_name(name):
        raise ValueError(f"{what} {name!r} must be one topic level of A-Z a-z 0-9 _ . -")
    return name


def _as_samples(array: Samples) -> Samples:
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.floating):
        raise TypeError(
            f"expected 1-D float samples at 16 kHz in [-1, 1], got {array.dtype} "
            f"with shape {array.shape}"
        )
    return array.astype(np.float32, copy=False)


def _wav_bytes(samples: Samples) -> bytes:
    """16 kHz mono s16le WAV of float samples, built in memory (what a file request carries)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(float_to_s16(_as_samples(samples)))
    return out.getvalue()


async def file_bytes(source: FileSource) -> bytes:
    """What a file request carries for ``source``: the file's bytes, or samples as a WAV."""
    if isinstance(source, bytes):
        return source
    if isinstance(source, np.ndarray):
        return _wav_bytes(source)
    return await asyncio.to_thread(Path(source).read_bytes)


async def _blocking_reads(blocks: Iterable[bytes]) -> AsyncIterator[bytes]:
    """Blocks from a blocking iterator (a sound card read), each read in a thread."""
    iterator = iter(blocks)
    while (block := await asyncio.to_thread(next, iterator, None)) is not None:
        yield block


async def stream_audio(source: AudioSource) -> Samples | AsyncIterable[bytes]:
    """Samples for a file, bytes or array (files decoded in a thread); blocks as they are."""
    if isinstance(source, str | os.PathLike):
        return await asyncio.to_thread(load_audio_file, Path(source))
    if isinstance(source, bytes):
        return await asyncio.to_thread(decode_file_bytes, source)
    if isinstance(source, np.ndarray):
        return _as_samples(source)
    if isinstance(source, AsyncIterable):
        return source
    if isinstance(source, Iterable):
        return _blocking_reads(source)
    raise TypeError(f"cannot stream a {type(source).__name__}")
