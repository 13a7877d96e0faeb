"""What ``orac-node models promote`` and ``rollback`` do on the broker.

The selection is one retained message (wire/models.py); nodes follow it
(consumers/modelswap.py) and say which finals model they decode with in their
retained status. So a promote is: read the current selection, publish the new
one retained (keeping the current as ``previous_*`` for rollback), then watch
the ready nodes' statuses until each names the promoted model, or the wait
runs out. The outcome lists every ready node and whether it switched: a node
without the model in its store stays on its model and says so in its log.

An A/B test (``models ab start``/``stop``) is the same selection with a
candidate: a promote or rollback keeps a running test, ``ab stop`` ends it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import aiomqtt

from orac_node.client.link import payload_bytes
from orac_node.errors import ContractError
from orac_node.ops.health import read_statuses, status_of
from orac_node.ops.topics import FAILED, OK, Outcome, publish_retained, until_quiet
from orac_node.wire import (
    MODEL_SELECTION_TOPIC,
    ModelSelection,
)


async def read_selection(client: aiomqtt.Client, timeout_s: float) -> ModelSelection:
    """The retained selection (an empty one when none was ever published)."""
    await client.subscribe(MODEL_SELECTION_TOPIC, qos=1)
    found = ModelSelection()
    for message in await until_quiet(client, timeout_s):
        if message.topic.matches(MODEL_SELECTION_TOPIC) and (payload := payload_bytes(message)):
            try:
                found = ModelSelection.decode(payload)
            except ContractError:
                found = ModelSelection()  # a broken selection: replaced by this one
    return found


async def promote(
    client: aiomqtt.Client, *, finals: str | None, partials: str | None, timeout_s: float
) -> Outcome:
    """Make ``finals`` (and/or ``partials``) every node's model; wait for the nodes."""
    current = await read_selection(client, min(timeout_s, 3.0))
    selection = dataclasses.replace(
        current,
        finals=finals or current.finals,
        partials=partials or current.partials,
        previous_finals=current.finals,
        previous_partials=current.partials,
        ts=round(time.time(), 3),
    )
    if finals is not None and finals == current.candidate:  # the candidate won: test over
        selection = dataclasses.replace(selection, candidate=None, share=0.0, shadow=False)
    return await _apply(client, selection, timeout_s)


async def rollback(client: aiomqtt.Client, *, timeout_s: float) -> Outcome:
    """Go back to the selection the last promote replaced."""
    current = await read_selection(client, min(timeout_s, 3.0))
    if current.finals is None and current.partials is None:
        return Outcome(FAILED, "nothing to roll back: no model was promoted")
    selection = dataclasses.replace(
        current,
        finals=current.previous_finals,
        partials=current.previous_partials,
        previous_finals=current.finals,
        previous_partials=current.partials,
        ts=round(time.time(), 3),
    )
    return await _apply(client, selection, timeout_s)


async def ab_start(
    client: aiomqtt.Client, *, candidate: str, share: float, shadow: bool, timeout_s: float
) -> Outcome:
    """Start an A/B test of ``candidate`` for the finals (the tiers stay as they are)."""
    current = await read_selection(client, min(timeout_s, 3.0))
    selection = dataclasses.replace(
        current, candidate=candidate, share=share, shadow=shadow, ts=round(time.time(), 3)
    )
    if not await publish_retained(client, MODEL_SELECTION_TOPIC, selection.encode(), timeout_s):
        return Outcome(FAILED, f"the broker did not take {MODEL_SELECTION_TOPIC} back")
    how = "shadow: every final from the champion, the candidate decodes beside it"
    if not shadow:
        how = f"{share:.0%} of devices get their finals from it"
    text = f"A/B test of {candidate} started ({how}); see orac-node models ab report"
    return Outcome(OK, text, {"candidate": candidate, "share": share, "shadow": shadow})


async def ab_stop(client: aiomqtt.Client, *, timeout_s: float) -> Outcome:
    """End the A/B test: every device back on the champion."""
    current = await read_selection(client, min(timeout_s, 3.0))
    if current.candidate is None:
        return Outcome(FAILED, "no A/B test runs")
    selection = dataclasses.replace(
        current, candidate=None, share=0.0, shadow=False, ts=round(time.time(), 3)
    )
    if not await publish_retained(client, MODEL_SELECTION_TOPIC, selection.encode(), timeout_s):
        return Outcome(FAILED, f"the broker did not take {MODEL_SELECTION_TOPIC} back")
    return Outcome(OK, f"A/B test of {current.candidate} stopped", {"candidate": None})


async def ready_nodes(client: aiomqtt.Client, timeout_s: float) -> list[str]:
    """The nodes whose retained status says ``ready``."""
    return sorted(s.node for s in await read_statuses(client, timeout_s) if s.state == "ready")


async def _apply(client: aiomqtt.Client, selection: ModelSelection, timeout_s: float) -> Outcome:
    ready = set(await ready_nodes(client, min(timeout_s, 3.0)))
    await client.publish(MODEL_SELECTION_TOPIC, selection.encode(), qos=1, retain=True)
    want = selection.finals
    switched: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while want is not None and ready - switched and time.monotonic() < deadline:
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                message = await anext(client.messages)
        except TimeoutError:
            break
        status = status_of(message)
        if status is not None and status.state == "ready" and status.model == want:
            switched.add(status.node)
    nodes = {node: node in switched for node in sorted(ready)}
    data = {
        "selection": {"finals": selection.finals, "partials": selection.partials},
        "nodes": nodes,
    }
    if want is None:  # nothing a status shows: the nodes' own finals model
        own = "each node its own"
        text = f"selected finals: {own}, partials: {selection.partials or own}"
        return Outcome(OK, text, data)
    lines = [
        f"selected {want} for finals"
        + (f", {selection.partials} for partials" if selection.partials else "")
    ]
    lines += [f"  {node}: {'switched' if ok else 'NOT switched'}" for node, ok in nodes.items()]
    missing = ready - switched
    if missing:
        lines.append(
            f"{len(missing)} node(s) did not switch within {timeout_s:g} s: is the model in"
            " their store (orac-node models import)? their logs say why"
        )
    return Outcome(FAILED if missing else OK, "\n".join(lines), data)
