"""Resampling to 16 kHz with soxr.

The streaming resampler keeps filter state across chunks, so a 44.1 kHz stream
has no clicks at chunk borders.
"""

from __future__ import annotations

import numpy as np
import soxr

from orac_node.audio.pcm import Samples
from orac_node.wire import SAMPLE_RATE


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
