"""Endpointing: deciding from VAD probabilities when an utterance is over.

Pure logic in *audio* time (windows of 32 ms), so it behaves the same whether
audio arrives in real time or in a burst, and unit tests need no clock. Wall
clock conditions (idle satellite, reorder wait) live in the session.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from orac_node.audio.vad import WINDOW_S
from orac_node.config import EndpointSection
from orac_node.wire import SAMPLE_RATE

HYSTERESIS = 0.15
"""Once in speech, stay there until the probability drops below threshold minus
this: Silero's own recommendation, which keeps soft word endings from
counting as silence."""


class EndReason(StrEnum):
    """Why an utterance ended (the final's ``endpoint`` field)."""

    END = "end"  # the satellite sent end=true
    SILENCE = "silence"  # trailing silence after speech
    MAX_DURATION = "max_duration"
    IDLE = "idle"  # the satellite went quiet on the wire
    SPEECH_TIMEOUT = "speech_timeout"  # audio kept coming but nobody spoke
    SHUTDOWN = "shutdown"  # the node is stopping


@dataclass(frozen=True, slots=True)
class EndpointRules:
    """The thresholds an :class:`Endpointer` applies, in seconds."""

    threshold: float
    silence_s: float
    min_speech_s: float
    max_duration_s: float
    no_speech_timeout_s: float

    @classmethod
    def from_config(cls, section: EndpointSection) -> EndpointRules:
        """Rules from the ``endpoint`` config section."""
        return cls(
            threshold=section.vad_threshold,
            silence_s=section.silence_ms / 1000,
            min_speech_s=section.min_speech_ms / 1000,
            max_duration_s=section.max_duration_s,
            no_speech_timeout_s=section.no_speech_timeout_s,
        )

    def for_whole_file(self) -> EndpointRules:
        """The same VAD judgement for a complete recording: nothing may end it early."""
        return dataclasses.replace(
            self, silence_s=0.0, max_duration_s=math.inf, no_speech_timeout_s=math.inf
        )


class Endpointer:
    """Tracks speech and silence over a stream of window probabilities."""

    def __init__(self, rules: EndpointRules) -> None:
        self.rules = rules
        self.windows = 0
        self.speech_windows = 0
        self.speech_started = False
        self.speech_start_s: float | None = None
        self.first_speech_s: float | None = None  # start of the first window judged speech
        self.speech_end_s: float | None = None
        self._in_speech = False
        self._run = 0  # consecutive speech windows (while not yet started)
        self._silence = 0  # consecutive non-speech windows since the last speech

    @property
    def audio_s(self) -> float:
        """Audio judged so far."""
        return self.windows * WINDOW_S

    @property
    def speech_s(self) -> float:
        """Total audio judged to be speech."""
        return self.speech_windows * WINDOW_S

    def final_samples(self, tail_s: float, available: int) -> int:
        """How much of the audio a final decodes: up to ``tail_s`` after the last speech.

        The speculative final is decoded ``endpoint.speculate_ms`` into a pause; with
        ``tail_s`` equal to that, the final after the endpoint, the speculation and
        ``orac-node transcribe`` of the same recording decode the same samples, so
        they give the same text: beam search is sensitive to the exact samples (one
        step of difference per sample changed a shared command's words). More
        silence tells Whisper nothing. All of
        the audio without speech (the gate decides) or without a tail (speculation off).
        """
        if self.speech_end_s is None or tail_s <= 0:
            return available
        return min(available, round((self.speech_end_s + tail_s) * SAMPLE_RATE))

    @property
    def trailing_silence_s(self) -> float:
        """Silence since the last speech window."""
        return self._silence * WINDOW_S

    def update(self, probs: npt.NDArray[np.float32]) -> EndReason | None:
        """Feed window probabilities; return a reason once the utterance is over."""
        rules = self.rules
        min_run = max(1, round(rules.min_speech_s / WINDOW_S))
        for p in probs.tolist():
            self.windows += 1
            limit = rules.threshold - HYSTERESIS if self._in_speech else rules.threshold
            self._in_speech = p >= limit
            if self._in_speech:
                self.speech_windows += 1
                self._silence = 0
                self._run += 1
                self.speech_end_s = self.audio_s
                if self.first_speech_s is None:
                    self.first_speech_s = self.audio_s - WINDOW_S
                if not self.speech_started and self._run >= min_run:
                    self.speech_started = True
                    self.speech_start_s = self.audio_s - self._run * WINDOW_S
            else:
                self._run = 0
                self._silence += 1
            reason = self._verdict()
            if reason is not None:
                return reason
        return None

    def _verdict(self) -> EndReason | None:
        rules = self.rules
        if (
            self.speech_started
            and rules.silence_s > 0
            and self.trailing_silence_s >= rules.silence_s
        ):
            return EndReason.SILENCE
        if self.audio_s >= rules.max_duration_s:
            return EndReason.MAX_DURATION
        if not self.speech_started and self.audio_s >= rules.no_speech_timeout_s:
            return EndReason.SPEECH_TIMEOUT
        return None
