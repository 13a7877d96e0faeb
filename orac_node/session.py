"""One utterance from its first chunk to its final: the :class:`Utterance` object.

All per-session state lives here, behind explicit transitions:

    RECEIVING --(end / silence / max duration / idle / ...)--> ENDPOINTED
    ENDPOINTED --(node starts the final decode)--> FINALIZING --> DONE

Audio is kept in one preallocated float32 buffer sized for the longest
allowed utterance, so appending never reallocates and a partial can decode a
zero-copy view of the first *n* samples while more audio arrives behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from orac_node.audio import Samples, StreamResampler
from orac_node.contract import SAMPLE_RATE
from orac_node.endpoint import Endpointer, EndpointRules, EndReason
from orac_node.reorder import Reorderer
from orac_node.stabilize import LocalAgreement
from orac_node.vad import SpeechDetector


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


@dataclass(frozen=True, slots=True)
class UtteranceKey:
    """Identity of a session: the device and the id the satellite chose."""

    device: str
    session: str


class Utterance:
    """Audio, VAD, endpointing, ordering and partial state of one session."""

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
        self.agreement = LocalAgreement()
        self.detector: SpeechDetector | None = detector
        self._resampler = StreamResampler(rate)
        self._buffer: Samples = np.empty(max_samples, np.float32)
        self._n = 0
        self.chunks = 0
        self.created_at = now
        self.last_chunk_at = now
        self.end_seen_at: float | None = None
        self.reason: EndReason | None = None
        self.endpoint_at: float | None = None
        self.incomplete = False
        self.partial_pending = False
        self.partial_seq = 0
        self.partial_requested_n = 0

    # -- audio ------------------------------------------------------------

    @property
    def samples(self) -> int:
        """Samples (16 kHz) assembled so far."""
        return self._n

    @property
    def audio_s(self) -> float:
        """Seconds of audio assembled so far."""
        return self._n / SAMPLE_RATE

    def audio(self) -> Samples:
        """View of the assembled audio (stays valid: later audio goes beyond it)."""
        return self._buffer[: self._n]

    @property
    def receiving(self) -> bool:
        """Whether the utterance still takes audio."""
        return self.state is UtteranceState.RECEIVING

    def accept(self, seq: int, piece: Piece, now: float) -> EndReason | None:
        """Take one chunk's audio, in any order; return a reason if it ended the utterance."""
        self.chunks += 1
        self.last_chunk_at = now
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
        reason = self._append(Piece(samples, end=False))
        return None if reason is None else self._endpoint(reason, now)

    def _append(self, piece: Piece) -> EndReason | None:
        samples = self._resampler.process(piece.samples, last=piece.end)
        room = self._buffer.size - self._n
        taken = samples[:room]
        self._buffer[self._n : self._n + taken.size] = taken
        self._n += taken.size
        vad_reason = None
        if self.detector is not None and taken.size:
            vad_reason = self.endpointer.update(self.detector.feed(taken))
        if piece.end:
            return EndReason.END  # the satellite's own endpoint wins a tie with the VAD's
        if vad_reason is not None:
            return vad_reason
        if samples.size > room or self._n == self._buffer.size:
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

    def start_final(self) -> SpeechDetector | None:
        """ENDPOINTED -> FINALIZING; hands back the VAD detector for reuse."""
        self.state = UtteranceState.FINALIZING
        detector, self.detector = self.detector, None
        return detector

    def done(self) -> None:
        """FINALIZING -> DONE."""
        self.state = UtteranceState.DONE

    # -- partials ---------------------------------------------------------

    def wants_partial(self, interval_samples: int) -> bool:
        """Whether enough new speech arrived since the last partial request."""
        return (
            self.receiving
            and not self.partial_pending
            and self.endpointer.speech_started
            and self._n - self.partial_requested_n >= interval_samples
        )

    def partial_audio(self) -> Samples | None:
        """Newest audio for a partial decode, or None once the utterance ended."""
        if not self.receiving:
            return None
        self.partial_requested_n = self._n
        return self.audio()
