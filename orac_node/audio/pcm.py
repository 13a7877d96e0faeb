"""PCM bytes to float32 mono samples and back: the only sample format past ingest.

Chunks are converted with numpy, never a per-sample Python loop.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from orac_node.errors import AudioDecodeError
from orac_node.wire import AudioFormat

Samples = npt.NDArray[np.float32]
"""Audio past ingest: float32 mono in [-1, 1] (16 kHz once resampled)."""

S16_SCALE = np.float32(1 / 32768)


def pcm_to_float(pcm: bytes, fmt: AudioFormat, channels: int) -> Samples:
    """Interleaved PCM bytes to float32 mono in [-1, 1] (channels averaged).

    Raises :class:`AudioDecodeError` on NaN/inf samples, which would otherwise
    poison the VAD state and the encoder.
    """
    if fmt is AudioFormat.S16LE:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) * S16_SCALE
    else:
        samples = np.frombuffer(pcm, dtype="<f4").astype(np.float32)
        if not np.isfinite(samples).all():
            raise AudioDecodeError("f32le samples contain NaN or infinity")
        np.clip(samples, -1.0, 1.0, out=samples)
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return samples


def float_to_s16(samples: Samples) -> bytes:
    """float32 [-1, 1] to s16le bytes (what satellites send): the inverse of pcm_to_float.

    Scaled by 32768 and rounded, so a 16-bit recording read as float and sent
    arrives as exactly its own samples. (Scaling by 32767 and truncating moved
    every sample by up to one step: enough for beam search to pick other words
    for one of the 20 shared commands streamed than for the same file offline.)
    """
    scaled = np.rint(np.asarray(samples, np.float32) * np.float32(32768.0))
    pcm: bytes = np.clip(scaled, -32768, 32767).astype("<i2").tobytes()
    return pcm
