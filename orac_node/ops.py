"""``orac-node health``: every node's retained status, readable and scriptable.

Nodes publish a retained status (``orac/node/<id>/status``: starting, ready,
draining, offline; the Last Will says offline when a process dies), so one
subscription shows the whole fleet at once, with nothing else to query. The
exit code is what a script, a cron job or a container health check wants:

- 0: healthy: at least one node is ``ready`` (every node named with ``--node``
  is ``ready``);
- 1: unhealthy: no node ready (or a named node is not ready, or unknown);
- 2: the broker could not be reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import asdict, dataclass

import aiomqtt

from orac_node.contract import STATUS_FILTER, NodeStatus
from orac_node.errors import ContractError

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
                f"  {_age(now - n.ts)} ago"
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
        payload = message.payload
        if not isinstance(payload, bytes | bytearray) or not payload:
            continue  # a cleared retained status
        with contextlib.suppress(ContractError):
            status = NodeStatus.decode(bytes(payload))
            found[status.node] = status
    return list(found.values())


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
