"""Which node decodes a session when several share one broker (docs/FLEET.md).

Every node receives every chunk. Each one knows the *live* nodes from their
retained statuses (``ready`` ones; a Last Will's ``offline`` removes a dead
node at once) and computes, for each device, the same owner: the live node
with the highest weighted rendezvous score (:func:`score`). Only the owner
opens the device's new sessions, and it claims each one on the broker
(``orac/claim/<device>``). Nodes whose views of the membership differ for a
moment may both claim a session; the first claim every node receives, in the
broker's order, wins, and the owner publishes a final only after the broker
passed its own claim back (:meth:`Fleet.settled`), when any earlier claim has
arrived too. A claim by a node that went offline *after* the claim arrived no
longer counts, so a session sent again after its node died is claimed afresh;
a claim that arrives after its node's ``offline`` proves the node is back (a
broker restart sends every node's Last Will while they reconnect), and it
counts.

With one node on the broker it owns every device, claims every session and
wins every claim: the node behaves as if the fleet did not exist, at the
cost of one small message per session.

This module holds no I/O: statuses and claims come in through
:meth:`Fleet.on_status` and :meth:`Fleet.on_claim`; the claims to publish go
out as return values.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from orac_node.ingest.session import UtteranceKey
from orac_node.wire import NodeState, NodeStatus, SessionClaim

log = logging.getLogger(__name__)

CLAIM_MEMORY_S = 600.0
"""How long a session's claims are remembered: longer than any session lasts
(``endpoint.max_duration_s`` is at most minutes), so a late chunk or a resent
utterance still finds who decodes it."""
MAX_OWNERS = 10_000
"""Devices whose owner is cached (a home has a handful): a client inventing device
names cannot grow the cache without bound; past it the cache starts again."""
_HASH_SPAN = float(2**64)


def score(node: str, device: str, capacity: int) -> float:
    """Weighted rendezvous score of ``node`` for ``device``: the highest one owns the device.

    ``-capacity / ln(h)`` with ``h`` a hash of the pair mapped into (0, 1): each
    node wins a device with probability proportional to its capacity, every
    node computes the same winner, and when a node joins or leaves only the
    devices it wins or held move.
    """
    digest = hashlib.blake2b(f"{node}\0{device}".encode(), digest_size=8).digest()
    h = (int.from_bytes(digest, "big") + 1) / (_HASH_SPAN + 1)  # never 0 or 1
    return -max(1, capacity) / math.log(h)


@dataclass(slots=True)
class _Claims:
    """What one session's claims decided, as this node has seen them."""

    first: str | None = None  # the node whose claim counts
    first_at: int = 0  # when it arrived, in :attr:`Fleet._events`; 0: replayed, retained
    seen_at: float = 0.0
    mine: asyncio.Future[bool] | None = None  # our claim's outcome, once it comes back


class Fleet:
    """The node's view of the others, and the claims on the sessions it opens."""

    def __init__(
        self, node_id: str, *, enabled: bool = True, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.node_id = node_id
        self.enabled = enabled
        self._clock = clock
        self._live: dict[str, int] = {}  # ready nodes and their capacity
        self._full: set[str] = set()  # ready nodes refusing new sessions as overloaded
        self._offline: dict[str, int] = {}  # node -> when its offline arrived (an event)
        self._events = 0  # statuses and claims received: their order, the broker's
        self._owners: dict[str, str] = {}  # device -> owner, while the membership holds
        self._claims: dict[UtteranceKey, _Claims] = {}
        self.lost = 0  # sessions another node claimed first

    # -- membership ---------------------------------------------------------------

    @property
    def live(self) -> dict[str, int]:
        """Nodes taking new sessions now, with their capacity."""
        return dict(self._live)

    def on_status(self, status: NodeStatus) -> None:
        """Another node's retained status.

        This node's own is ignored: the broker may hold a stale one (its Last
        Will ``offline`` after a broker restart) until the node publishes anew,
        and the node knows its state first-hand (:meth:`own_state`).
        """
        if status.node != self.node_id:
            self._set(status.node, status.state, status.capacity, overloaded=status.overloaded)

    def own_state(self, state: NodeState, capacity: int, *, overloaded: bool = False) -> None:
        """The node's own state, as it publishes it."""
        self._set(self.node_id, state, capacity, overloaded=overloaded)

    def _set(
        self, node: str, state: NodeState, capacity: int | None, *, overloaded: bool = False
    ) -> None:
        before, full_before = dict(self._live), set(self._full)
        if state == "ready":
            self._live[node] = capacity or 1
            self._offline.pop(node, None)
        else:
            self._live.pop(node, None)
            if state == "offline":
                self._offline.setdefault(node, self._event())
            else:
                self._offline.pop(node, None)
        if overloaded and state == "ready":
            self._full.add(node)
        else:
            self._full.discard(node)
        if self._live != before or self._full != full_before:
            self._owners.clear()
            taking = sorted(self._live.keys() - self._full)
            log.info(
                "nodes taking sessions: %s%s",
                ", ".join(taking) or "none",
                f" (overloaded: {', '.join(sorted(self._full))})" if self._full else "",
            )

    @property
    def alone(self) -> bool:
        """No other node takes sessions now (this one may not have said ``ready`` yet)."""
        return not self.enabled or not (self._live.keys() - {self.node_id})

    def owner(self, device: str) -> str:
        """The node that opens ``device``'s new sessions (this one, if none is live)."""
        if not self._live:
            return self.node_id
        found = self._owners.get(device)
        if found is None:
            if len(self._owners) >= MAX_OWNERS:
                self._owners.clear()
            # overloaded nodes keep the sessions they have and get no new devices, unless
            # every node is overloaded: then the owner is as usual, and it refuses them
            nodes = (self._live.keys() - self._full) or self._live.keys()
            found = max(nodes, key=lambda node: score(node, device, self._live[node]))
            self._owners[device] = found
        return found

    def takes(self, device: str) -> bool:
        """Whether this node opens ``device``'s new sessions."""
        return not self.enabled or self.owner(device) == self.node_id

    # -- claims -------------------------------------------------------------------

    def claim(self, key: UtteranceKey) -> SessionClaim | None:
        """The claim to publish for a session this node opened; None if already claimed."""
        if not self.enabled:
            return None
        claims = self._claims.get(key)
        if claims is not None and claims.mine is not None:
            return None
        if claims is None:
            claims = self._claims[key] = _Claims(seen_at=self._clock())
            self._prune()
        claims.mine = asyncio.get_running_loop().create_future()
        if claims.first not in (None, self.node_id) and not self._void(claims):
            self._lose(claims)  # another node's claim is already in
        return SessionClaim(self.node_id, key.device, key.session, time.time())

    def on_claim(self, claim: SessionClaim, *, retained: bool = False) -> UtteranceKey | None:
        """A claim, in the broker's order; returns the key of a session this node lost.

        ``retained``: the broker replayed it on subscribing (the device's latest
        claim, perhaps from long ago), which says nothing about whether its node
        is alive now.
        """
        key = UtteranceKey(claim.device, claim.session)
        claims = self._claims.get(key)
        if claims is None:
            claims = self._claims[key] = _Claims(seen_at=self._clock())
            self._prune()
        at = 0 if retained else self._event()
        if claims.first is None or self._void(claims):
            claims.first, claims.first_at = claim.node, at  # the first, or first since a death
        if claims.mine is None or claims.mine.done():
            return None
        if claims.first == self.node_id:
            claims.mine.set_result(True)  # our claim is back and none came before it
            return None
        self._lose(claims)
        return key

    def orphaned(self, key: UtteranceKey) -> bool:
        """The node whose claim on the session counted died since: anyone may claim it."""
        claims = self._claims.get(key)
        return claims is not None and self._void(claims)

    def claimant(self, device: str, session: str) -> str | None:
        """The live node whose claim on the session counted: it decoded it (None: unknown)."""
        claims = self._claims.get(UtteranceKey(device, session))
        if claims is None or claims.first is None or self._void(claims):
            return None
        return claims.first if claims.first in self._live else None

    def claimed_elsewhere(self, key: UtteranceKey) -> bool:
        """Another node claimed the session, whatever became of it since.

        A session first seen mid-stream with such a claim is never opened here:
        after a broker restart every node briefly sees the others' Last Wills and
        believes itself alone, and a node that died gets its session resent from
        the start by the satellite, not picked up halfway.
        """
        claims = self._claims.get(key)
        return claims is not None and claims.first not in (None, self.node_id)

    def _void(self, claims: _Claims) -> bool:
        """The claim that counted is by a node that went offline after it arrived."""
        first = claims.first
        if first is None or first == self.node_id:
            return False
        went = self._offline.get(first)
        return went is not None and went > claims.first_at

    def _event(self) -> int:
        self._events += 1
        return self._events

    async def settled(self, key: UtteranceKey, timeout_s: float) -> bool:
        """Whether this node publishes the session's final: its claim came back first.

        True without waiting for a session it never claimed (a Wyoming
        client's, a spooled one replayed) and when the fleet is off. After
        ``timeout_s`` without its claim back (the broker is away), True: the
        final then waits in the outbox like any other message.
        """
        claims = self._claims.get(key)
        if claims is None or claims.mine is None:
            return True
        try:
            return await asyncio.wait_for(asyncio.shield(claims.mine), timeout_s)
        except TimeoutError:
            log.warning("claim of %s not back from the broker in %.1f s", key.session, timeout_s)
            return True

    def _lose(self, claims: _Claims) -> None:
        self.lost += 1
        if claims.mine is not None and not claims.mine.done():
            claims.mine.set_result(False)

    def _prune(self) -> None:
        """Forget the claims of sessions older than :data:`CLAIM_MEMORY_S`."""
        horizon = self._clock() - CLAIM_MEMORY_S
        while self._claims:
            key, claims = next(iter(self._claims.items()))  # oldest first: insertion order
            if claims.seen_at >= horizon:
                break
            del self._claims[key]
