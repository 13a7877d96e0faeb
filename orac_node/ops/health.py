"""Ops commands: ``orac-node health`` (every node's status) and ``orac-node metrics``.

Nodes publish a retained status (``orac/node/<id>/status``: starting, ready,
draining, offline; the Last Will says offline when a process dies), so one
subscription shows the whole fleet at once, with nothing else to query. The
exit code is what a script, a cron job or a container health check wants:

- 0: healthy: at least one node is ``ready`` (every node named with ``--node``
  is ``ready``);
- 1: unhealthy: no node ready (or a named node is not ready, or unknown);
- 2: the broker could not be reached.

``orac-node metrics`` reads one node's Prometheus endpoint (metrics.py) and
prints the figures a person asks for first, with quantiles estimated from the
histogram buckets the way PromQL's ``histogram_quantile`` does.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import aiomqtt
from prometheus_client.parser import text_string_to_metric_families

from orac_node.errors import ContractError
from orac_node.wire import STATUS_FILTER, NodeStatus

HEALTHY, UNHEALTHY, UNREACHABLE = 0, 1, 2
SETTLE_S = 0.3
"""Retained messages arrive right after SUBACK; once none has come for this long,
every node has been heard from."""


@dataclass(frozen=True)
class Health:
    """What the fleet looks like, and the verdict."""

    nodes: list[NodeStatus]
    missing: list[str]  # nodes asked for by name that have no status at all
    code: int

    def to_json(self, now: float) -> str:
        """One JSON object for scripts."""
        nodes = [asdict(n) | {"age_s": round(now - n.ts, 1)} for n in self.nodes]
        return json.dumps(
            {"healthy": self.code == HEALTHY, "nodes": nodes, "missing": self.missing}
        )

    def to_text(self, now: float) -> str:
        """A table for people."""
        if not self.nodes and not self.missing:
            return "no orac-node has ever reported to this broker"
        lines = [f"{'node':<24}{'state':<10}{'model':<12}{'sessions':>9}{'queued':>8}  since"]
        for n in self.nodes:
            lines.append(
                f"{n.node:<24}{n.state:<10}{n.model:<12}{n.sessions:>9}{n.queued:>8}"
                f"  {age(now - n.ts)} ago"
            )
        lines.extend(f"{name:<24}{'unknown':<10}(never reported)" for name in self.missing)
        lines.append("healthy" if self.code == HEALTHY else "UNHEALTHY")
        return "\n".join(lines)


def judge(statuses: list[NodeStatus], wanted: list[str]) -> Health:
    """The verdict on a set of statuses (pure: the rules in the module docstring)."""
    by_node = {s.node: s for s in statuses}
    missing = [name for name in wanted if name not in by_node]
    if wanted:
        healthy = not missing and all(by_node[name].state == "ready" for name in wanted)
    else:
        healthy = any(s.state == "ready" for s in statuses)
    nodes = sorted(by_node.values(), key=lambda s: s.node)
    return Health(nodes, missing, HEALTHY if healthy else UNHEALTHY)


async def read_statuses(client: aiomqtt.Client, timeout_s: float) -> list[NodeStatus]:
    """Every node's retained status (an empty list when there is none)."""
    await client.subscribe(STATUS_FILTER, qos=1)
    found: dict[str, NodeStatus] = {}
    deadline = time.monotonic() + timeout_s
    messages = client.messages
    while time.monotonic() < deadline:
        try:
            async with asyncio.timeout(min(SETTLE_S, max(0.0, deadline - time.monotonic()))):
                message = await anext(messages)
        except TimeoutError:
            break  # quiet: all retained statuses are in
        if (status := status_of(message)) is not None:
            found[status.node] = status
    return list(found.values())


def status_of(message: aiomqtt.Message) -> NodeStatus | None:
    """The node status ``message`` carries; None for another topic, a cleared or bad one."""
    payload = message.payload
    if not message.topic.matches(STATUS_FILTER) or not isinstance(payload, bytes | bytearray):
        return None
    if not payload:
        return None  # a cleared retained status
    try:
        return NodeStatus.decode(bytes(payload))
    except ContractError:
        return None


def age(seconds: float) -> str:
    """A duration as people read it: "42 s", "5 min", "3.1 h"."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# -- metrics --------------------------------------------------------------------


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Estimate a quantile from cumulative ``(upper bound, count)`` buckets, as PromQL does.

    Linear interpolation inside the bucket the quantile falls in; NaN without
    observations; the last finite bound when it falls in the +Inf bucket.
    """
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0.0
    if not total:
        return math.nan
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            width = count - lower_count
            return lower_bound + (bound - lower_bound) * (
                (rank - lower_count) / width if width else 0
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def summarize_metrics(text: str) -> dict[str, Any]:
    """The figures a person asks for first, from a node's /metrics text."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))

    def by(name: str, label: str) -> dict[str, float]:
        return {labels[label]: value for labels, value in samples.get(name, []) if label in labels}

    def one(name: str) -> float:
        values = samples.get(name, [])
        return values[0][1] if values else math.nan

    def quantiles(name: str, **match: str) -> dict[str, float]:
        buckets = [
            (float(labels["le"]), value)
            for labels, value in samples.get(f"{name}_bucket", [])
            if all(labels.get(k) == v for k, v in match.items())
        ]
        return {f"p{int(q * 100)}": histogram_quantile(q, buckets) for q in (0.5, 0.95)}

    return {
        "messages_received": by("orac_node_messages_received_total", "kind"),
        "messages_dropped": by("orac_node_messages_dropped_total", "cause"),
        "finals": by("orac_node_finals_total", "reason"),
        "errors": by("orac_node_errors_total", "code"),
        "final_latency_s": quantiles("orac_node_final_latency_seconds"),
        "final_decode_s": quantiles("orac_node_decode_seconds", kind="final"),
        "partial_lag_s": quantiles("orac_node_partial_lag_seconds"),
        "sessions_active": one("orac_node_sessions_active"),
        "queue_depth": one("orac_node_queue_depth"),
        "broker_connects": one("orac_node_broker_connects_total"),
    }


def format_metrics(summary: dict[str, Any]) -> str:
    """The summary for people."""

    def counts(values: dict[str, float]) -> str:
        return ", ".join(f"{k} {v:.0f}" for k, v in sorted(values.items())) or "none"

    def times(values: dict[str, float]) -> str:
        return "  ".join(
            f"{k} {v * 1000:.0f} ms" if not math.isnan(v) else f"{k} -" for k, v in values.items()
        )

    return "\n".join(
        [
            f"messages received   {counts(summary['messages_received'])}",
            f"messages dropped    {counts(summary['messages_dropped'])}",
            f"finals              {counts(summary['finals'])}",
            f"errors sent         {counts(summary['errors'])}",
            f"final latency       {times(summary['final_latency_s'])}   (histogram estimate)",
            f"final decode        {times(summary['final_decode_s'])}",
            f"partial lag         {times(summary['partial_lag_s'])}",
            f"open sessions {summary['sessions_active']:.0f}, decode queue "
            f"{summary['queue_depth']:.0f}, broker connects {summary['broker_connects']:.0f}",
        ]
    )
