"""A broker that restarts, and clients that ride through it: shared by the restart tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from orac_node.client import connect, split_chunks
from orac_node.config import BrokerUrl
from orac_node.ops.localbroker import BROKER_QUEUES, LocalBroker
from orac_node.wire import (
    SAMPLE_RATE,
    AudioChunk,
    AudioFormat,
    Final,
    NodeStatus,
    audio_topic,
    decode_transcript,
)
from tests.integration.conftest import load


def persistent_broker(workdir: Path, port: int | None = None) -> LocalBroker:
    """Mosquitto with persistence on, saving on shutdown (what mosquitto/ ships)."""
    store = workdir / "store"
    store.mkdir(parents=True, exist_ok=True)
    extra = f"persistence true\npersistence_location {store}/\n{BROKER_QUEUES}"
    return LocalBroker(workdir, port=port, extra_config=extra).start()


def chunks_of(path: Path, session: str, *, topic: str | None = None) -> list[bytes]:
    pieces = split_chunks(load(path), 20)
    return [
        AudioChunk(
            session,
            seq,
            SAMPLE_RATE,
            1,
            AudioFormat.S16LE,
            pcm,
            end=seq == len(pieces) - 1,
            topic=topic,
        ).encode()
        for seq, pcm in enumerate(pieces)
    ]


@dataclass
class Listener:
    """Collects finals on a persistent session of its own, across broker restarts."""

    url: str
    finals: list[Final] = field(default_factory=list)
    statuses: list[tuple[float, NodeStatus]] = field(default_factory=list)
    client_id: str = field(default_factory=lambda: f"listener-{uuid.uuid4().hex[:8]}")

    async def run(self) -> None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 600
        url = BrokerUrl.parse(self.url)
        while True:
            try:
                async with aiomqtt.Client(
                    url.host,
                    url.port,
                    identifier=self.client_id,
                    protocol=aiomqtt.ProtocolVersion.V5,
                    clean_start=False,
                    properties=properties,
                ) as client:
                    await client.subscribe("transcript/#", qos=1)
                    await client.subscribe("orac/node/+/status", qos=1)
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        if message.topic.matches("transcript/#"):
                            t = decode_transcript(message.payload)
                            if isinstance(t, Final):
                                self.finals.append(t)
                        else:
                            status = NodeStatus.decode(message.payload)
                            self.statuses.append((time.monotonic(), status))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    def of(self, session: str) -> list[Final]:
        return [f for f in self.finals if f.session == session]

    async def wait_final(self, session: str, timeout: float = 60.0) -> Final:
        async with asyncio.timeout(timeout):
            while not self.of(session):
                await asyncio.sleep(0.05)
        return self.of(session)[0]

    async def wait_ready(self, node_id: str, after: float, timeout: float = 30.0) -> float:
        """Seconds from ``after`` until the node said ``ready``."""
        async with asyncio.timeout(timeout):
            while True:
                for at, status in self.statuses:
                    if at >= after and status.node == node_id and status.state == "ready":
                        return at - after
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def listening(url: str) -> AsyncIterator[Listener]:
    listener = Listener(url)
    task = asyncio.create_task(listener.run())
    await asyncio.sleep(0.3)  # subscribed
    try:
        yield listener
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def publish_through_restarts(
    url: str, device: str, chunks: list[bytes], *, pace_s: float = 0.02
) -> None:
    """A satellite that keeps each chunk until the broker has taken it (QoS 1, retries)."""
    i = 0
    while i < len(chunks):
        try:
            async with connect(url) as client:
                while i < len(chunks):
                    await client.publish(audio_topic(device), chunks[i], qos=1)
                    i += 1
                    await asyncio.sleep(pace_s)
        except Exception:  # the broker is away: wait, reconnect, resend chunk i
            await asyncio.sleep(0.2)
