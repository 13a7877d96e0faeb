"""Nothing is lost when the broker restarts or the node is killed: exactly one final each.

Real processes throughout: a Mosquitto with persistence that the tests stop and
start again on the same port, and ``orac-node run`` processes that they
SIGKILL and restart with the same node id (so the same broker session and the
same spool).
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from pathlib import Path

from orac_node.client import connect, wait_for_state
from orac_node.ingest.spool import SUFFIX
from orac_node.ops.localbroker import LocalBroker
from orac_node.wire import audio_topic, topic_config_topic
from tests.conftest import AUDIO, MODEL
from tests.integration.accuracy import word_error_rate
from tests.integration.harness import start_node
from tests.integration.restarts import (
    chunks_of,
    listening,
    persistent_broker,
    publish_through_restarts,
)

GOOD_NIGHT = AUDIO / "commands" / "utt019.wav"  # "good night"
WHAT_TIME = AUDIO / "commands" / "utt005.wav"  # "what time is it"
THERMOSTAT = AUDIO / "commands" / "utt015.wav"  # "set the thermostat to twenty one degrees"


async def _wait_offline(url: str, node_id: str) -> None:
    async with connect(url) as client, asyncio.timeout(15):
        await wait_for_state(client, node_id, "offline")


def _spool_files(workdir: Path) -> list[Path]:
    return list((workdir / "spool").glob(f"*{SUFFIX}"))


async def test_node_killed_mid_utterance_still_gives_exactly_one_final(tmp_path: Path) -> None:
    broker = persistent_broker(tmp_path / "broker")
    node_dir = tmp_path / "node"
    node_id = "durable-kill"
    node = await asyncio.to_thread(start_node, broker.url, node_dir, MODEL, node_id, {})
    session = uuid.uuid4().hex[:16]
    chunks = chunks_of(THERMOSTAT, session)
    half = len(chunks) // 2
    try:
        async with listening(broker.url) as listener:
            await publish_through_restarts(broker.url, "kitchen", chunks[:half], pace_s=0.0)
            async with asyncio.timeout(10):  # the node has spooled what it took
                while not _spool_files(node_dir):
                    await asyncio.sleep(0.05)
            await asyncio.to_thread(node.stop, signal.SIGKILL)
            await _wait_offline(broker.url, node_id)
            # the satellite goes on while the node is dead: the broker queues for it
            await publish_through_restarts(broker.url, "kitchen", chunks[half:], pace_s=0.0)
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
    broker = persistent_broker(tmp_path / "broker")
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
                    publish_through_restarts(broker.url, dev, chunks_of(clips[dev], sessions[dev]))
                )
                for dev in sessions
            ]
            await asyncio.sleep(1.0)  # both mid-utterance
            broker.stop()  # SIGTERM: mosquitto writes its store
            await asyncio.sleep(1.5)
            broker = persistent_broker(tmp_path / "broker", port=broker.port)
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
    broker = persistent_broker(tmp_path / "broker")
    node_id = "durable-restarts"
    node = await asyncio.to_thread(start_node, broker.url, tmp_path / "node", MODEL, node_id, {})
    times = []
    try:
        async with listening(broker.url) as listener:
            for _ in range(5):
                broker.stop()
                await asyncio.sleep(1.0)
                broker = persistent_broker(tmp_path / "broker", port=broker.port)
                times.append(await listener.wait_ready(node_id, time.monotonic()))
        print("node ready again after broker restarts (s):", [round(t, 2) for t in times])
        assert max(times) < 15.0  # reconnect_max_s is 4 s; this only catches a hang
    finally:
        await asyncio.to_thread(node.stop, signal.SIGTERM)
        broker.stop()
    assert "broker had no session" not in node.log()  # persistence kept it each time


async def test_a_session_begun_while_draining_goes_to_the_next_run(tmp_path: Path) -> None:
    broker = persistent_broker(tmp_path / "broker")
    node_dir, node_id = tmp_path / "node", "durable-drain"
    node = await asyncio.to_thread(start_node, broker.url, node_dir, MODEL, node_id, {})
    open_session, new_session = uuid.uuid4().hex[:16], uuid.uuid4().hex[:16]
    first = chunks_of(THERMOSTAT, open_session)
    try:
        async with listening(broker.url) as listener:
            await publish_through_restarts(broker.url, "kitchen", first[:100], pace_s=0.0)
            node.process.send_signal(signal.SIGTERM)  # drain begins, kitchen mid-sentence
            async with asyncio.timeout(10):
                while not any(s.state == "draining" for _, s in listener.statuses):
                    await asyncio.sleep(0.02)
            # the open session may finish; a new one is left for the next run
            await publish_through_restarts(broker.url, "kitchen", first[100:], pace_s=0.0)
            await publish_through_restarts(
                broker.url, "hall", chunks_of(WHAT_TIME, new_session), pace_s=0.0
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
    broker = persistent_broker(tmp_path / "broker")
    node = await asyncio.to_thread(start_node, broker.url, tmp_path / "node", MODEL, "rejoin", {})
    session = uuid.uuid4().hex[:16]
    chunks = chunks_of(THERMOSTAT, session)
    try:
        async with listening(broker.url) as listener:
            await publish_through_restarts(broker.url, "kitchen", chunks[:80], pace_s=0.0)
            await asyncio.sleep(1.0)  # Wi-Fi drops; idle_timeout_s is 3 s
            await publish_through_restarts(broker.url, "kitchen", chunks[80:], pace_s=0.0)
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
                for chunk in chunks_of(jfk, "before", topic="speech"):
                    await mqtt.publish(audio_topic("podium"), chunk, qos=1)
            before = await listener.wait_final("before")
        broker.stop()
        broker = LocalBroker(tmp_path / "broker", port=broker.port).start()  # empty
        async with listening(broker.url) as listener:
            try:
                await listener.wait_ready(node_id, 0.0)
            except TimeoutError:
                raise AssertionError(f"the node did not come back:\n{node.log()}") from None
            async with connect(broker.url) as mqtt:
                for chunk in chunks_of(jfk, "after", topic="speech"):
                    await mqtt.publish(audio_topic("podium"), chunk, qos=1)
            after = await listener.wait_final("after")
    finally:
        await asyncio.to_thread(node.stop, signal.SIGTERM)
        broker.stop()
    assert before.text.startswith("My fellow Americans") and before.wake_word == "and so"
    assert after.text.startswith("And so") and after.wake_word is None
    assert "broker had no session" in node.log()
