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
import math
import uuid
from collections.abc import Callable

import numpy as np

from orac_node.audio import Samples
from orac_node.audio.vad import SpeechDetector
from orac_node.ingest.endpoint import Endpointer, EndpointRules
from orac_node.ingest.session import Utterance
from orac_node.wire import SAMPLE_RATE

PREROLL_S = 0.5
"""Audio kept from before the speech onset: covers the VAD's minimum speech run
(~0.16 s) plus a soft word start the VAD scores low."""


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
        """Take raw audio; return the utterance it went to (None while listening).

        The returned utterance may have just endpointed; the next call then
        starts listening again.
        """
        self.last_data_at = now
        if self.utterance is not None and not self.utterance.receiving:
            self.utterance = None  # it ended (silence, max duration, idle): listen again
        if self.utterance is not None:
            self.utterance.append_samples(samples, now)
            return self.utterance
        self._preroll = np.concatenate((self._preroll, samples))[-int(PREROLL_S * SAMPLE_RATE) :]
        self._listener.update(self._detector.feed(samples))
        if not self._listener.speech_started:
            return None
        session = f"raw-{self.device}-{uuid.uuid4().hex[:8]}"
        self.utterance = self._open(session)
        seed, self._preroll = self._preroll, np.empty(0, np.float32)
        self._detector.reset()
        self._listener = Endpointer(self._rules)
        self.utterance.append_samples(seed, now)
        return self.utterance
