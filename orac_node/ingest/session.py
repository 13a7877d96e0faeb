"""One utterance from its first chunk to its final: the :class:`Utterance` object.

Everything ingest knows about a session lives here, behind explicit transitions:

    RECEIVING --(end / silence / max duration / idle / ...)--> ENDPOINTED
    ENDPOINTED --(the pipeline starts the final decode)--> FINALIZING --> DONE

Audio is kept in one float32 buffer that starts at :data:`INITIAL_BUFFER_S`
and doubles when full (up to the longest allowed utterance), so a short
command costs ~320 KB rather than the 1.9 MB of a 30 s buffer. :meth:`Utterance.audio`
is a zero-copy view: a partial decodes one while more audio arrives behind it;
when the buffer grows, the view keeps the old one alive until the decode is done.
What the transcription does with the utterance (partials, speculative finals)
is the pipeline's state, not this object's (pipeline/progress.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from orac_node.audio import Samples, StreamResampler
from orac_node.audio.vad import SpeechDetector
from orac_node.ingest.endpoint import Endpointer, EndpointRules, EndReason
from orac_node.ingest.pace import Pace
from orac_node.ingest.reorder import Reorderer
from orac_node.wire import SAMPLE_RATE

INITIAL_BUFFER_S = 5.0
"""Covers most voice commands without ever growing."""


class UtteranceState(StrEnum):
    """Life cycle of an utterance."""

    RECEIVING = "receiving"
    ENDPOINTED = "endpointed"
    FINALIZING = "finalizing"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Piece:
    """One chunk's audio, decoded but not yet resampled, waiting for its turn."""

    samples: Samples
    end: bool


def log_fields(device: str, session: str | None = None) -> dict[str, object]:
    """``extra=`` for a log call about a device's session: JSON log keys ``device``, ``session``."""
    fields: dict[str, object] = {"device": device}
    if session is not None:
        fields["session"] = session
    return fields


@dataclass(frozen=True, slots=True)
class UtteranceKey:
    """Identity of a session: the device and the id the satellite chose."""

    device: str
    session: str

    def log_fields(self) -> dict[str, object]:
        """``extra=`` for log calls about this session."""
        return log_fields(self.device, self.session)


class Utterance:
    """Audio, VAD, endpointing and ordering of one session."""

    def __init__(
        self,
        key: UtteranceKey,
        *,
        topic: str,
        language: str,
        rate: int,
        rules: EndpointRules,
        detector: SpeechDetector,
        max_samples: int,
        reorder_window: int,
        now: float,
    ) -> None:
        self.key = key
        self.topic = topic
        self.language = language
        self.rate = rate
        self.state = UtteranceState.RECEIVING
        self.endpointer = Endpointer(rules)
        self.reorderer: Reorderer[Piece] = Reorderer(reorder_window)
        self.detector: SpeechDetector | None = detector
        self._resampler = StreamResampler(rate)
        self._max_samples = max_samples
        self._buffer: Samples = np.empty(
            min(max_samples, int(INITIAL_BUFFER_S * SAMPLE_RATE)), np.float32
        )
        self._n = 0
        self.chunks = 0
        self.created_at = now
        self.last_chunk_at = now
        self._pace = Pace(now)
        self.end_seen_at: float | None = None
        self.reason: EndReason | None = None
        self.endpoint_at: float | None = None
        self.incomplete = False
        self.prompt = ""
        """Vocabulary the client sent for this session (a Wyoming client's names and terms),
        decoded after the topic's and Core's prompt (pipeline.prompt_for)."""

    # -- audio ------------------------------------------------------------

    @property
    def samples(self) -> int:
        """Samples (16 kHz) assembled so far."""
        return self._n

    @property
    def audio_s(self) -> float:
        """Seconds of audio assembled so far."""
        return self._n / SAMPLE_RATE

    @property
    def room_s(self) -> float:
        """Seconds of audio it can still take before ``max_duration_s`` ends it."""
        return (self._max_samples - self._n) / SAMPLE_RATE

    def audio(self, start: int = 0) -> Samples:
        """View of the assembled audio from sample ``start``.

        It stays valid while more audio arrives: later audio goes beyond it.
        """
        return self._buffer[start : self._n]

    def catching_up(self, now: float) -> bool:
        """Whether the audio arrives faster than real time (a burst, a recording): pace.py."""
        return self._pace.ahead(now, self._n)

    @property
    def receiving(self) -> bool:
        """Whether the utterance still takes audio."""
        return self.state is UtteranceState.RECEIVING

    def accept(self, seq: int, piece: Piece, now: float) -> EndReason | None:
        """Take one chunk's audio, in any order; return a reason if it ended the utterance."""
        self.chunks += 1
        self.last_chunk_at = now
        self._pace.arrived(now, self._n)
        if piece.end:
            self.end_seen_at = now
        for ready in self.reorderer.push(seq, piece):
            reason = self._append(ready)
            if reason is not None:
                at = self.end_seen_at if ready.end and self.end_seen_at is not None else now
                return self._endpoint(reason, at)
        return None

    def append_samples(self, samples: Samples, now: float) -> EndReason | None:
        """Append in-order 16 kHz audio (raw and file paths, no seq numbers)."""
        self.last_chunk_at = now
        self._pace.arrived(now, self._n)
        reason = self._append(Piece(samples, end=False))
        return None if reason is None else self._endpoint(reason, now)

    def _append(self, piece: Piece) -> EndReason | None:
        samples = self._resampler.process(piece.samples, last=piece.end)
        room = self._max_samples - self._n
        taken = samples[:room]
        if self._n + taken.size > self._buffer.size:
            grown = np.empty(
                min(self._max_samples, max(2 * self._buffer.size, self._n + taken.size)),
                np.float32,
            )
            grown[: self._n] = self._buffer[: self._n]
            self._buffer = grown
        self._buffer[self._n : self._n + taken.size] = taken
        self._n += taken.size
        vad_reason = None
        if self.detector is not None and taken.size:
            vad_reason = self.endpointer.update(self.detector.feed(taken))
        if piece.end:
            return EndReason.END  # the satellite's own endpoint wins a tie with the VAD's
        if vad_reason is not None:
            return vad_reason
        if samples.size > room or self._n == self._max_samples:
            return EndReason.MAX_DURATION
        return None

    # -- clocks -----------------------------------------------------------

    def tick(self, now: float, *, idle_timeout_s: float, reorder_wait_s: float) -> EndReason | None:
        """Wall-clock endpoints: a missing chunk after end, or a vanished satellite."""
        if not self.receiving:
            return None
        if self.end_seen_at is not None and now - self.end_seen_at >= reorder_wait_s:
            return self._flush(EndReason.END, self.end_seen_at)
        if now - self.last_chunk_at >= idle_timeout_s:
            self.incomplete = True
            return self._flush(EndReason.IDLE, now)
        return None

    def _flush(self, reason: EndReason, at: float) -> EndReason:
        """Give up on missing chunks: append what is held, holes become gaps."""
        for piece in self.reorderer.flush():
            found = self._append(piece)
            if found is not None and found is not EndReason.END:
                reason = found
                break
        return self._endpoint(reason, at)

    def end_now(self, reason: EndReason, now: float) -> EndReason:
        """Endpoint immediately (node shutdown, file input)."""
        return self._flush(reason, now)

    # -- transitions ------------------------------------------------------

    def _endpoint(self, reason: EndReason, at: float) -> EndReason:
        self.state = UtteranceState.ENDPOINTED
        self.reason = reason
        self.endpoint_at = at
        if self.reorderer.gaps:
            self.incomplete = True
        return reason

    def start_final(self) -> None:
        """ENDPOINTED -> FINALIZING; the VAD is no longer needed."""
        self.state = UtteranceState.FINALIZING
        self.detector = None

    def done(self) -> None:
        """FINALIZING -> DONE."""
        self.state = UtteranceState.DONE

    # -- speech ------------------------------------------------------------

    def paused(self, after_s: float) -> bool:
        """Speech started and has now been silent for at least ``after_s``."""
        endpointer = self.endpointer
        return endpointer.speech_started and endpointer.trailing_silence_s >= after_s
