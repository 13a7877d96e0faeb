"""Several nodes on one broker: who owns a device, and whose claim on a session counts.

Pure logic (ingest/fleet.py); tests/integration/test_fleet.py runs three real
node processes on a real broker.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter

import aiomqtt
import pytest

from orac_node.client import core
from orac_node.client.core import _Failover
from orac_node.client.errors import StreamError
from orac_node.errors import BrokerError
from orac_node.ingest.fleet import Fleet
from orac_node.ingest.session import UtteranceKey
from orac_node.wire import ErrorReport, NodeState, NodeStatus, SessionClaim

DEVICES = [f"sat-{i}" for i in range(3000)]
KEY = UtteranceKey("kitchen", "s1")


def _status(node: str, state: NodeState = "ready", capacity: int | None = 1) -> NodeStatus:
    return NodeStatus(node, state, "0.1.0", "tiny.en", 0, 0, 1.0, capacity=capacity)


def _fleet(me: str = "n1", *others: str, capacity: dict[str, int] | None = None) -> Fleet:
    fleet = Fleet(me)
    fleet.own_state("ready", (capacity or {}).get(me, 1))
    for node in others:
        fleet.on_status(_status(node, capacity=(capacity or {}).get(node, 1)))
    return fleet


def _claim(node: str, key: UtteranceKey = KEY) -> SessionClaim:
    return SessionClaim(node, key.device, key.session, 1.0)


def test_devices_spread_in_proportion_to_capacity() -> None:
    fleet = _fleet("n1", "n2", "n3", capacity={"n3": 2})
    shares = Counter(fleet.owner(device) for device in DEVICES)
    assert shares["n1"] / len(DEVICES) == pytest.approx(0.25, abs=0.04)
    assert shares["n2"] / len(DEVICES) == pytest.approx(0.25, abs=0.04)
    assert shares["n3"] / len(DEVICES) == pytest.approx(0.50, abs=0.04)


def test_every_node_computes_the_same_owner() -> None:
    views = [_fleet(me, *({"n1", "n2", "n3"} - {me})) for me in ("n1", "n2", "n3")]
    for device in DEVICES[:500]:
        assert len({view.owner(device) for view in views}) == 1
        assert sum(view.takes(device) for view in views) == 1


def test_a_joining_node_takes_devices_only_for_itself_and_a_leaving_one_hands_only_its_own() -> (
    None
):
    fleet = _fleet("n1", "n2", "n3")
    before = {device: fleet.owner(device) for device in DEVICES}
    fleet.on_status(_status("n4"))
    joined = {device: fleet.owner(device) for device in DEVICES}
    moved = [d for d in DEVICES if joined[d] != before[d]]
    assert all(joined[d] == "n4" for d in moved)  # nothing moves between the old nodes
    assert len(moved) / len(DEVICES) == pytest.approx(0.25, abs=0.04)
    fleet.on_status(_status("n2", "draining"))
    left = {device: fleet.owner(device) for device in DEVICES}
    assert all(joined[d] == "n2" for d in DEVICES if left[d] != joined[d])
    assert "n2" not in left.values()


def test_alone_or_switched_off_a_node_takes_everything() -> None:
    alone = Fleet("n1")  # not even its own status yet
    assert alone.takes("kitchen")
    off = Fleet("n1", enabled=False)
    off.on_status(_status("n2"))
    assert off.takes("kitchen") and off.claim(KEY) is None
    dead = _fleet("n1", "n2")
    dead.on_status(_status("n2", "offline"))
    assert all(dead.takes(device) for device in DEVICES[:100])


async def test_a_claim_back_first_wins() -> None:
    fleet = _fleet("n1", "n2")
    claim = fleet.claim(KEY)
    assert claim is not None and claim.node == "n1"
    assert fleet.claim(KEY) is None  # once per session
    assert fleet.on_claim(claim) is None  # the broker passed it back: ours
    assert fleet.on_claim(_claim("n2")) is None  # a later claim changes nothing
    assert await fleet.settled(KEY, 1.0)


async def test_another_claim_first_loses_the_session() -> None:
    fleet = _fleet("n1", "n2")
    ours = fleet.claim(KEY)
    assert ours is not None
    waiting = asyncio.create_task(fleet.settled(KEY, 5.0))
    assert fleet.on_claim(_claim("n2")) == KEY  # n2's came first: drop the session
    assert fleet.on_claim(ours) is None
    assert await waiting is False
    assert fleet.lost == 1


async def test_a_claim_already_in_when_opening_loses_at_once() -> None:
    fleet = _fleet("n1", "n2")
    fleet.on_claim(_claim("n2"))
    assert fleet.claim(KEY) is not None
    assert await fleet.settled(KEY, 1.0) is False


async def test_a_dead_nodes_claim_no_longer_counts() -> None:
    fleet = _fleet("n1", "n2")
    fleet.on_claim(_claim("n2"))  # n2 took the session, then died
    fleet.on_status(_status("n2", "offline"))
    ours = fleet.claim(KEY)  # the satellite sent the utterance again
    assert ours is not None
    assert fleet.on_claim(ours) is None
    assert await fleet.settled(KEY, 1.0)


async def test_an_unclaimed_session_or_a_silent_broker_does_not_hold_the_final() -> None:
    fleet = _fleet("n1", "n2")
    assert await fleet.settled(UtteranceKey("wyoming-1", "wy-1"), 1.0)  # never claimed
    assert fleet.claim(KEY) is not None
    assert await fleet.settled(KEY, 0.01)  # its claim never came back: published anyway


def test_a_session_is_orphaned_once_the_node_whose_claim_counted_is_offline() -> None:
    fleet = _fleet("n1", "n2")
    assert not fleet.orphaned(KEY)  # no claim seen
    fleet.on_claim(_claim("n2"))
    assert not fleet.orphaned(KEY)
    fleet.on_status(_status("n2", "offline"))
    assert fleet.orphaned(KEY)


async def test_a_claim_after_its_nodes_last_will_counts_the_node_is_back() -> None:
    """A broker that restarts sends every node's Last Will; their claims still count."""
    n1, n2 = _fleet("n1", "n2"), _fleet("n2", "n1")
    n1.on_status(_status("n2", "offline"))  # each sees the other's will as the broker stops
    n2.on_status(_status("n1", "offline"))
    assert n1.takes("kitchen") and n2.takes("kitchen")  # each owns every device for a moment
    first, second = n2.claim(KEY), n1.claim(KEY)
    assert first is not None and second is not None
    for view in (n1, n2):  # the broker delivers n2's claim first to both
        view.on_claim(first)
        view.on_claim(second)
    assert await n2.settled(KEY, 1.0) is True
    assert await n1.settled(KEY, 1.0) is False  # one final, n2's


def test_a_session_claimed_elsewhere_is_not_taken_mid_stream_even_alone() -> None:
    fleet = _fleet("n1", "n2")
    fleet.on_claim(_claim("n2"))  # n2 opened the session before the broker restarted
    fleet.on_status(_status("n2", "offline"))  # its will, as the broker stopped
    assert fleet.alone and fleet.claimed_elsewhere(KEY)  # n1 leaves the rest of it to n2
    assert not fleet.claimed_elsewhere(UtteranceKey("kitchen", "s2"))


def test_a_retained_claim_replayed_says_nothing_about_its_node_being_alive() -> None:
    fleet = _fleet("n1", "n2")
    fleet.on_claim(_claim("n2"), retained=True)  # replayed as n1 subscribed
    fleet.on_status(_status("n2", "offline"))
    assert fleet.orphaned(KEY)
    live = _fleet("n1", "n2")
    live.on_status(_status("n2", "offline"))
    live.on_claim(_claim("n2"))  # published after its will: n2 is back
    assert not live.orphaned(KEY)


def _message(topic: str, payload: bytes) -> aiomqtt.Message:
    return aiomqtt.Message(topic, payload, qos=1, retain=False, mid=1, properties=None)


def test_the_client_resends_when_the_node_that_claimed_its_session_goes_offline() -> None:
    failover = _Failover("s1")
    other = SessionClaim("n1", "kitchen", "s0", 1.0).encode()
    assert not failover.node_died(_message("orac/claim/kitchen", other))  # not our session
    assert not failover.node_died(
        _message("orac/node/n1/status", _status("n1", "offline").encode())
    )
    ours = SessionClaim("n2", "kitchen", "s1", 1.0).encode()
    assert not failover.node_died(_message("orac/claim/kitchen", ours))
    assert not failover.node_died(_message("orac/node/n2/status", _status("n2").encode()))
    assert not failover.node_died(_message("transcript/general", b"{}"))
    assert failover.node_died(_message("orac/node/n2/status", _status("n2", "offline").encode()))
    assert failover.lost_node == "n2" and failover.resends == 1
    # the status again (retained, on a reconnect) is no second resend: n2's claim is spent
    assert not failover.node_died(
        _message("orac/node/n2/status", _status("n2", "offline").encode())
    )
    assert not failover.node_died(_message("orac/claim/kitchen", b"not json"))
    # a claim that arrives after its node's Last Will: the node is back (a broker restart)
    late = _Failover("s2")
    late.node_died(_message("orac/node/n3/status", _status("n3", "offline").encode()))
    claim = SessionClaim("n3", "kitchen", "s2", 1.0).encode()
    assert not late.node_died(_message("orac/claim/kitchen", claim))
    assert late.node_died(_message("orac/node/n3/status", _status("n3", "offline").encode()))


class _Recorder:
    def __init__(self) -> None:
        self.resent: list[str] = []

    async def resend(self, session: str, *, topic: str | None, lang: str | None) -> int:
        self.resent.append(session)
        return 1


async def test_the_client_does_not_resend_when_the_broker_itself_went_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(core, "FAILOVER_GRACE_S", 0.01)
    failover, satellite = _Failover("s1"), _Recorder()

    def gone() -> None:
        raise BrokerError("connection lost")

    with pytest.raises(BrokerError):
        await failover.resend(satellite, topic=None, lang=None, connected=gone)  # type: ignore[arg-type]
    assert satellite.resent == []
    await failover.resend(satellite, topic=None, lang=None, connected=lambda: None)  # type: ignore[arg-type]
    assert satellite.resent == ["s1"]


def test_its_own_stale_status_does_not_make_a_node_give_its_sessions_away() -> None:
    # after a broker restart the broker may hand a node its own Last Will (offline)
    fleet = _fleet("n1", "n2")
    fleet.on_claim(_claim("n1"))
    fleet.on_status(_status("n1", "offline"))
    assert not fleet.orphaned(KEY)  # its own claim still counts
    assert "n1" in fleet.live
    fleet.own_state("draining", 1)
    assert fleet.live == {"n2": 1}


def test_an_overloaded_node_gets_no_new_devices_until_it_has_caught_up() -> None:
    fleet = _fleet("n1", "n2", "n3")
    before = {device: fleet.owner(device) for device in DEVICES[:600]}
    full = dataclasses.replace(_status("n2"), overloaded=True)
    fleet.on_status(full)
    after = {device: fleet.owner(device) for device in DEVICES[:600]}
    assert "n2" not in after.values()
    # only n2's devices moved, and they spread over the others
    assert all(after[d] == owner for d, owner in before.items() if owner != "n2")
    moved = Counter(after[d] for d, owner in before.items() if owner == "n2")
    assert set(moved) == {"n1", "n3"}
    fleet.on_status(_status("n2"))  # caught up: its devices come back
    assert {device: fleet.owner(device) for device in DEVICES[:600]} == before


def test_when_every_node_is_overloaded_the_owners_are_as_usual_and_refuse() -> None:
    fleet = _fleet("n1", "n2")
    before = {device: fleet.owner(device) for device in DEVICES[:200]}
    fleet.own_state("ready", 1, overloaded=True)
    fleet.on_status(dataclasses.replace(_status("n2"), overloaded=True))
    assert {device: fleet.owner(device) for device in DEVICES[:200]} == before


def _resend_now(failover: _Failover, message: aiomqtt.Message) -> bool:
    """What Client.stream asks of each message: is it time to send the session again?"""
    return failover.node_died(message) or failover.moved_on(message)


def _report(node: str, code: str = "overloaded") -> StreamError:
    return StreamError(ErrorReport(node, "kitchen", code, "full", 1.0, session="s1"))


def _status_message(node: str, *, overloaded: bool = False) -> aiomqtt.Message:
    status = dataclasses.replace(_status(node), overloaded=overloaded)
    return _message(f"orac/node/{node}/status", status.encode())


def test_a_session_refused_for_room_waits_for_the_fleet_to_move_the_device() -> None:
    failover = _Failover("s1")
    for node in ("n1", "n2"):
        failover.node_died(_status_message(node))
    assert failover.refused_for_room(_report("n1"), now=10.0)
    assert failover.room_deadline == 10.0 + core.ROOM_WAIT_S
    assert not _resend_now(failover, _status_message("n2"))  # another node's news
    assert _resend_now(failover, _status_message("n1", overloaded=True))  # n2 owns the device
    assert (failover.lost_node, failover.resends, failover.refused) == ("n1", 1, None)


def test_a_refusal_for_room_is_final_when_no_other_node_has_room() -> None:
    alone = _Failover("s1")
    alone.node_died(_status_message("n1"))
    assert not alone.refused_for_room(_report("n1"), now=0.0)  # raised to the caller
    full = _Failover("s1")
    full.node_died(_status_message("n1"))
    full.node_died(_status_message("n2", overloaded=True))
    assert not full.refused_for_room(_report("n1", "too_many_sessions"), now=0.0)
