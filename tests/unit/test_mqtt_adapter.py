"""What the node needs of aiomqtt beyond its public API, and sending many messages at once.

aiomqtt 2.x exposes neither manual acknowledgements nor CONNACK's session-present
flag and Receive Maximum, so mqtt/paho.py reaches into the paho client it wraps,
in that one module. These tests fail loudly, naming what changed, when an aiomqtt
release moves those internals; and they check the outbox keeps several QoS 1
messages in flight (one per round trip capped throughput at 1/RTT).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import time
from collections.abc import AsyncIterator

import aiomqtt
import pytest

from orac_node.client import connect
from orac_node.config import BrokerSection
from orac_node.errors import BrokerError
from orac_node.mqtt import paho
from orac_node.mqtt.bus import Bus, Outgoing
from orac_node.ops.localbroker import LocalBroker
from tests.conftest import ROOT


def test_only_the_adapter_reaches_into_the_paho_client() -> None:
    reach = re.compile(r"\b(?!self\b)\w+\._client\.")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in (ROOT / "orac_node").rglob("*.py")
        if path.name != "paho.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if reach.search(line)
    ]
    assert found == []


async def test_the_installed_aiomqtt_still_has_what_the_adapter_uses() -> None:
    client = aiomqtt.Client("127.0.0.1", 1883, protocol=aiomqtt.ProtocolVersion.V5)
    paho.check(client)  # raises, naming the missing piece, when a release moved it
    paho.enable_manual_acks(client)
    seen: list[tuple[bool, int | None]] = []
    paho.on_connack(client, lambda present, receive_max: seen.append((present, receive_max)))
    assert seen == []


async def test_manual_acks_and_the_session_flag_on_a_real_broker(broker: LocalBroker) -> None:
    """A QoS 1 message left unacknowledged comes back; an acknowledged one does not."""
    topic = f"adapter/{time.monotonic_ns()}"
    flags: list[tuple[bool, int | None]] = []

    @contextlib.asynccontextmanager
    async def session() -> AsyncIterator[aiomqtt.Client]:
        client = aiomqtt.Client(
            "127.0.0.1",
            broker.port,
            identifier=f"adapter-{topic}",
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=paho.session_properties(600, receive_maximum=10),
        )
        paho.enable_manual_acks(client)
        paho.on_connack(client, lambda present, receive_max: flags.append((present, receive_max)))
        async with client:
            yield client

    async def next_message(client: aiomqtt.Client) -> aiomqtt.Message:
        async with asyncio.timeout(5):
            async for message in client.messages:
                return message
        raise AssertionError("no message")

    async with session() as client:
        await client.subscribe(topic, qos=1)
        async with connect(broker.url) as sender:
            await sender.publish(topic, b"first", qos=1)
        assert (await next_message(client)).payload == b"first"  # not acknowledged
    async with session() as client:
        message = await next_message(client)
        assert message.payload == b"first"  # redelivered
        paho.acknowledge(client, message)
    async with session() as client:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(next_message(client), 1)
    assert [present for present, _ in flags] == [False, True, True]
    assert all(receive_max is not None and receive_max > 0 for _, receive_max in flags)


async def test_the_outbox_keeps_several_messages_in_flight_in_order(broker: LocalBroker) -> None:
    topic = f"outbox/{time.monotonic_ns()}"
    bus = Bus(
        BrokerSection(url=broker.url),
        client_id=f"outbox-{topic}",
        will=Outgoing(f"{topic}/will", b""),
        subscriptions=[],
        on_message=lambda _message: True,
    )
    count = 300
    acked: list[int] = []
    received: list[bytes] = []
    async with connect(broker.url) as reader:
        await reader.subscribe(topic, qos=1)
        run = asyncio.create_task(bus.run())
        for n in range(count):
            bus.publish(
                Outgoing(topic, str(n).encode(), qos=1, on_sent=functools.partial(acked.append, n))
            )
        async with asyncio.timeout(20):
            async for message in reader.messages:
                assert isinstance(message.payload, bytes)
                received.append(message.payload)
                if len(received) == count:
                    break
        bus.stop()
        await run
    assert received == [str(n).encode() for n in range(count)]  # in order, once each
    assert sorted(acked) == list(range(count)) and bus.outbox_size == 0
    assert bus.in_flight_peak > 1, "one publish at a time: throughput capped at 1/RTT"


async def test_a_socket_closed_behind_the_clients_back_is_noticed_at_once(
    broker: LocalBroker,
) -> None:
    """paho closing its socket without a disconnect callback (seen under uvloop when the
    broker stopped) must not leave the node on a dead connection until the keepalive."""
    topic = f"watch/{time.monotonic_ns()}"
    bus = Bus(
        BrokerSection(url=broker.url),
        client_id=f"watch-{time.monotonic_ns()}",
        will=Outgoing(f"{topic}/will", b""),
        subscriptions=[(topic, 1)],
        on_message=lambda _message: True,
    )
    run = asyncio.create_task(bus.run())
    await bus.open_intake()
    client = bus._client
    assert client is not None and bus.connects == 1
    paho._paho(client)._sock_close()  # the socket goes; aiomqtt is never told
    async with asyncio.timeout(5):  # keepalive is 30 s: only the watch can be this quick
        while bus.connects < 2 or not bus.connected.is_set():
            await asyncio.sleep(0.05)
    bus.stop()
    await run


def test_check_names_what_a_release_moved() -> None:
    class Moved:
        """An aiomqtt.Client whose paho client went elsewhere."""

    with pytest.raises(BrokerError, match="no longer wraps a paho client as _client"):
        paho.check(Moved())  # type: ignore[arg-type]
