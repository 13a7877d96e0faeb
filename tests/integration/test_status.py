"""Retained node status: starting -> ready, offline on shutdown and via the Last Will."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from orac_node.client import connect
from orac_node.ops.localbroker import LocalBroker
from orac_node.wire import NodeStatus, status_topic
from tests.conftest import MODEL
from tests.integration.harness import start_node


async def _retained_status(url: str, node_id: str) -> NodeStatus:
    async with connect(url) as mqtt:
        await mqtt.subscribe(status_topic(node_id), qos=1)
        async with asyncio.timeout(5):
            async for message in mqtt.messages:
                assert message.retain
                assert isinstance(message.payload, bytes)
                return NodeStatus.decode(message.payload)
    raise AssertionError("no retained status")


@pytest.mark.parametrize(("sig", "expected_exit"), [(signal.SIGTERM, 0), (signal.SIGKILL, -9)])
async def test_status_is_ready_then_offline(
    broker: LocalBroker, tmp_path: Path, sig: int, expected_exit: int
) -> None:
    node_id = f"status-{sig}"
    # A killed node's session would live on in the shared broker (and take its share of
    # requests to "any", contract.SHARED_REQUEST_FILTER) for the other tests' nodes.
    config = {"broker": {"session_expiry_s": 0}}
    node = await asyncio.to_thread(start_node, broker.url, tmp_path, MODEL, node_id, config)
    ready = await _retained_status(broker.url, node_id)
    assert ready.state == "ready"
    assert ready.model == "tiny.en"
    assert ready.node == node_id
    assert await asyncio.to_thread(node.stop, sig) == expected_exit
    # SIGTERM: the node says offline itself; SIGKILL: the broker sends its Last Will.
    offline = await _retained_status(broker.url, node_id)
    assert offline.state == "offline"
    if sig == signal.SIGTERM:
        assert "draining" in node.log() and "offline" in node.log()
