"""One utterance from its first chunk to its final: the :class:`Utterance` object.

All per-session state lives here, behind explicit transitions:

    RECEIVING --(end / silence / max duration / idle / ...)--> ENDPOINTED
    ENDPOINTED --(node starts the final decode)--> FINALIZING --> DONE

Audio is kept in one float32 buffer that starts at :data:`INITIAL_BUFFER_S`
and doubles when full (up to the longest allowed utterance), so a short
command costs ~320 KB rather than the 1.9 MB of a 30 s buffer. A partial
decodes a zero-copy view of the samples from ``partial_offset`` (the start of
the partial window, moved forward by buffer trimming, see stabilize.py) to
*n* while more audio arrives behind it; when the buffer grows, the view keeps
the old one alive until the decode is done.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from orac_node.audio import Samples, StreamResampler
from orac_node.contract import SAMPLE_RATE
from orac_node.endpoint import Endpointer, EndpointRules, EndReason
from orac_node.reorder import Reorderer
from orac_node.scheduler import FinalDecoding
from orac_node.stabilize import LocalAgreement
from orac_node.vad import SpeechDetector


@dataclass
class Speculation:
    """A final decoded early, at a pause, valid while no new speech follows."""

    speech_windows: int  # the endpointer's count when it started
    task: asyncio.Task[tuple[str, FinalDecoding]]  # (model, decoding)


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
        self._max_samples = max_samples
        self._buffer: Samples = np.empty(
            min(max_samples, int(INITIAL_BUFFER_S * SAMPLE_RATE)), np.float32
        )
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
        self.partial_offset = 0  # first sample of the partial window
        self.speculation: Speculation | None = None
        # Set for a file sent as a transcribe request (rpc.py): its own prompt and model,
        # and whether its final also goes on the transcript topic.
        self.request_prompt = ""
        self.request_model: str | None = None
        self.publish = True

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

    # -- partials and speculation ----------------------------------------

    def paused(self, after_s: float) -> bool:
        """Speech started and has now been silent for at least ``after_s``."""
        endpointer = self.endpointer
        return endpointer.speech_started and endpointer.trailing_silence_s >= after_s

    def wants_partial(self, interval_samples: int, speculate_s: float) -> bool:
        """Whether enough new speech arrived since the last partial request.

        Not during a pause long enough to speculate: then the final is what matters.
        """
        return (
            self.receiving
            and not self.partial_pending
            and self.endpointer.speech_started
            and not (speculate_s > 0 and self.paused(speculate_s))
            and self._n - self.partial_requested_n >= interval_samples
        )

    def wants_speculation(self, speculate_s: float) -> bool:
        """Whether to start decoding the final now: a pause, and no current guess."""
        return (
            speculate_s > 0
            and self.receiving
            and self.paused(speculate_s)
            and not self.speculation_valid()
        )

    def speculation_valid(self) -> bool:
        """Whether a speculative final exists and no speech came after it began."""
        spec = self.speculation
        if spec is None:
            return False
        if spec.speech_windows != self.endpointer.speech_windows:
            spec.task.cancel()  # speech resumed: the guess is stale
            self.speculation = None
            return False
        return True

    def partial_audio(self) -> Samples | None:
        """The partial window up to the newest audio, or None once the utterance ended."""
        if not self.receiving:
            return None
        self.partial_requested_n = self._n
        return self._buffer[self.partial_offset : self._n]

    def trim_partial_window(self, window_start: int, end_s: float, words: int) -> None:
        """Move the partial window past ``end_s`` of a window that began at ``window_start``.

        ``words`` committed words of the newest hypothesis lie before that point.
        """
        cut = window_start + round(end_s * SAMPLE_RATE)
        if cut <= self.partial_offset or cut >= self._n:
            return
        self.partial_offset = cut
        self.agreement.trim(words)
