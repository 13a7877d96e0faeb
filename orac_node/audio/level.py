"""How loud the speech in a clip is, and how far above the room's noise.

A room group's arbitration (pipeline/arbitration.py) asks which of several
satellites heard the same words best: the nearest one hears them louder and
further above the room's noise. Both figures come from short frames' energy:
the loud frames are the speech, the quiet ones the room between words, so no
VAD run is needed and the result does not depend on where the session's
endpoint cut the audio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orac_node.audio.pcm import Samples
from orac_node.wire import SAMPLE_RATE

FRAME_S = 0.02
"""20 ms frames: short enough to find the gaps between words, long enough that
one frame's energy is not a single waveform peak."""
SPEECH_PERCENTILE = 90.0
"""The speech level is the 90th percentile of the frames' energy: the voiced
frames of a command, robust to a click or a clipped peak."""
NOISE_PERCENTILE = 10.0
"""The noise floor is the 10th percentile: the pauses before, between and after
the words that every session has (a satellite streams from the wake word on)."""
FLOOR_DB = -100.0
"""Energy of digital silence, so that an all-zero frame gives a number (16-bit
audio cannot go below about -96 dBFS anyway)."""


@dataclass(frozen=True, slots=True)
class Level:
    """Speech level and signal-to-noise ratio of a clip, in dB."""

    level_db: float
    """Loudness of the speech, dB relative to full scale (0 is the loudest possible)."""
    snr_db: float
    """How far the speech stands above the quiet frames."""


def speech_level(samples: Samples) -> Level | None:
    """The clip's :class:`Level`; None for a clip shorter than two frames."""
    frame = int(FRAME_S * SAMPLE_RATE)
    frames = samples.size // frame
    if frames < 2:
        return None
    power = np.square(samples[: frames * frame].reshape(frames, frame), dtype=np.float64)
    energy_db = 10.0 * np.log10(power.mean(axis=1) + 10.0 ** (FLOOR_DB / 10.0))
    speech, noise = np.percentile(energy_db, [SPEECH_PERCENTILE, NOISE_PERCENTILE])
    return Level(round(float(speech), 1), round(float(speech - noise), 1))
