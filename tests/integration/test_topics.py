"""The topics registry against a real Mosquitto: ``orac-node topics`` and a live Registry.

The CLI runs as a subprocess, the way a person or a script runs it; the
satellite is a real MQTT client with a Last Will, killed with SIGKILL so the
broker, not the test, announces it offline. Every test uses its own topic and
device names (the broker is shared by the session) and clears what it retained.
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
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from orac_node.client import connect
from orac_node.config import RegistrySection
from orac_node.consumers.registry import Registry
from orac_node.mqtt.bus import Outgoing
from orac_node.ops.localbroker import LocalBroker, free_port
from orac_node.wire import TopicConfig, satellite_status_topic, topic_config_topic

SECRET = "s3cret-never-printed"

# A satellite: online heartbeat (retained), Last Will offline, then wait to be killed.
SATELLITE = """
import asyncio, sys, time
import aiomqtt
from orac_node.wire import SatelliteStatus, satellite_status_topic

async def main(port: str, device: str, topics: str) -> None:
    names = topics.split(",")
    status = satellite_status_topic(device)
    offline = SatelliteStatus(device, "offline", names, time.time()).encode()
    will = aiomqtt.Will(status, offline, qos=1, retain=True)
    async with aiomqtt.Client("127.0.0.1", int(port), will=will,
                              protocol=aiomqtt.ProtocolVersion.V5) as client:
        online = SatelliteStatus(device, "online", names, time.time()).encode()
        await client.publish(status, online, qos=1, retain=True)
        print("online", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main(*sys.argv[1:]))
"""


def _cli(
    url: str, *args: str, secret: str | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ORAC_NODE_") and k != "ORAC_WEBHOOK_SECRET"
    }
    if secret is not None:
        env["ORAC_WEBHOOK_SECRET"] = secret
    return subprocess.run(
        [sys.executable, "-m", "orac_node.cli", "topics", *args, "--broker", url],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        check=False,
        env=env,
    )


def _ok(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON a successful command printed."""
    assert done.returncode == 0, done.stdout + done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


@pytest.fixture
def names(broker: LocalBroker) -> Iterator[Callable[[str], str]]:
    """Unique names; the retained configs and heartbeats under them are cleared afterwards."""
    made: list[str] = []

    def make(kind: str) -> str:
        made.append(f"{kind}-{uuid.uuid4().hex[:8]}")
        return made[-1]

    yield make

    async def clear() -> None:
        async with connect(broker.url) as client:
            for name in made:
                await client.publish(topic_config_topic(name), b"", qos=1, retain=True)
                await client.publish(satellite_status_topic(name), b"", qos=1, retain=True)

    asyncio.run(clear())


async def _retained(url: str, topic: str) -> bytes | None:
    async with connect(url) as client:
        await client.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(1.0):
                message = await anext(client.messages)
        except TimeoutError:
            return None
        assert isinstance(message.payload, bytes)
        return message.payload


def test_add_set_show_list_rm_round_trip(broker: LocalBroker, names: Callable[[str], str]) -> None:
    topic = names("topic")
    added = _ok(
        _cli(broker.url, "add", topic, "--model", "base.en", "--wake-word", "hey", "--json")
    )
    assert added["config"] == TopicConfig(model="base.en", wake_words=["hey"]).model_dump()

    again = _cli(broker.url, "add", topic)
    assert again.returncode == 1 and "already has a config" in again.stderr

    hooks = ["--webhook", "https://hooks.example/a", "--webhook", "https://hooks.example/b"]
    changed = _cli(broker.url, "set", topic, "--language", "en", *hooks, "--json", secret=SECRET)
    config = _ok(changed)["config"]
    assert (config["model"], config["language"], config["wake_words"]) == ("base.en", "en", ["hey"])
    assert [hook["secret"] for hook in config["webhooks"]] == ["***", "***"]
    assert SECRET not in changed.stdout + changed.stderr

    # The secret is on the broker, where nodes read it; nothing printed shows it.
    stored = asyncio.run(_retained(broker.url, topic_config_topic(topic)))
    assert stored is not None
    assert [hook.secret for hook in TopicConfig.model_validate_json(stored).webhooks] == [
        SECRET,
        SECRET,
    ]
    shown = _cli(broker.url, "show", topic, "--json")
    details = _ok(shown)
    assert details["retained"] is True and details["devices"] == [] and details["invalid"] is None
    assert details["config"] == config and SECRET not in shown.stdout
    text = _cli(broker.url, "show", topic)
    assert text.returncode == 0 and "https://hooks.example/a  (secret ***)" in text.stdout
    assert SECRET not in text.stdout

    rows = _ok(_cli(broker.url, "list", "--json"))["topics"]
    (row,) = [row for row in rows if row["topic"] == topic]
    assert (row["enabled"], row["model"], row["wake_words"], row["webhooks"]) == (
        True,
        "base.en",
        1,
        2,
    )
    table = _cli(broker.url, "list")
    assert table.returncode == 0 and topic in table.stdout and SECRET not in table.stdout

    assert _ok(_cli(broker.url, "rm", topic, "--json")) == {"topic": topic, "removed": True}
    assert asyncio.run(_retained(broker.url, topic_config_topic(topic))) is None
    gone = _cli(broker.url, "rm", topic)
    assert gone.returncode == 1 and "no retained config" in gone.stderr
    assert _cli(broker.url, "show", topic, "--json").returncode == 1


def test_set_merges_into_a_whole_config_from_stdin(
    broker: LocalBroker, names: Callable[[str], str]
) -> None:
    topic = names("topic")
    whole = json.dumps({"prompt": "Kitchen, Pantry", "wake_words": ["computer"]})
    made = _cli(broker.url, "set", topic, "--config-json", "-", "--json", stdin=whole)
    assert (
        _ok(made)["config"]
        == TopicConfig(prompt="Kitchen, Pantry", wake_words=["computer"]).model_dump()
    )
    disabled = _ok(_cli(broker.url, "set", topic, "--disable", "--no-wake-words", "--json"))
    assert disabled["config"] == TopicConfig(enabled=False, prompt="Kitchen, Pantry").model_dump()


def test_invalid_input_is_exit_2_without_echoing_it(
    broker: LocalBroker, names: Callable[[str], str]
) -> None:
    topic = names("topic")
    bad_url = _cli(broker.url, "set", topic, "--webhook", f"ftp://{SECRET}.example/")
    assert bad_url.returncode == 2 and "webhooks.0.url" in bad_url.stderr
    bad_json = _cli(broker.url, "add", topic, "--config-json", json.dumps({"enabled": SECRET}))
    assert bad_json.returncode == 2 and "enabled" in bad_json.stderr
    for done in (bad_url, bad_json):
        assert SECRET not in done.stdout + done.stderr
    assert _cli(broker.url, "set", topic).returncode == 2  # nothing to set
    assert _cli(broker.url, "add", "no such/topic").returncode == 2
    assert _cli(broker.url, "show", topic).returncode == 1  # nothing was published


def test_an_invalid_retained_config_is_shown_and_can_be_removed(
    broker: LocalBroker, names: Callable[[str], str]
) -> None:
    topic = names("topic")

    async def publish_junk() -> None:
        async with connect(broker.url) as client:
            await client.publish(topic_config_topic(topic), b'{"enabld": 1}', qos=1, retain=True)

    asyncio.run(publish_junk())
    shown = _ok(_cli(broker.url, "show", topic, "--json"))
    assert shown["retained"] is False and "enabld" in str(shown["invalid"])
    refused = _cli(broker.url, "set", topic, "--prompt", "x")
    assert refused.returncode == 1 and "invalid" in refused.stderr
    assert _cli(broker.url, "rm", topic).returncode == 0


def test_an_unreachable_broker_is_exit_code_2() -> None:
    done = _cli(f"mqtt://127.0.0.1:{free_port()}", "list")
    assert done.returncode == 2 and "orac-node topics:" in done.stderr


# -- a node's registry, fed by a real subscription ----------------------------------------


@asynccontextmanager
async def _following(url: str) -> AsyncIterator[Registry]:
    """A Registry subscribed as the node subscribes it; its registrations really published."""
    sent: list[Outgoing] = []
    registry = Registry(RegistrySection(), publish=sent.append)
    async with connect(url) as client:
        for topic in registry.subscriptions:
            await client.subscribe(topic, qos=1)

        async def follow() -> None:
            async for message in client.messages:
                payload = message.payload
                registry.on_message(
                    message.topic.value, payload if isinstance(payload, bytes) else b""
                )
                while sent:
                    out = sent.pop(0)
                    await client.publish(out.topic, out.payload, qos=out.qos, retain=out.retain)

        task = asyncio.create_task(follow())
        try:
            yield registry
        finally:
            task.cancel()


async def _until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.02)


async def test_a_registry_follows_configs_and_a_satellites_last_will(
    broker: LocalBroker, names: Callable[[str], str]
) -> None:
    topic, used, device = names("topic"), names("used"), names("sat")
    async with _following(broker.url) as registry:
        done = await asyncio.to_thread(_cli, broker.url, "set", topic, "--prompt", "Pantry")
        assert done.returncode == 0, done.stderr
        await _until(lambda: registry.topic(topic).prompt == "Pantry", "the config applied")
        await asyncio.to_thread(_cli, broker.url, "set", topic, "--model", "small.en")
        await _until(lambda: registry.topic(topic).model == "small.en", "the change applied")
        assert registry.topic(topic).prompt == "Pantry"

        satellite = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SATELLITE,
            str(broker.port),
            device,
            f"{topic},{used}",
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert satellite.stdout is not None
            assert await satellite.stdout.readline() == b"online\n"
            await _until(lambda: device in registry.devices(), "the heartbeat arrived")
            assert registry.devices()[device].state == "online"
            # Lazy registration: `used` had no config; the default is now retained.
            await _until(lambda: used in registry.retained, "the topic was registered")
            assert registry.topic(used) == TopicConfig()
            shown = await asyncio.to_thread(_cli, broker.url, "show", topic, "--json")
            users = [(d["device"], d["state"]) for d in _ok(shown)["devices"]]
            assert users == [(device, "online")]
        finally:
            satellite.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker sends the Will
            await satellite.wait()
        await _until(lambda: registry.devices()[device].state == "offline", "the Will arrived")
        assert registry.devices()[device].topics == (topic, used)

        done = await asyncio.to_thread(_cli, broker.url, "rm", topic)
        assert done.returncode == 0, done.stderr
        await _until(lambda: registry.topic(topic) == TopicConfig(), "the removal applied")
    assert registry.invalid == 0
    rows = _ok(await asyncio.to_thread(_cli, broker.url, "list", "--json"))["topics"]
    offline = [row["offline"] for row in rows if row["topic"] == used]
    assert offline == [[device]]
