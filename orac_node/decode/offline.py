"""Transcribing a whole recording in-process, with the node's own rules.

``orac-node transcribe FILE`` and the tests' offline baseline use this: the
same engine parameters, VAD and non-speech gate as a streamed session, minus
the broker, so "streaming is as accurate as offline" is a like-for-like claim.
"""

from __future__ import annotations

from dataclasses import dataclass

from orac_node.audio import Samples
from orac_node.audio.vad import SileroVad, speech_probabilities
from orac_node.config import NodeConfig
from orac_node.decode.decoding import DecodeOptions, Decoding
from orac_node.decode.engine import WhisperEngine
from orac_node.decode.gate import GateRules, check_audio, judge, strip_annotations, verify_window
from orac_node.ingest.endpoint import Endpointer, EndpointRules
from orac_node.wire import SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class OfflineResult:
    """Text (empty when rejected), the rejection reason and the raw decoding."""

    text: str
    rejected: str | None
    speech_s: float
    audio_s: float
    decoding: Decoding | None


def measure_speech(samples: Samples, config: NodeConfig, vad: SileroVad) -> Endpointer:
    """The speech in a recording, judged exactly as a session judges it."""
    endpointer = Endpointer(EndpointRules.from_config(config.endpoint).for_whole_file())
    endpointer.update(speech_probabilities(samples, vad))
    return endpointer


def transcribe(
    engine: WhisperEngine,
    samples: Samples,
    config: NodeConfig,
    vad: SileroVad | None = None,
    *,
    prompt: str = "",
) -> OfflineResult:
    """Gate, decode and judge one recording like the node's final does.

    ``prompt`` is whisper's initial prompt, as context from Core would be.
    """
    speech = measure_speech(samples, config, vad or SileroVad())
    speech_s = speech.speech_s
    gate = GateRules.from_config(config.gate)
    audio_s = samples.size / SAMPLE_RATE
    rejection = check_audio(speech_s, gate)
    if rejection is not None:
        return OfflineResult("", str(rejection), speech_s, audio_s, None)
    options = DecodeOptions.final(config.decode, prompt=prompt, speech_s=speech_s)
    # what a streamed session's final decodes: up to the speculation's pause (endpoint.py)
    audio = samples[: speech.final_samples(config.endpoint.speculate_ms / 1000, samples.size)]
    decoding = engine.decode(audio, options)
    check = None
    window = verify_window(
        speech_s, speech.first_speech_s, speech.speech_end_s, audio.size / SAMPLE_RATE
    )
    if window is not None and strip_annotations(decoding.text):
        start, end = (round(s * SAMPLE_RATE) for s in window)
        check = engine.decode(audio[start:end], options).text
    text, rejected = judge(decoding.text, decoding.confidence, gate, check=check)
    return OfflineResult(text, rejected, speech_s, audio_s, decoding)
