"""The plain-PCM path: cutting a device's endless s16le stream into utterances.

A dumb publisher (``arecord ... | mosquitto_pub -s``, a microcontroller) sends
bare 16 kHz mono s16le on ``audio/<device>/raw`` with no session ids and no end
flags. :class:`RawStream` listens with its own VAD; when speech starts it opens
an :class:`~orac_node.session.Utterance` seeded with the last
:data:`PREROLL_S` of audio (so the first syllable is not cut), feeds it until
it endpoints, then listens again. Silence between utterances produces nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable

import numpy as np

from orac_node.audio import Samples
from orac_node.contract import SAMPLE_RATE
from orac_node.endpoint import Endpointer, EndpointRules, EndReason
from orac_node.session import Utterance
from orac_node.vad import SpeechDetector

PREROLL_S = 0.5
"""Audio kept from before the speech onset: covers the VAD's minimum speech run
(~0.16 s) plus a soft word start the VAD scores low."""

_counter = itertools.count(1)


class RawStream:
    """Listens to one device's raw stream and opens utterances on speech."""

    def __init__(
        self,
        device: str,
        *,
        rules: EndpointRules,
        detector: SpeechDetector,
        open_utterance: Callable[[str], Utterance],
        now: float,
    ) -> None:
        self.device = device
        # While listening only the onset matters: no timeouts can fire.
        self._rules = dataclasses.replace(
            rules, no_speech_timeout_s=math.inf, max_duration_s=math.inf
        )
        self._detector = detector
        self._open = open_utterance
        self._listener = Endpointer(self._rules)
        self._preroll: Samples = np.empty(0, np.float32)
        self.utterance: Utterance | None = None
        self.last_data_at = now

    def feed(self, samples: Samples, now: float) -> Utterance | None:
        """Take raw audio; return the utterance this audio ended, if any."""
        self.last_data_at = now
        if self.utterance is not None:
            return self._continue(samples, now)
        self._preroll = np.concatenate((self._preroll, samples))[-int(PREROLL_S * SAMPLE_RATE) :]
        self._listener.update(self._detector.feed(samples))
        if not self._listener.speech_started:
            return None
        session = f"raw-{self.device}-{next(_counter)}"
        self.utterance = self._open(session)
        seed, self._preroll = self._preroll, np.empty(0, np.float32)
        self._reset_listener()
        return self._continue(seed, now)

    def _continue(self, samples: Samples, now: float) -> Utterance | None:
        utterance = self.utterance
        assert utterance is not None
        if utterance.append_samples(samples, now) is None:
            return None
        self.utterance = None
        return utterance

    def tick(self, now: float, idle_timeout_s: float) -> Utterance | None:
        """End an open utterance when the stream stopped; return it."""
        utterance = self.utterance
        if utterance is None or now - self.last_data_at < idle_timeout_s:
            return None
        utterance.incomplete = True
        utterance.end_now(EndReason.IDLE, now)
        self.utterance = None
        return utterance

    def _reset_listener(self) -> None:
        self._detector.reset()
        self._listener = Endpointer(self._rules)

    def close(self) -> SpeechDetector:
        """Stop listening; hand the detector back for reuse."""
        return self._detector
