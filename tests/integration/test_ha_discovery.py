"""Home Assistant MQTT discovery against a real Mosquitto and a real node (tiny.en, real speech).

What Home Assistant would read is read back from the broker: the retained device
configs under the discovery prefix, the node's status, each device's retained
transcript. The module's node uses its own prefix (``ha-it``), so nothing another
module's node does can be mistaken for it; every device name is unique and what
the tests leave retained is cleared afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orac_node import __version__
from orac_node.client import connect
from orac_node.homeassistant.discovery import node_config, satellite_config
from orac_node.ops.localbroker import LocalBroker
from orac_node.wire import (
    DeviceTranscript,
    NodeStatus,
    SatelliteState,
    SatelliteStatus,
    device_transcript_topic,
    discovery_config_topic,
    discovery_object_id,
    satellite_status_topic,
    status_topic,
)
from tests.conftest import MODEL
from tests.integration.accuracy import normalize
from tests.integration.conftest import load, load_refs
from tests.integration.harness import RunningNode, harness, start_node

PREFIX = "ha-it"
NODE_CONFIG = {"homeassistant": {"discovery": True, "prefix": PREFIX}}
NODE_ID = "test-ha-discovery"  # what conftest.py's node fixture names this module's node
SETTLE_S = 1.0
"""How long a retained message may take to arrive after subscribing (milliseconds on
a loopback broker): none by then means there is none."""
WAIT_S = 15.0
"""Longest wait for something the node publishes (a status within a second of a final)."""


def _node_topic(node_id: str) -> str:
    return discovery_config_topic(PREFIX, discovery_object_id("node", node_id))


def _satellite_topic(device: str) -> str:
    return discovery_config_topic(PREFIX, discovery_object_id("satellite", device))


async def _retained(url: str, topic: str) -> bytes | None:
    """The retained payload on ``topic``; None when the broker holds none.

    A retained publish that happens while subscribing arrives live (retain flag
    off) instead of as the stored message: it is what the broker holds all the same,
    and an empty one means it holds nothing.
    """
    async with connect(url) as client:
        await client.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(SETTLE_S):
                message = await anext(client.messages)
        except TimeoutError:
            return None
        assert isinstance(message.payload, bytes)
        return message.payload or None


async def _until_retained(url: str, topic: str, *, present: bool) -> bytes | None:
    """Poll until ``topic`` holds a retained message (``present``) or none."""
    deadline = time.monotonic() + WAIT_S
    while True:
        payload = await _retained(url, topic)
        if (payload is not None) == present or time.monotonic() > deadline:
            return payload
        await asyncio.sleep(0.1)


async def _json(url: str, topic: str) -> dict[str, Any]:
    payload = await _until_retained(url, topic, present=True)
    assert payload is not None, f"nothing retained on {topic}"
    data: dict[str, Any] = json.loads(payload)
    return data


async def _heartbeat(url: str, device: str, state: SatelliteState | None) -> None:
    """Publish (None: clear) a satellite's retained heartbeat, as a satellite would."""
    payload = b"" if state is None else SatelliteStatus(device, state, [], time.time()).encode()
    async with connect(url) as client:
        await client.publish(satellite_status_topic(device), payload, qos=1, retain=True)


def _forget(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORAC_NODE_")}
    command = [sys.executable, "-m", "orac_node.cli", "homeassistant", *args]
    return subprocess.run(
        [*command, "--broker", url, "--prefix", PREFIX, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@pytest.fixture
def device(broker: LocalBroker) -> Iterator[str]:
    """A device name of its own; its retained messages are cleared afterwards."""
    name = f"ha-{uuid.uuid4().hex[:8]}"
    yield name

    async def clear() -> None:
        async with connect(broker.url) as client:
            for topic in (
                _satellite_topic(name),
                device_transcript_topic(name),
                satellite_status_topic(name),
            ):
                await client.publish(topic, b"", qos=1, retain=True)

    asyncio.run(clear())


async def _spoken(url: str, device: str) -> tuple[str, float]:
    """Stream a real command as ``device``; its final's text (checked) and latency."""
    wav, reference = load_refs("commands")[0]
    async with harness(url) as h:
        result = await h.session(device, load(wav))
    assert result.final is not None
    assert normalize(result.final.text) == normalize(reference)
    return result.final.text, result.final.latency_ms


# -- the node ----------------------------------------------------------------------------


async def _status_with_latency(url: str, node_id: str, latency_ms: float) -> NodeStatus:
    """The node's retained status, once it shows a final of ``latency_ms``."""
    deadline = time.monotonic() + WAIT_S
    while True:
        payload = await _retained(url, status_topic(node_id))
        status = NodeStatus.decode(payload) if payload else None
        if status is not None and status.last_final_ms == latency_ms:
            return status
        assert time.monotonic() < deadline, f"the status never showed {latency_ms} ms: {status}"
        await asyncio.sleep(0.1)


async def test_the_node_is_a_device_and_its_status_shows_the_last_final(
    node: RunningNode, broker: LocalBroker, device: str
) -> None:
    assert node.node_id == NODE_ID
    config = await _json(broker.url, _node_topic(NODE_ID))
    assert config == node_config(NODE_ID, version=__version__)
    text, latency_ms = await _spoken(broker.url, device)
    # within a second of the final, the status (what the sensors read) shows its latency
    status = await _status_with_latency(broker.url, NODE_ID, latency_ms)
    assert status.state == "ready"
    # a device without heartbeats: published at its first final, without availability
    assert await _json(broker.url, _satellite_topic(device)) == satellite_config(
        device, heartbeat=False
    )
    event = DeviceTranscript.from_dict(await _json(broker.url, device_transcript_topic(device)))
    assert (event.text, event.device, event.event_type) == (text, device, "transcript")
    assert (event.latency_ms, event.node) == (latency_ms, NODE_ID)


# -- satellites ------------------------------------------------------------------------------


async def test_a_satellite_appears_at_its_heartbeat_and_goes_when_it_is_cleared(
    node: RunningNode, broker: LocalBroker, device: str
) -> None:
    await _heartbeat(broker.url, device, "online")
    config = await _json(broker.url, _satellite_topic(device))
    assert config == satellite_config(device, heartbeat=True)
    assert config["availability"][0]["topic"] == satellite_status_topic(device)
    text, _ = await _spoken(broker.url, device)
    event = await _json(broker.url, device_transcript_topic(device))
    assert event["text"] == text and event["event_type"] == "transcript"

    await _heartbeat(broker.url, device, None)  # the satellite is removed
    assert await _until_retained(broker.url, _satellite_topic(device), present=False) is None
    assert await _retained(broker.url, device_transcript_topic(device)) is None
    assert node.process.poll() is None, node.log()


async def test_forget_satellite_removes_one_that_is_offline(
    node: RunningNode, broker: LocalBroker, device: str
) -> None:
    await _heartbeat(broker.url, device, "online")
    await _json(broker.url, _satellite_topic(device))
    refused = await asyncio.to_thread(_forget, broker.url, "forget-satellite", device)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "online" in refused.stderr
    assert await _retained(broker.url, _satellite_topic(device)) is not None

    await _heartbeat(broker.url, device, "offline")  # its Last Will, say
    done = await asyncio.to_thread(_forget, broker.url, "forget-satellite", device)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout) == {"device": device, "removed": _satellite_topic(device)}
    assert await _retained(broker.url, _satellite_topic(device)) is None


# -- a node leaving for good, and one without discovery ------------------------------------------


async def test_forget_node_removes_a_stopped_node_and_refuses_a_running_one(
    node: RunningNode, broker: LocalBroker, tmp_path: Path
) -> None:
    refused = await asyncio.to_thread(_forget, broker.url, "forget-node", NODE_ID)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "is ready" in refused.stderr
    assert await _retained(broker.url, _node_topic(NODE_ID)) is not None

    retired = "test-ha-retired"
    config = {**NODE_CONFIG, "broker": {"session_expiry_s": 0}}
    other = await asyncio.to_thread(start_node, broker.url, tmp_path, MODEL, retired, config)
    try:
        await _json(broker.url, _node_topic(retired))
    finally:
        assert await asyncio.to_thread(other.stop, signal.SIGTERM) == 0, other.log()
    # a stop is not leaving: the device stays, its status says offline (unavailable)
    assert await _retained(broker.url, _node_topic(retired)) is not None
    offline = await _retained(broker.url, status_topic(retired))
    assert offline is not None and NodeStatus.decode(offline).state == "offline"

    done = await asyncio.to_thread(_forget, broker.url, "forget-node", retired)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout) == {"node": retired, "removed": _node_topic(retired)}
    assert await _retained(broker.url, _node_topic(retired)) is None
    assert await _retained(broker.url, status_topic(retired)) is None


async def test_with_discovery_off_nothing_is_published_for_home_assistant(
    tmp_path: Path, device: str
) -> None:
    # A broker of its own: the module's node (discovery on) must not hear this audio.
    with LocalBroker(tmp_path / "broker") as private:
        seen: list[str] = []
        async with connect(private.url) as watcher:
            await watcher.subscribe("#", qos=1)

            async def collect() -> None:
                async for message in watcher.messages:
                    seen.append(message.topic.value)

            collector = asyncio.create_task(collect())
            node_id = "test-ha-off"  # the default config: homeassistant.discovery false
            quiet = await asyncio.to_thread(start_node, private.url, tmp_path, MODEL, node_id, {})
            try:
                await _heartbeat(private.url, device, "online")
                text, latency_ms = await _spoken(private.url, device)
                # the status still carries the latency (the node's, not Home Assistant's)
                await _status_with_latency(private.url, node_id, latency_ms)
            finally:
                assert await asyncio.to_thread(quiet.stop, signal.SIGTERM) == 0, quiet.log()
            collector.cancel()
    assert text
    assert "transcript/general" in seen and status_topic(node_id) in seen
    assert [t for t in seen if t.startswith(("homeassistant/", f"{PREFIX}/"))] == []
    assert device_transcript_topic(device) not in seen
