"""The health verdict: what counts as healthy, for scripts that act on the exit code."""

from __future__ import annotations

import json

from orac_node.contract import NodeState, NodeStatus
from orac_node.ops import HEALTHY, UNHEALTHY, judge


def _status(node: str, state: NodeState, ts: float = 1000.0) -> NodeStatus:
    return NodeStatus(
        node=node, state=state, version="0.1.0", model="tiny.en", sessions=2, queued=0, ts=ts
    )


def test_one_ready_node_is_enough_unless_nodes_are_named() -> None:
    fleet = [_status("box-a", "ready"), _status("box-b", "offline")]
    assert judge(fleet, []).code == HEALTHY
    assert judge(fleet, ["box-a"]).code == HEALTHY
    assert judge(fleet, ["box-a", "box-b"]).code == UNHEALTHY
    assert judge([_status("box-b", "draining")], []).code == UNHEALTHY
    assert judge([], []).code == UNHEALTHY


def test_a_named_node_that_never_reported_is_missing() -> None:
    health = judge([_status("box-a", "ready")], ["box-c"])
    assert health.code == UNHEALTHY
    assert health.missing == ["box-c"]
    assert "box-c" in health.to_text(now=1000.0)


def test_outputs_carry_the_states_and_ages() -> None:
    health = judge([_status("box-b", "offline", ts=900.0), _status("box-a", "ready")], [])
    data = json.loads(health.to_json(now=1030.0))
    assert data["healthy"] is True
    assert [(n["node"], n["state"], n["age_s"]) for n in data["nodes"]] == [
        ("box-a", "ready", 30.0),
        ("box-b", "offline", 130.0),
    ]
    text = health.to_text(now=1030.0)
    assert text.splitlines()[1].startswith("box-a") and "30 s ago" in text
    assert "2 min ago" in text and text.endswith("healthy")
