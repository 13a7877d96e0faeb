"""Who may open a session, and what a device is told when it may not.

A session opens only while its device is within its rates (limits.py: a device
in debt from what its sessions used is refused until it has paid), has fewer
than ``ingest.device_max_sessions`` open, the node fewer than
``ingest.max_sessions`` and is not overloaded (load.py), and its topic is
enabled in the topics registry. A session refused for the rates or for room is
refused whole: :class:`Admission` remembers it, so its later chunks are
dropped and counted too (a session opened halfway, once room was made, would
be a transcript of its second half). Every refusal becomes a :class:`Refusal`
for the device, except for a device whose name leaves no room for its error
topic (counted in ``unanswerable`` and logged). A session refused for room is
told once, at its first chunk; one refused for the rates is told with the
rate reports (once a second, with counts).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from orac_node.config import IngestSection
from orac_node.ingest.closed import CLOSED_MEMORY
from orac_node.ingest.limits import DeviceLimits, DeviceThrottle
from orac_node.ingest.load import LoadGate
from orac_node.ingest.refusal import Refusal
from orac_node.ingest.session import UtteranceKey
from orac_node.wire import ErrorCode, TopicConfig, error_topic_fits

log = logging.getLogger(__name__)

PASSED_FOR_S = 10.0
"""How long a session judged on arrival counts as open before its turn comes: far
longer than any backlog the node lets build (a quarter of a second sustained is
overload), so only one whose chunk was lost is forgotten."""


@dataclass(frozen=True, slots=True)
class Dropped:
    """A message dropped for its device's rates; ``report`` is what is owed now, if anything."""

    report: Refusal | None


class Admission:
    """Per-device rates, open-session counts and enabled topics: the gate of new sessions."""

    def __init__(self, ingest: IngestSection, topics: Callable[[str], TopicConfig]) -> None:
        self._ingest = ingest
        self._topics = topics  # the topics registry's view of a topic
        self._throttle = DeviceThrottle(DeviceLimits.from_config(ingest))
        self._open: Counter[str] = Counter()  # open sessions and files being decoded, by device
        self._total = 0
        self._refused: OrderedDict[UtteranceKey, bool] = OrderedDict()  # True: for its rates
        self._passed: OrderedDict[UtteranceKey, float] = OrderedDict()  # fit as they arrived
        self.load = LoadGate(ingest.max_sessions, ingest.overload_lag_ms / 1000)
        self.overload_refusals = 0  # sessions refused as overloaded, since start
        self.shed = 0  # chunks of sessions refused for room, dropped since start
        self.unanswerable = 0  # refusals whose error topic would be too long to publish

    @property
    def dropped(self) -> int:
        """Messages dropped for being over a device's rates, since start."""
        return self._throttle.dropped

    # -- rates -------------------------------------------------------------------------

    def admit(
        self, device: str, now: float, session: str | None = None, seq: int | None = None
    ) -> Dropped | None:
        """A message that would open a session, or belongs to none: None when admitted."""
        if self._throttle.admit(device, now):
            return None
        return self._dropped(device, now, session, seq)

    def charge(self, device: str, now: float, audio_s: float, *, message: bool = True) -> None:
        """A message (and its audio) of an admitted session: never dropped, paid for later."""
        self._throttle.charge(device, now, messages=1.0 if message else 0.0, audio_s=audio_s)

    def refuse_whole(self, key: UtteranceKey, *, rates: bool = True) -> None:
        """The session was refused (for its device's ``rates``, or for room): its chunks too."""
        self._refused[key] = rates
        while len(self._refused) > CLOSED_MEMORY:
            self._refused.popitem(last=False)

    def refused_whole(self, key: UtteranceKey, now: float, seq: int) -> Dropped | None:
        """A chunk of a session refused whole: dropped and counted (None: not such a session).

        For the rates, counted with the device's drops and reported with them;
        for room, the device was told at the session's first chunk.
        """
        rates = self._refused.get(key)
        if rates is None:
            return None
        if not rates:
            self.shed += 1
            return Dropped(None)
        self._throttle.drop(key.device, now)
        return self._dropped(key.device, now, key.session, seq)

    def reports_due(self, now: float) -> list[Refusal]:
        """The counts of drops not yet told, once a second per device."""
        refusals = []
        for report in self._throttle.reports_due(now):
            if (refusal := self._rate_limited(report.device, report.dropped)) is not None:
                refusals.append(refusal)
        return refusals

    def _dropped(self, device: str, now: float, session: str | None, seq: int | None) -> Dropped:
        report = self._throttle.report(device, now)  # the first drop in a while
        if report is None:
            return Dropped(None)
        return Dropped(self._rate_limited(device, report.dropped, session, seq))

    def _rate_limited(
        self, device: str, dropped: int, session: str | None = None, seq: int | None = None
    ) -> Refusal | None:
        limits = self._throttle.limits.describe()
        message = (
            f"{dropped} message(s) dropped: over this device's limit ({limits}); sessions"
            " already open go on, new ones are refused until the device is back within it"
        )
        return self.refusal(device, ErrorCode.RATE_LIMITED, message, session, seq, dropped=dropped)

    # -- sessions and topics ------------------------------------------------------------

    def room(
        self, device: str, session: str | None, seq: int | None, *, arriving: bool = False
    ) -> Refusal | None:
        """Why one more session does not fit the node's or the device's limits (None: it fits).

        ``arriving``: judged as its first chunk arrives (intake.screen), for the
        load only; one that fits is counted as open from then on, and is not
        judged for the load again when its turn comes (it arrived before the
        node knew it was overloaded, and is kept).
        """
        key = None if session is None else UtteranceKey(device, session)
        passed = key is not None and self._passed.pop(key, None) is not None
        code = ErrorCode.TOO_MANY_SESSIONS
        if self._total >= self._ingest.max_sessions:
            message = "node is at its session limit"
        elif self._open[device] >= self._ingest.device_max_sessions:
            message = f"device has {self._ingest.device_max_sessions} open sessions, its limit"
        elif not passed and not self.load.may_open(self._total + len(self._passed)):
            code, message = ErrorCode.OVERLOADED, self._overloaded()
            self.overload_refusals += 1
        else:
            if arriving and key is not None:
                self._pass(key)
            return None
        if arriving and code != ErrorCode.OVERLOADED:
            return None  # the other limits are judged when its turn comes, as always
        return self.refusal(device, code, message, session, seq)

    def passed(self, key: UtteranceKey) -> bool:
        """Whether the session was let in as it arrived, and its turn has not come yet."""
        return key in self._passed

    def _pass(self, key: UtteranceKey) -> None:
        """A session that fit as it arrived: open, for the load, until its turn comes."""
        now = time.monotonic()
        self._passed[key] = now
        while self._passed:  # one never handled (lost with its connection) does not count long
            oldest, at = next(iter(self._passed.items()))
            if now - at < PASSED_FOR_S and len(self._passed) <= CLOSED_MEMORY:
                break
            del self._passed[oldest]

    def _overloaded(self) -> str:
        load = self.load
        if load.behind:
            why = f"{load.lag_s * 1000:.0f} ms behind"
        else:
            why = f"at the {load.cap} sessions it keeps up with now"
        return f"node is overloaded ({why}): session refused whole, send it again later"

    @property
    def open_total(self) -> int:
        """Sessions and files open on the node."""
        return self._total

    def topic_closed(
        self, device: str, topic: str, session: str | None = None, seq: int | None = None
    ) -> Refusal | None:
        """Why the topic takes no audio (registry ``enabled: false``); None when it does."""
        if self._topics(topic).enabled:
            return None
        message = f"topic {topic} is disabled"
        return self.refusal(device, ErrorCode.TOPIC_DISABLED, message, session, seq)

    def has_open(self, device: str) -> bool:
        """Whether ``device`` has a session (or a file) open here."""
        return device in self._open

    def opened(self, device: str) -> None:
        """A session (or a file) of ``device`` is open from now on."""
        self._open[device] += 1
        self._total += 1

    def closed(self, device: str) -> None:
        """A session (or a file) of ``device`` is no longer open."""
        self._total -= 1
        self._open[device] -= 1
        if self._open[device] <= 0:
            del self._open[device]

    # -- what a device is told -------------------------------------------------------------

    def refusal(
        self,
        device: str,
        code: str,
        message: str,
        session: str | None = None,
        seq: int | None = None,
        *,
        dropped: int | None = None,
    ) -> Refusal | None:
        """The report owed to ``device``; None when its name leaves no room for an error topic."""
        if not error_topic_fits(device):
            self.unanswerable += 1
            log.warning(
                "cannot answer a device named %d chars: %s (%s)", len(device), message, code
            )
            return None
        return Refusal(device, code, message, session, seq, dropped)
