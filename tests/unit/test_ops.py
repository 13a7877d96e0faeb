"""The health verdict: what counts as healthy, for scripts that act on the exit code."""

from __future__ import annotations

import json
import math

import pytest

from orac_node.ops.health import (
    HEALTHY,
    UNHEALTHY,
    format_metrics,
    histogram_quantile,
    judge,
    summarize_metrics,
)
from orac_node.wire import NodeState, NodeStatus


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


def test_quantiles_from_buckets_interpolate_like_promql() -> None:
    buckets = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (math.inf, 40.0)]
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.1)  # rank 10: first bound
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.3)  # rank 20: half into (0.1, 0.5]
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.9)  # rank 38: 8/10 of (0.5, 1]
    assert histogram_quantile(0.99, [(1.0, 1.0), (math.inf, 10.0)]) == 1.0  # in +Inf: last bound
    assert math.isnan(histogram_quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]))


def test_a_metrics_page_is_summarized() -> None:
    text = "\n".join(
        [
            "# TYPE orac_node_finals counter",
            'orac_node_finals_total{reason="end"} 3.0',
            'orac_node_finals_total{reason="idle"} 1.0',
            "# TYPE orac_node_final_latency_seconds histogram",
            'orac_node_final_latency_seconds_bucket{le="0.01"} 3.0',
            'orac_node_final_latency_seconds_bucket{le="1.0"} 4.0',
            'orac_node_final_latency_seconds_bucket{le="+Inf"} 4.0',
            "orac_node_final_latency_seconds_count 4.0",
            "orac_node_final_latency_seconds_sum 0.5",
            "# TYPE orac_node_sessions_active gauge",
            "orac_node_sessions_active 2.0",
        ]
    )
    summary = summarize_metrics(text + "\n")
    assert summary["finals"] == {"end": 3.0, "idle": 1.0}
    assert summary["final_latency_s"]["p50"] == pytest.approx(0.01 * 2 / 3)
    assert summary["sessions_active"] == 2.0
    assert math.isnan(summary["queue_depth"])
    text_out = format_metrics(summary)
    assert "finals              end 3, idle 1" in text_out
