"""Audio: bytes in any accepted form to float32 mono 16 kHz samples, and speech detection.

pcm.py       PCM bytes <-> float32 samples (Samples, the type every stage passes)
resample.py  any rate to 16 kHz (soxr; streaming for chunks)
files.py     whole WAV/FLAC/MP3/OGG files (ffmpeg over pipes)
vad.py       Silero VAD: one model, a cheap detector per stream
level.py     speech level and signal-to-noise ratio of a clip
"""

from orac_node.audio.files import (
    decode_file_bytes,
    decode_file_bytes_async,
    load_audio_file,
    read_wav_bytes,
)
from orac_node.audio.level import Level, speech_level
from orac_node.audio.pcm import Samples, float_to_s16, pcm_to_float
from orac_node.audio.resample import StreamResampler, resample

__all__ = [
    "Level",
    "Samples",
    "StreamResampler",
    "decode_file_bytes",
    "decode_file_bytes_async",
    "float_to_s16",
    "load_audio_file",
    "pcm_to_float",
    "read_wav_bytes",
    "resample",
    "speech_level",
]
