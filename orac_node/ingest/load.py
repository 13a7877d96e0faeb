"""Overload: how many sessions the node can keep whole, learned from how far behind it runs.

A node offered more audio than it can take must not take it all and damage
every session a little (chunks late, then lost when queues overflow, finals
after the user gave up). It keeps every session it admitted whole and refuses
new ones up front with ``overloaded``; in a fleet the others take them
(ingest/fleet.py reads the ``overloaded`` flag of the node's status).

What "more than it can take" means depends on the machine, the model, how
much of the audio is speech and what else runs on the box, so the node does
not guess a number: it watches its *lag*, the longest a message waited in
the node before it was handled (the MQTT client's incoming queue, and the
event loop's own delay), and keeps a session cap by additive-increase,
multiplicative-decrease, as TCP sizes its window:

- lag over ``ingest.overload_lag_ms`` (:data:`LAG_LIMIT_S` by default) for
  :data:`SUSTAINED_S`: no new session opens (past the :data:`MIN_CAP` a node
  always takes), and the cap drops to
  :data:`CUT` of the sessions open now, never below :data:`MIN_CAP` (at most
  once per :data:`CUT_EVERY_S`, the time a cut needs to show in the lag);
- lag under :data:`CLEAR` of the limit for :data:`RAISE_EVERY_S` with the cap
  nearly used: the cap doubles until the first cut (TCP's slow start), and
  rises by a tenth (at least one session) after it; it is lifted
  once it reaches the node's configured ``ingest.max_sessions``. It starts at
  :data:`START_CAP`;
- in between, the cap holds.

Sessions already open are never cut: their chunks are charged to no one and
wait their turn, and the cap falling below them only stops new ones. Pure
logic: every method takes the time, so tests drive the clock.
"""

from __future__ import annotations

import math

LAG_LIMIT_S = 0.25
"""The default ``ingest.overload_lag_ms``. A message waiting this long before it
is handled means the node is behind. A live final is due within about a second
of the user stopping; a quarter of that spent queueing is the most the node lets
its backlog cost before it sheds load. On an idle node the lag is well under a
millisecond."""
CLEAR = 0.2
"""The backlog is gone when the lag is under this share of the limit: 50 ms by
default, a few ticks of the event loop."""
CUT = 0.7
"""The cap after a cut, as a share of the sessions open: what a node whose lag
keeps growing could still carry if that share of its work went away (TCP's
Reno halves; the sessions here end by themselves within seconds, so a gentler
cut, repeated each :data:`CUT_EVERY_S` while the lag stays high, converges
without starving the node)."""
CUT_EVERY_S = 1.0
"""At most one cut per second: the backlog a cut leaves takes about that long to
drain at the rates measured here, so cutting again sooner would count the same
overload twice."""
RAISE_EVERY_S = 1.0
"""The cap rises once per second of a clear lag: slowly enough that the lag
shows the raise before the next one."""
SUSTAINED_S = 0.5
"""How long the lag must stay over the limit, tick after tick, before the node
counts itself behind. A stall of the event loop (a collection, a slow disk, a
neighbour process taking the CPU) makes a tick or two late, and the messages
that waited behind it are handled at once; a backlog keeps the lag high for as
long as the load lasts (seconds, at the 200 devices measured). Refusing on a
stall would refuse users for nothing."""
MIN_CAP = 16
"""Sessions a node always takes, however far behind it runs, and the floor of
its cap: a node whose lag grows with only a few sessions open is slowed by
something else (its neighbours on the machine took the CPU: on this 2-core box,
two nodes ran 0.64 s behind while a third started and another test ran beside
them, with six satellites' sessions between the three), and refusing a home's
tenth satellite would not help. Half the starting cap."""
START_CAP = 32
"""The cap a node starts with, and rises from only while it is used (as TCP grows
a window only while it is full): more sessions at once than a home has
satellites, so a home never meets it, and few enough that a 2-core node keeps
them whole when a building's satellites all start at the same moment (measured:
200 sessions admitted at once put such a node 10 s behind, and every one was
late)."""
USED = 0.8
"""The cap rises only while at least this share of it is open: a cap that is not
being tested says nothing about whether more would fit."""


class LoadGate:
    """The session cap, and whether a new session may open now."""

    def __init__(self, max_sessions: int, lag_limit_s: float = LAG_LIMIT_S) -> None:
        self.max_sessions = max_sessions
        self.lag_limit_s = lag_limit_s
        self.enabled = lag_limit_s > 0  # 0: never refuse for load
        self.cap: int | None = min(START_CAP, max_sessions)  # None: max_sessions only
        self.behind = False  # the lag has stayed over the limit, and not yet come down
        self.lag_s = 0.0  # the worst lag of the last tick
        self.cuts = 0  # times the cap was cut, since start
        self._worst = 0.0  # the worst lag observed since the last tick
        self._next_cut = -math.inf
        self._clear_since: float | None = None
        self._over_since: float | None = None  # since when the lag is over the limit

    def observe(self, lag_s: float) -> None:
        """A message waited ``lag_s`` before it was handled (or the loop ran that late)."""
        self._worst = max(self._worst, lag_s)

    def tick(self, now: float, open_sessions: int) -> None:
        """Apply the lag seen since the last tick (the node ticks every 50 ms)."""
        lag, self._worst = self._worst, 0.0
        self.lag_s = lag
        if not self.enabled:
            return
        if lag > self.lag_limit_s:
            self._clear_since = None
            if self._over_since is None:
                self._over_since = now
            if now - self._over_since < SUSTAINED_S:
                return  # a stall, so far, not a backlog
            self.behind = True
            if now >= self._next_cut:
                self._next_cut = now + CUT_EVERY_S
                cut = max(min(MIN_CAP, self.max_sessions), math.floor(open_sessions * CUT))
                self.cap = cut if self.cap is None else min(self.cap, cut)
                self.cuts += 1
        elif lag < self.lag_limit_s * CLEAR:
            self._over_since = None
            self.behind = False
            if self._clear_since is None:
                self._clear_since = now
            elif (
                self.cap is not None
                and now - self._clear_since >= RAISE_EVERY_S
                and open_sessions >= self.cap * USED
            ):
                self._clear_since = now
                # slow start: double until the first cut finds the limit, then a tenth at a time
                self.cap += self.cap if not self.cuts else max(1, self.cap // 10)
                if self.cap >= self.max_sessions:
                    self.cap = None
        else:
            self._over_since = None
            self._clear_since = None

    @property
    def warm(self) -> bool:
        """Messages have started to wait: new sessions are judged as they arrive (intake)."""
        return self.enabled and (self.behind or self.lag_s > self.lag_limit_s * CLEAR)

    def may_open(self, open_sessions: int) -> bool:
        """Whether one more session fits now."""
        return not self.overloaded(open_sessions)

    def overloaded(self, open_sessions: int) -> bool:
        """The node refuses new sessions: it is behind, or at the cap it learned.

        Never with fewer than :data:`MIN_CAP` sessions open: what slows such a
        node is not its sessions, and refusing would not help.
        """
        if not self.enabled or open_sessions < min(MIN_CAP, self.max_sessions):
            return False
        return self.behind or (self.cap is not None and open_sessions >= self.cap)
