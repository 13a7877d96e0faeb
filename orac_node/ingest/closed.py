"""Sessions that have ended, and the audio that still arrives for them.

A session is one utterance with one final: once it has endpointed, later chunks
of it are dropped (a second session of the same id would mean a second final).
When the silence endpoint cut a user who was only pausing, that audio is their
next words, so the satellite is told (``late_audio``, with how many chunks were
dropped) and can open a new session; a session cut at ``max_duration`` is told
``session_too_long`` the same way. The first late chunk is reported at once,
later ones at most once per :data:`~orac_node.ingest.limits.REPORT_EVERY_S`
with the count since, so every dropped chunk is accounted for in a few reports.

Two kinds of late chunk are counted but not reported: those of sessions an
earlier run finalized (the spool's finished log), which are the broker
redelivering, not a user talking; and a satellite's own ``end`` chunk arriving
just after the node's silence endpoint (its first late chunk, one chunk's worth
of audio at most): the satellite stopped too, nothing was cut.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from orac_node.ingest.endpoint import EndReason
from orac_node.ingest.limits import REPORT_EVERY_S
from orac_node.ingest.session import UtteranceKey
from orac_node.wire import ErrorCode

END_MARKER_S = 0.1
"""An ``end`` chunk of at most this much audio is a satellite's closing chunk (they
send 20-100 ms per chunk), not more of the user's words."""
CLOSED_MEMORY = 4096
"""Recently finished sessions remembered, so late chunks of a finished session
are recognised (and dropped) instead of opening a second session of that id."""


@dataclass(slots=True)
class _Closed:
    reason: EndReason
    quiet: bool  # finished by an earlier run: redeliveries are not reported
    late: int = 0  # chunks dropped since it ended
    told: int = 0  # of them, reported
    told_at: float | None = None


@dataclass(frozen=True, slots=True)
class LateReport:
    """What to tell a device about audio that came after its session ended."""

    key: UtteranceKey
    code: str
    message: str
    dropped: int
    seq: int | None = None


class ClosedSessions:
    """The bounded memory of ended sessions and the late-audio reports they owe."""

    def __init__(self, max_duration_s: float) -> None:
        self._max_duration_s = max_duration_s
        self._closed: OrderedDict[UtteranceKey, _Closed] = OrderedDict()
        self._owed: set[UtteranceKey] = set()
        self.late_chunks = 0

    def __contains__(self, key: UtteranceKey) -> bool:
        return key in self._closed

    def remember(self, key: UtteranceKey, reason: EndReason, *, quiet: bool = False) -> None:
        """``key`` ended; the oldest beyond :data:`CLOSED_MEMORY` are forgotten."""
        self._closed[key] = _Closed(reason, quiet)
        while len(self._closed) > CLOSED_MEMORY:
            old, _ = self._closed.popitem(last=False)
            self._owed.discard(old)

    def forget(self, key: UtteranceKey) -> None:
        """``key`` may open again (its node died and the satellite sent it anew)."""
        self._closed.pop(key, None)
        self._owed.discard(key)

    def late(
        self, key: UtteranceKey, seq: int, now: float, *, end: bool = False, audio_s: float = 0.0
    ) -> LateReport | None:
        """A chunk of ended session ``key``: dropped, counted; the report due now, if any.

        ``end``: the chunk is the satellite's end of the session; ``audio_s``: its audio.
        """
        closed = self._closed[key]
        self.late_chunks += 1
        closed.late += 1
        if end and closed.late == 1 and audio_s <= END_MARKER_S:
            closed.quiet = True  # the satellite ended it right after the node did
        if closed.quiet:
            return None
        if closed.told_at is not None and now - closed.told_at < REPORT_EVERY_S:
            self._owed.add(key)  # told recently: the count goes in the next report
            return None
        return self._report(key, closed, now, seq)

    def due(self, now: float) -> list[LateReport]:
        """Reports of late chunks not yet told, once their interval has passed."""
        reports = []
        for key in list(self._owed):
            closed = self._closed.get(key)
            if closed is None or closed.told_at is None:
                self._owed.discard(key)
            elif now - closed.told_at >= REPORT_EVERY_S:
                self._owed.discard(key)
                reports.append(self._report(key, closed, now, None))
        return reports

    def _report(
        self, key: UtteranceKey, closed: _Closed, now: float, seq: int | None
    ) -> LateReport:
        dropped = closed.late - closed.told
        closed.told, closed.told_at = closed.late, now
        if closed.reason is EndReason.MAX_DURATION:
            code = ErrorCode.SESSION_TOO_LONG
            message = (
                f"session exceeded {self._max_duration_s:g} s; {dropped} chunk(s) of later"
                " audio dropped: start a new session to go on"
            )
        else:
            code = ErrorCode.LATE_AUDIO
            message = (
                f"session already ended ({closed.reason}); {dropped} chunk(s) after it dropped:"
                " start a new session to go on"
            )
        return LateReport(key, code, message, dropped, seq)
