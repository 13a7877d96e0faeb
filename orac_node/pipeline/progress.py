"""How far the transcription of one open utterance has got: its partials and its early final.

The utterance (ingest/session.py) holds the audio; :class:`Progress` holds what
the pipeline has done with it: the partial window and its LocalAgreement, the
partial in flight, and a speculative final decoded at a pause.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from orac_node.decode.decoding import FinalDecoding
from orac_node.decode.stabilize import LocalAgreement
from orac_node.ingest.session import Utterance
from orac_node.wire import SAMPLE_RATE


@dataclass
class Speculation:
    """A final decoded early, at a pause, valid while no new speech follows."""

    speech_windows: int  # the endpointer's count when it started
    task: asyncio.Task[FinalDecoding]


@dataclass
class Progress:
    """The transcription's state for one utterance, from its first audio to its final."""

    utt: Utterance
    agreement: LocalAgreement = field(default_factory=LocalAgreement)
    partial_pending: bool = False
    partial_seq: int = 0
    requested_n: int = 0  # samples the newest partial was asked to cover
    window_start: int = 0  # first sample of the partial window (moved by buffer trimming)
    speculation: Speculation | None = None

    def wants_partial(self, interval_samples: int, speculate_s: float, now: float) -> bool:
        """Whether enough new speech arrived since the last partial request.

        Not during a pause long enough to speculate: then the final is what matters.
        Not while the audio arrives faster than real time (ingest/pace.py): such a
        partial is stale before it is out and holds the worker the final needs.
        """
        utt = self.utt
        return (
            utt.receiving
            and not self.partial_pending
            and utt.endpointer.speech_started
            and not (speculate_s > 0 and utt.paused(speculate_s))
            and utt.samples - self.requested_n >= interval_samples
            and not utt.catching_up(now)
        )

    def wants_speculation(self, speculate_s: float) -> bool:
        """Whether to start decoding the final now: a pause, and no current guess."""
        return (
            speculate_s > 0
            and self.utt.receiving
            and self.utt.paused(speculate_s)
            and self.speculation is None
        )

    def drop_stale_speculation(self) -> None:
        """Cancel a speculative final that speech came after (skipped if queued, else aborted).

        Called on every piece of new audio: a stale guess left queued as a final would
        hold back every session's partials until the next pause.
        """
        spec = self.speculation
        if spec is not None and spec.speech_windows != self.utt.endpointer.speech_windows:
            spec.task.cancel()
            self.speculation = None

    def speculation_valid(self) -> bool:
        """Whether a speculative final exists and no speech came after it began."""
        self.drop_stale_speculation()
        return self.speculation is not None

    def partial_audio(self) -> tuple[int, int] | None:
        """The partial window up to the newest audio, as (start, end) samples; None once ended."""
        if not self.utt.receiving:
            return None
        self.requested_n = self.utt.samples
        return self.window_start, self.requested_n

    def trim_window(self, window_start: int, end_s: float, words: int) -> None:
        """Move the partial window past ``end_s`` of a window that began at ``window_start``.

        ``words`` committed words of the newest hypothesis lie before that point.
        """
        cut = window_start + round(end_s * SAMPLE_RATE)
        if cut <= self.window_start or cut >= self.utt.samples:
            return
        self.window_start = cut
        self.agreement.trim(words)
