"""Nothing is lost when the broker restarts or the node is killed: exactly one final each.

Real processes throughout: a Mosquitto with persistence that the tests stop and
start again on the same port, and ``orac-node run`` processes that they
SIGKILL and restart with the same node id (so the same broker session and the
same spool).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from orac_node.bench.runner import BROKER_QUEUES
from orac_node.client import connect, split_chunks, wait_for_state
from orac_node.config import BrokerUrl
from orac_node.ingest.spool import SUFFIX
from orac_node.ops.localbroker import LocalBroker
from orac_node.wire import (
    SAMPLE_RATE,
    AudioChunk,
    AudioFormat,
    Final,
    NodeStatus,
    audio_topic,
    decode_transcript,
    topic_config_topic,
)
from tests.conftest import AUDIO, MODEL
from tests.integration.accuracy import word_error_rate
from tests.integration.conftest import load
from tests.integration.harness import start_node

GOOD_NIGHT = AUDIO / "commands" / "utt019.wav"  # "good night"
WHAT_TIME = AUDIO / "commands" / "utt005.wav"  # "what time is it"
THERMOSTAT = AUDIO / "commands" / "utt015.wav"  # "set the thermostat to twenty one degrees"


def _persistent_broker(workdir: Path, port: int | None = None) -> LocalBroker:
    """Mosquitto with persistence on, saving on shutdown (what mosquitto/ ships)."""
    store = workdir / "store"
    store.mkdir(parents=True, exist_ok=True)
    extra = f"persistence true\npersistence_location {store}/\n{BROKER_QUEUES}"
    return LocalBroker(workdir, port=port, extra_config=extra).start()


def _chunks(path: Path, session: str, *, topic: str | None = None) -> list[bytes]:
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


async def _publish_through_restarts(
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


async def _wait_offline(url: str, node_id: str) -> None:
    async with connect(url) as client, asyncio.timeout(15):
        await wait_for_state(client, node_id, "offline")


def _spool_files(workdir: Path) -> list[Path]:
    return list((workdir / "spool").glob(f"*{SUFFIX}"))


async def test_node_killed_mid_utterance_still_gives_exactly_one_final(tmp_path: Path) -> None:
    broker = _persistent_broker(tmp_path / "broker")
    node_dir = tmp_path / "node"
    node_id = "durable-kill"
    node = await asyncio.to_thread(start_node, broker.url, node_dir, MODEL, node_id, {})
    session = uuid.uuid4().hex[:16]
    chunks = _chunks(THERMOSTAT, session)
    half = len(chunks) // 2
    try:
        async with listening(broker.url) as listener:
            await _publish_through_restarts(broker.url, "kitchen", chunks[:half], pace_s=0.0)
            async with asyncio.timeout(10):  # the node has spooled what it took
                while not _spool_files(node_dir):
                    await asyncio.sleep(0.05)
            await asyncio.to_thread(node.stop, signal.SIGKILL)
            await _wait_offline(broker.url, node_id)
            # the satellite goes on while the node is dead: the broker queues for it
            await _publish_through_restarts(broker.url, "kitchen", chunks[half:], pace_s=0.0)
            node = await asyncio.to_thread(start_node, broker.url, node_dir, MODEL, node_id, {})
            final = await listener.wait_final(session)
            assert "recovered 1 session(s)" in node.log()
            assert (final.gaps, final.incomplete) == (0, False), (
                final.chunks,
                final.duplicates,
                final.reason,
                len(chunks),
            )
            reference = "set the thermostat to twenty one degrees"
            assert word_error_rate([reference], [final.text]) < 0.3, final.text
            async with asyncio.timeout(10):  # forgotten once the broker had the final
                while _spool_files(node_dir):
                    await asyncio.sleep(0.05)
            # killed and restarted again: the session is finished, no second final
            await asyncio.to_thread(node.stop, signal.SIGKILL)
            await _wait_offline(broker.url, node_id)
            node = await asyncio.to_thread(start_node, broker.url, node_dir, MODEL, node_id, {})
            await asyncio.sleep(2.0)
            assert len(listener.of(session)) == 1
    finally:
        await asyncio.to_thread(node.stop, signal.SIGTERM)
        broker.stop()


async def test_broker_restart_mid_stream_loses_nothing(tmp_path: Path) -> None:
    broker = _persistent_broker(tmp_path / "broker")
    node_id = "durable-broker"
    # The node restarts its idle clocks when it is back; the test's satellites then
    # reconnect on their own (every 0.2 s), which on a loaded box can take longer than
    # the 3 s default: the session would end idle, incomplete. One full-suite run got
    # a final without text here, likely that; the check below now names it.
    patient = {"endpoint": {"idle_timeout_s": 15}}
    node = await asyncio.to_thread(
        start_node, broker.url, tmp_path / "node", MODEL, node_id, patient
    )
    sessions = {"kitchen": uuid.uuid4().hex[:16], "hall": uuid.uuid4().hex[:16]}
    clips = {"kitchen": THERMOSTAT, "hall": GOOD_NIGHT}
    try:
        async with listening(broker.url) as listener:
            streams = [
                asyncio.create_task(
                    _publish_through_restarts(broker.url, dev, _chunks(clips[dev], sessions[dev]))
                )
                for dev in sessions
            ]
            await asyncio.sleep(1.0)  # both mid-utterance
            broker.stop()  # SIGTERM: mosquitto writes its store
            await asyncio.sleep(1.5)
            broker = _persistent_broker(tmp_path / "broker", port=broker.port)
            restarted = time.monotonic()
            reconnect_s = await listener.wait_ready(node_id, restarted)
            await asyncio.gather(*streams)
            finals = {dev: await listener.wait_final(s) for dev, s in sessions.items()}
            await asyncio.sleep(2.0)  # time for a duplicate to show up, if there were one
            counts = Counter(f.session for f in listener.finals if f.session in sessions.values())
            assert counts == Counter(sessions.values()), counts
            for final in finals.values():
                assert (final.gaps, final.incomplete) == (0, False), final
                why = (final.rejected, final.reason, final.confidence, node.log()[-3000:])
                assert final.text, why
            print(f"node ready again {reconnect_s:.2f} s after the broker came back")
            assert reconnect_s < 15.0  # reconnect_max_s is 4 s; this only catches a hang
            assert "reconnecting in" in node.log()
    finally:
        await asyncio.to_thread(node.stop, signal.SIGTERM)
        broker.stop()


async def test_reconnect_times_over_broker_restarts(tmp_path: Path) -> None:
    """The figure for the issue's reconnect target (p95 <= 5 s), printed, loosely bounded."""
    broker = _persistent_broker(tmp_path / "broker")
    node_id = "durable-restarts"
    node = await asyncio.to_thread(start_node, broker.url, tmp_path / "node", MODEL, node_id, {})
    times = []
    try:
        async with listening(broker.url) as listener:
            for _ in range(5):
                broker.stop()
                await asyncio.sleep(1.0)
                broker = _persistent_broker(tmp_path / "broker", port=broker.port)
                times.append(await listener.wait_ready(node_id, time.monotonic()))
        print("node ready again after broker restarts (s):", [round(t, 2) for t in times])
        assert max(times) < 15.0  # reconnect_max_s is 4 s; this only catches a hang
    finally:
        await asyncio.to_thread(node.stop, signal.SIGTERM)
        broker.stop()
    assert "broker had no session" not in node.log()  # persistence kept it each time


async def test_a_session_begun_while_draining_goes_to_the_next_run(tmp_path: Path) -> None:
    broker = _persistent_broker(tmp_path / "broker")
    node_dir, node_id = tmp_path / "node", "durable-drain"
    node = await asyncio.to_thread(start_node, broker.url, node_dir, MODEL, node_id, {})
    open_session, new_session = uuid.uuid4().hex[:16], uuid.uuid4().hex[:16]
    first = _chunks(THERMOSTAT, open_session)
    try:
        async with listening(broker.url) as listener:
            await _publish_through_restarts(broker.url, "kitchen", first[:100], pace_s=0.0)
            node.process.send_signal(signal.SIGTERM)  # drain begins, kitchen mid-sentence
            async with asyncio.timeout(10):
                while not any(s.state == "draining" for _, s in listener.statuses):
                    await asyncio.sleep(0.02)
            # the open session may finish; a new one is left for the next run
            await _publish_through_restarts(broker.url, "kitchen", first[100:], pace_s=0.0)
            await _publish_through_restarts(
                broker.url, "hall", _chunks(WHAT_TIME, new_session), pace_s=0.0
            )
            finished = await listener.wait_final(open_session)
            assert finished.reason == "end" and not finished.incomplete
            assert await asyncio.to_thread(node.process.wait, 30) == 0
            assert listener.of(new_session) == []
            node = await asyncio.to_thread(start_node, broker.url, node_dir, MODEL, node_id, {})
            final = await listener.wait_final(new_session)
            assert word_error_rate(["what time is it"], [final.text]) < 0.3, final.text
            assert final.gaps == 0 and not final.incomplete
            assert len(listener.of(open_session)) == 1
    finally:
        await asyncio.to_thread(node.stop, signal.SIGTERM)
        broker.stop()


async def test_a_satellite_that_reconnects_mid_utterance_is_joined(tmp_path: Path) -> None:
    """A new connection continuing the same session, within the idle timeout, is one utterance."""
    broker = _persistent_broker(tmp_path / "broker")
    node = await asyncio.to_thread(start_node, broker.url, tmp_path / "node", MODEL, "rejoin", {})
    session = uuid.uuid4().hex[:16]
    chunks = _chunks(THERMOSTAT, session)
    try:
        async with listening(broker.url) as listener:
            await _publish_through_restarts(broker.url, "kitchen", chunks[:80], pace_s=0.0)
            await asyncio.sleep(1.0)  # Wi-Fi drops; idle_timeout_s is 3 s
            await _publish_through_restarts(broker.url, "kitchen", chunks[80:], pace_s=0.0)
            final = await listener.wait_final(session)
            await asyncio.sleep(1.0)
            assert len(listener.of(session)) == 1
            assert (final.endpoint, final.gaps, final.incomplete) == ("end", 0, False)
            reference = "set the thermostat to twenty one degrees"
            assert word_error_rate([reference], [final.text]) < 0.3, final.text
    finally:
        await asyncio.to_thread(node.stop, signal.SIGTERM)
        broker.stop()


async def test_retained_state_is_reread_when_the_broker_lost_the_nodes_session(
    tmp_path: Path,
) -> None:
    """A broker restarted without persistence forgets retained configs: so must the node.

    Over a persistent broker the node keeps its session and re-reads nothing (the
    reconnect test above restarts one five times; its log must not say otherwise).
    """
    broker = LocalBroker(tmp_path / "broker").start()  # no persistence
    node_id = "durable-forgets"
    node = await asyncio.to_thread(start_node, broker.url, tmp_path / "node", MODEL, node_id, {})
    jfk = AUDIO / "speech" / "jfk.wav"  # "And so my fellow Americans, ..."
    config = b'{"wake_words": ["and so"]}'
    try:
        async with listening(broker.url) as listener:
            async with connect(broker.url) as mqtt:
                await mqtt.publish(topic_config_topic("speech"), config, qos=1, retain=True)
                await asyncio.sleep(0.5)
                for chunk in _chunks(jfk, "before", topic="speech"):
                    await mqtt.publish(audio_topic("podium"), chunk, qos=1)
            before = await listener.wait_final("before")
        broker.stop()
        broker = LocalBroker(tmp_path / "broker", port=broker.port).start()  # empty
        async with listening(broker.url) as listener:
            await listener.wait_ready(node_id, 0.0)
            async with connect(broker.url) as mqtt:
                for chunk in _chunks(jfk, "after", topic="speech"):
                    await mqtt.publish(audio_topic("podium"), chunk, qos=1)
            after = await listener.wait_final("after")
    finally:
        await asyncio.to_thread(node.stop, signal.SIGTERM)
        broker.stop()
    assert before.text.startswith("My fellow Americans") and before.wake_word == "and so"
    assert after.text.startswith("And so") and after.wake_word is None
    assert "broker had no session" in node.log()
