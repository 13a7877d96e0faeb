"""Whisper's mel filterbank, computed here because CTranslate2 model folders lack it.

A ggml file carries the filterbank that turns a 400-point FFT into Whisper's
log-mel input; whisper.cpp uses it as stored. OpenAI ships it as
``mel_filters.npz``, made with ``librosa.filters.mel(sr=16000, n_fft=400,
n_mels=80 or 128)``: Slaney's mel scale (linear below 1 kHz, logarithmic above)
and Slaney's area normalisation (each triangle scaled to unit area in Hz, so
wide high-frequency bands do not dominate). This module computes the same
matrix with numpy alone, so converting a model needs neither librosa nor torch.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000
"""Whisper's audio is 16 kHz; the filters span 0 Hz to its Nyquist frequency, 8 kHz."""
N_FFT = 400
"""Whisper's STFT window: 25 ms at 16 kHz, which gives 1 + 400 // 2 = 201 frequency bins."""
WHISPER_MEL_BANDS = (80, 128)
"""80 bands for every Whisper model up to large-v2; 128 for large-v3 and its turbo variant."""

# Slaney's mel scale (Auditory Toolbox, 1998), which librosa uses unless htk=True:
_LINEAR_HZ_PER_MEL = 200.0 / 3
"""Below the break, 1 mel is 200/3 Hz: the scale is linear there."""
_BREAK_HZ = 1000.0
"""Where the scale turns logarithmic."""
_BREAK_MEL = _BREAK_HZ / _LINEAR_HZ_PER_MEL
"""The break on the mel axis: 15 mel."""
_LOG_MEL_PER_E = 27.0 / np.log(6.4)
"""Above the break, 27 mel per factor of 6.4 in frequency (1 kHz to 6.4 kHz is 27 mel)."""

FloatMatrix = npt.NDArray[np.float32]


def hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Frequencies in Hz to Slaney mels."""
    linear = hz / _LINEAR_HZ_PER_MEL
    above = _BREAK_MEL + np.log(np.maximum(hz, _BREAK_HZ) / _BREAK_HZ) * _LOG_MEL_PER_E
    return np.where(hz >= _BREAK_HZ, above, linear)


def mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney mels to frequencies in Hz: the inverse of :func:`hz_to_mel`."""
    linear = mel * _LINEAR_HZ_PER_MEL
    above = _BREAK_HZ * np.exp((np.maximum(mel, _BREAK_MEL) - _BREAK_MEL) / _LOG_MEL_PER_E)
    return np.where(mel >= _BREAK_MEL, above, linear)


def mel_filters(n_mels: int, *, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT) -> FloatMatrix:
    """The ``(n_mels, 1 + n_fft // 2)`` float32 filterbank, as librosa computes it.

    Each band is a triangle over the FFT bins between two neighbouring mel
    points, peaking at the mel point between them, scaled by 2 / (its width in
    Hz). The triangles are computed in float64 and rounded to float32 before
    that scaling and again after it, as librosa does (it fills a float32 array,
    then scales it in place): rounding once instead moves some weights by one
    float32 step, enough to break bit-identical output.
    """
    if n_mels < 1 or n_fft < 2 or sample_rate < 1:
        raise ValueError(f"no filterbank for n_mels={n_mels}, n_fft={n_fft}, sr={sample_rate}")
    bins_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    top_mel = hz_to_mel(np.array(sample_rate / 2.0))
    # n_mels triangles need n_mels + 2 corners: each band's left edge, peak and right edge.
    corners_hz = mel_to_hz(np.linspace(0.0, float(top_mel), n_mels + 2))
    widths_hz = np.diff(corners_hz)
    distance = corners_hz[:, np.newaxis] - bins_hz[np.newaxis, :]
    rising = -distance[:-2] / widths_hz[:-1, np.newaxis]
    falling = distance[2:] / widths_hz[1:, np.newaxis]
    peaks = np.minimum(rising, falling)
    # Zero outside each triangle, always +0.0: the first bin's rising edge is -0/width = -0.0,
    # which librosa 0.11's np.maximum(0, -0.0) keeps; OpenAI's mel_filters.npz (and so every
    # ggml file) has +0.0 there. Numerically the same, but a file would differ by one bit.
    triangles = np.where(peaks > 0.0, peaks, 0.0).astype(np.float32)
    area_norm = 2.0 / (corners_hz[2:] - corners_hz[:-2])
    return (triangles * area_norm[:, np.newaxis]).astype(np.float32)
