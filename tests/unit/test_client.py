"""The client SDK against a real Mosquitto, without a node.

Requests are answered by a small responder written here (the node's side is in
tests/integration/test_client.py): these tests pin what the client puts on the
wire (topics, MQTT v5 properties, payloads) and how it matches what comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import aiomqtt
import numpy as np
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from orac_node import client as client_module
from orac_node.audio import read_wav_bytes
from orac_node.client import (
    Client,
    ClientError,
    RequestError,
    RequestTimeoutError,
    Satellite,
    StreamError,
    SyncClient,
    connect,
)
from orac_node.errors import BrokerError, OracNodeError
from orac_node.ops.localbroker import LocalBroker
from orac_node.wire import (
    RESPONSE_PREFIX,
    AudioChunk,
    Context,
    ErrorReport,
    Final,
    Method,
    Partial,
    Response,
    ResponseError,
    RetranscribeRequest,
    SatelliteStatus,
    TranscribeRequest,
    Transcription,
    audio_topic,
    context_topic,
    error_topic,
    request_topic,
    response_topic,
    satellite_status_topic,
    transcript_topic,
)
from tests.conftest import AUDIO
from tests.factories import final

TRANSCRIPTION = Transcription(
    node="n1",
    model="tiny.en",
    device="kitchen",
    session="s1",
    topic="general",
    text="Turn on the kitchen lights.",
    language="en",
    confidence=0.8,
    rejected=None,
    audio_s=2.5,
    decode_ms=120.0,
    prompt="",
    beam_size=1,
    ts=1.0,
)


FINAL = final(
    node="n1",
    device="kitchen",
    session="s1",
    topic="general",
    text="Turn on the kitchen lights.",
    confidence=0.8,
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Request:
    """One request as the responder saw it."""

    topic: str
    payload: bytes
    response_topic: str
    correlation: bytes


Answer = Callable[[Request], Awaitable[Response | None]]


@dataclass
class Responder:
    """Plays a node's request side: records requests, answers with ``answer``."""

    requests: list[Request] = field(default_factory=list)


@contextlib.asynccontextmanager
async def responder(url: str, answer: Answer) -> AsyncIterator[Responder]:
    seen = Responder()
    async with connect(url) as mqtt:
        await mqtt.subscribe("orac/request/+/+", qos=1)

        async def reply(request: Request) -> None:
            response = await answer(request)
            if response is None:
                return
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = request.correlation
            await mqtt.publish(
                request.response_topic, response.encode(), qos=1, properties=properties
            )

        async def serve() -> None:
            async with asyncio.TaskGroup() as tasks:
                async for message in mqtt.messages:
                    assert isinstance(message.payload, bytes)
                    assert message.properties is not None
                    request = Request(
                        str(message.topic),
                        message.payload,
                        getattr(message.properties, "ResponseTopic", ""),
                        getattr(message.properties, "CorrelationData", b""),
                    )
                    seen.requests.append(request)
                    tasks.create_task(reply(request))

        task = asyncio.create_task(serve())
        try:
            yield seen
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def ok(result: dict[str, object]) -> Answer:
    async def answer(request: Request) -> Response:
        return Response("n1", request.topic.rsplit("/", 1)[1], True, time.time(), result)

    return answer


def test_public_api_is_pinned() -> None:
    assert sorted(client_module.__all__) == [
        "AudioSource",
        "BrokerLogin",
        "Client",
        "ClientError",
        "FileSource",
        "RequestError",
        "RequestTimeoutError",
        "Satellite",
        "StreamError",
        "SyncClient",
        "TranscriptFeed",
        "connect",
        "format_transcript",
        "split_chunks",
        "stream_raw",
        "transcripts",
        "wait_for_state",
    ]
    assert issubclass(RequestTimeoutError, TimeoutError)
    for error in (RequestError, RequestTimeoutError, StreamError):
        assert issubclass(error, ClientError) and issubclass(error, OracNodeError)


async def test_transcribe_sends_the_samples_as_a_wav_with_response_properties(
    broker: LocalBroker,
) -> None:
    samples = (np.sin(np.linspace(0, 200, 16_000)) * 0.5).astype(np.float32)
    async with (
        responder(broker.url, ok(asdict(TRANSCRIPTION))) as seen,
        Client(broker.url, device="kitchen", heartbeat=False) as c,
    ):
        result = await c.transcribe(
            samples, topic="general", language="en", prompt="lights", model="base.en"
        )
    assert result == TRANSCRIPTION
    [request] = seen.requests
    assert request.topic == request_topic(Method.TRANSCRIBE, "any")
    # Answers go under the client's own response prefix, matched on correlation data.
    assert request.response_topic.startswith(response_topic(c.owner, ""))
    assert request.response_topic.startswith(RESPONSE_PREFIX)
    assert request.correlation
    decoded = TranscribeRequest.decode(request.payload)
    assert (decoded.device, decoded.topic, decoded.language) == ("kitchen", "general", "en")
    assert (decoded.prompt, decoded.model, decoded.publish) == ("lights", "base.en", True)
    assert np.abs(read_wav_bytes(decoded.audio) - samples).max() < 1e-4


async def test_transcribe_sends_a_file_as_it_is(broker: LocalBroker) -> None:
    path = AUDIO / "commands" / "utt000.wav"
    async with (
        responder(broker.url, ok(asdict(TRANSCRIPTION))) as seen,
        Client(broker.url, heartbeat=False) as c,
    ):
        await c.transcribe(path, publish=False, node="n1")
        await c.transcribe(str(path))
    first, second = (TranscribeRequest.decode(r.payload) for r in seen.requests)
    assert first.audio == second.audio == path.read_bytes()
    assert (first.device, first.publish) == ("request", False)
    assert seen.requests[0].topic == request_topic(Method.TRANSCRIBE, "n1")


async def test_the_url_user_owns_the_response_topic(broker: LocalBroker) -> None:
    url = broker.url.replace("mqtt://", "mqtt://orac-core@")
    async with responder(broker.url, ok({"models": []})) as seen, Client(url) as c:
        assert await c.describe() == {"models": []}
    assert c.owner == "orac-core"
    assert seen.requests[0].response_topic.startswith("orac/response/orac-core/")
    assert seen.requests[0].payload == b"{}"


async def test_concurrent_requests_each_get_their_own_answer(broker: LocalBroker) -> None:
    async def answer(request: Request) -> Response:
        target = request.topic.split("/")[2]
        await asyncio.sleep(0.3 - 0.05 * int(target[1:]))  # answered in reverse order
        return Response(target, "describe", True, time.time(), {"node": target})

    async with responder(broker.url, answer), Client(broker.url) as c:
        results = await asyncio.gather(*(c.describe(f"n{i}") for i in range(5)))
    assert [r["node"] for r in results] == [f"n{i}" for i in range(5)]


async def test_an_error_answer_raises_request_error(broker: LocalBroker) -> None:
    async def answer(request: Request) -> Response:
        error = ResponseError("not_found", "session s9 is not held")
        return Response("n7", "retranscribe", False, time.time(), error=error)

    async with responder(broker.url, answer) as seen, Client(broker.url) as c:
        with pytest.raises(RequestError) as caught:
            await c.retranscribe(FINAL, model="base.en", beam_size=5)
        with pytest.raises(RequestError):
            await c.retranscribe("hall", "s9", node="n2", prompt="Kodi")
    assert caught.value.code == "not_found" and "s9" in caught.value.message
    first, second = seen.requests
    assert first.topic == request_topic(Method.RETRANSCRIBE, "n1")  # the final's node
    assert RetranscribeRequest.decode(first.payload) == RetranscribeRequest(
        "kitchen", "s1", model="base.en", beam_size=5
    )
    assert second.topic == request_topic(Method.RETRANSCRIBE, "n2")
    assert RetranscribeRequest.decode(second.payload) == RetranscribeRequest(
        "hall", "s9", prompt="Kodi"
    )


async def test_no_answer_is_a_timeout(broker: LocalBroker) -> None:
    async def silent(request: Request) -> None:
        return None

    async with responder(broker.url, silent), Client(broker.url, timeout=0.3) as c:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="no answer to describe"):
            await c.describe()
        with pytest.raises(RequestTimeoutError):
            await c.transcribe(b"RIFF", timeout=0.1)
        assert time.monotonic() - started < 2
        assert not c._pending  # nothing left waiting


async def test_a_lost_connection_fails_waiting_requests(tmp_path: Path) -> None:
    with LocalBroker(tmp_path) as private:
        async with Client(private.url) as c:
            waiting = asyncio.create_task(c.describe(timeout=30))
            await asyncio.sleep(0.3)
            private.stop()
            with pytest.raises(BrokerError):
                await waiting
            with pytest.raises(BrokerError):
                await c.describe()


async def test_set_context_is_retained_with_expiry_and_cleared(broker: LocalBroker) -> None:
    device, topic = unique("ctx"), unique("topic")
    async with Client(broker.url) as c:
        await c.set_context("Kitchen lights, the hob", device=device, ttl_s=1.5)
        await c.set_context("Kodi, Netflix", topic=topic)
        retained = await retained_messages(broker.url, "orac/context/#", device, topic)
        assert set(retained) == {context_topic(device=device), context_topic(topic=topic)}
        device_msg = retained[context_topic(device=device)]
        context = Context.decode(device_msg.payload)
        assert (context.prompt, context.ttl_s) == ("Kitchen lights, the hob", 1.5)
        assert abs(context.ts - time.time()) < 5
        assert 0 < expiry(device_msg) <= 2  # ceil(1.5), counting down
        assert 298 <= expiry(retained[context_topic(topic=topic)]) <= 300
        await asyncio.sleep(2.2)  # the broker has dropped the device's context
        await c.clear_context(topic=topic)  # and this one is cleared at once
        assert await retained_messages(broker.url, "orac/context/#", device, topic) == {}
        with pytest.raises(ValueError, match="exactly one"):
            await c.set_context("x", device="a", topic="b")
        with pytest.raises(ValueError, match="exactly one"):
            await c.clear_context()
        with pytest.raises(ValueError, match="ttl_s"):
            await c.set_context("x", device="a", ttl_s=0)
        with pytest.raises(ValueError, match="topic level"):
            await c.set_context("x", device="a/b")


def expiry(message: aiomqtt.Message) -> int:
    """The message's remaining MQTT v5 expiry interval, seconds."""
    interval = getattr(message.properties, "MessageExpiryInterval", None)
    assert isinstance(interval, int), "no expiry on the message"
    return interval


async def retained_messages(url: str, topic_filter: str, *names: str) -> dict[str, aiomqtt.Message]:
    """Retained messages under ``topic_filter`` whose topic has a level in ``names``."""
    found: dict[str, aiomqtt.Message] = {}
    async with connect(url) as mqtt:
        await mqtt.subscribe(topic_filter, qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                async for message in mqtt.messages:
                    if message.retain and set(names) & set(str(message.topic).split("/")):
                        found[str(message.topic)] = message
    return found


async def test_heartbeat_is_online_while_connected_then_offline(broker: LocalBroker) -> None:
    device = unique("sat")
    async with Client(broker.url, device=device, topics=["general", "music"]):
        [online] = (await retained_messages(broker.url, "orac/satellite/+/status", device)).values()
        status = SatelliteStatus.decode(online.payload)
        assert (status.device, status.state, status.topics) == (
            device,
            "online",
            ["general", "music"],
        )
    [offline] = (await retained_messages(broker.url, "orac/satellite/+/status", device)).values()
    assert SatelliteStatus.decode(offline.payload).state == "offline"
    quiet = unique("quiet")
    async with Client(broker.url, device=quiet, heartbeat=False):
        assert await retained_messages(broker.url, "orac/satellite/+/status", quiet) == {}


async def test_a_killed_satellite_goes_offline_by_its_last_will(broker: LocalBroker) -> None:
    device = unique("sat")
    script = (
        "import asyncio, sys\n"
        "from orac_node.client import Client\n"
        "async def main():\n"
        f"    async with Client({broker.url!r}, device={device!r}):\n"
        "        print('up', flush=True)\n"
        "        await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20):
            assert await process.stdout.readline() == b"up\n"
        [online] = (await retained_messages(broker.url, "orac/satellite/+/status", device)).values()
        assert SatelliteStatus.decode(online.payload).state == "online"
    finally:
        process.kill()  # no clean exit: the broker publishes the Last Will
        await process.wait()
    await asyncio.sleep(0.3)
    [offline] = (await retained_messages(broker.url, "orac/satellite/+/status", device)).values()
    assert SatelliteStatus.decode(offline.payload).state == "offline"


async def test_overlapping_transcript_readers_each_see_a_message_once(
    broker: LocalBroker,
) -> None:
    topic = unique("t")
    final = replace(FINAL, topic=topic)
    async with Client(broker.url) as c:
        got: dict[str, list[Partial | Final]] = {"one": [], "all": []}

        async def read(name: str, feed: AsyncIterable[Partial | Final]) -> None:
            async for t in feed:
                got[name].append(t)

        async with c.transcripts(topic) as one:  # subscribed from here on
            first = asyncio.create_task(read("one", one))
            every = asyncio.create_task(read("all", c.transcripts()))  # at its first read
            await wait_until(lambda: len(c.subscriptions) == 2)
            async with connect(broker.url) as mqtt:
                await mqtt.publish(transcript_topic(topic), final.encode(), qos=1)
                await mqtt.publish(transcript_topic(topic), b"not json", qos=1)  # skipped
            await wait_until(lambda: len(got["one"]) >= 1 and len(got["all"]) >= 1)
            await asyncio.sleep(0.3)
            every.cancel()  # leaving the loop closes that feed
            await wait_until(lambda: c.subscriptions == {transcript_topic(topic)})
        await wait_until(lambda: not c.subscriptions)  # and leaving the block this one
        await asyncio.wait([first])
        assert first.result() is None  # its loop ended when the feed closed
        assert got["one"] == [final]
        assert [t for t in got["all"] if t.topic == topic] == [final]


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_stream_pcm_recuts_blocks_into_whole_chunks(broker: LocalBroker) -> None:
    device = unique("mic")
    rng = np.random.default_rng(1)
    pcm = rng.integers(-3000, 3000, 16_000 * 3 // 4, dtype="<i2").tobytes() + b"\x01"
    sizes = [7, 333, 1001, 2, 64, 5000, 1]

    async def blocks() -> AsyncIterator[bytes]:
        start = 0
        while start < len(pcm):
            size = sizes[start % len(sizes)]
            yield pcm[start : start + size]
            start += size

    async with connect(broker.url) as mqtt:
        await mqtt.subscribe(audio_topic(device), qos=1)
        session = await Satellite(mqtt, device).stream_pcm(blocks(), chunk_ms=20, topic="general")
        chunks: list[AudioChunk] = []
        async with asyncio.timeout(5):
            async for message in mqtt.messages:
                chunks.append(AudioChunk.decode(message.payload))
                if chunks[-1].end:
                    break
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert {c.session for c in chunks} == {session} and {c.topic for c in chunks} == {"general"}
    assert all(len(c.pcm) == 640 and not c.end for c in chunks[:-1])
    assert chunks[-1].end and len(chunks[-1].pcm) < 640
    assert b"".join(c.pcm for c in chunks) == pcm[:-1]  # whole samples only


async def test_stream_raises_the_error_report_naming_its_session(broker: LocalBroker) -> None:
    device = unique("sat")

    async def refuse() -> None:  # plays a node at its session limit
        async with connect(broker.url) as mqtt:
            await mqtt.subscribe(audio_topic(device), qos=1)
            async for message in mqtt.messages:
                chunk = AudioChunk.decode(message.payload)
                for session in ("someone-else", None, chunk.session):
                    report = ErrorReport("n1", device, "too_many_sessions", "full", 1.0, session)
                    await mqtt.publish(error_topic(device), report.encode(), qos=1)
                return

    node = asyncio.create_task(refuse())
    await asyncio.sleep(0.3)
    async with Client(broker.url, device=device, heartbeat=False) as c:
        with pytest.raises(StreamError) as caught:
            async for _ in c.stream(np.zeros(16_000 * 5, np.float32), session="mine"):
                pass
    await node
    assert caught.value.code == "too_many_sessions"
    assert caught.value.report.session == "mine"


async def test_misuse_fails_loudly(broker: LocalBroker) -> None:
    c = Client(broker.url)
    with pytest.raises(ClientError, match="async with"):
        await c.describe()
    with pytest.raises(BrokerError, match="broker url"):
        Client("http://example.com")
    with pytest.raises(ValueError, match="topic level"):
        Client(broker.url, device="kitchen/left")
    async with c:
        with pytest.raises(ClientError, match="needs a device"):
            async for _ in c.stream(np.zeros(100, np.float32)):
                pass
        with pytest.raises(ValueError, match="needs the session"):
            await c.retranscribe("kitchen")
    with pytest.raises(ClientError, match="entered once"):
        async with c:
            pass
    async with Client(broker.url, device="d") as c2:
        with pytest.raises(TypeError, match="float samples"):
            async for _ in c2.stream(np.zeros(100, np.int16)):
                pass


async def test_sync_client_wraps_the_same_calls(broker: LocalBroker) -> None:
    device = unique("sync")

    def script() -> tuple[Transcription, dict[str, object], str]:
        with SyncClient(broker.url, device=device, topics=["general"]) as c:
            result = c.transcribe(b"RIFF....WAVE", topic="general")
            description = c.describe("n3")
            c.set_context("Kodi", device=device, ttl_s=10)
            return result, description, c.client.owner

    async with responder(broker.url, ok(asdict(TRANSCRIPTION))) as seen:
        result, description, owner = await asyncio.to_thread(script)
    assert result == TRANSCRIPTION
    assert description == asdict(TRANSCRIPTION)
    assert seen.requests[0].response_topic.startswith(response_topic(owner, ""))
    retained = await retained_messages(broker.url, "orac/#", device)
    assert set(retained) == {satellite_status_topic(device), context_topic(device=device)}
    status = SatelliteStatus.decode(retained[satellite_status_topic(device)].payload)
    assert status.state == "offline"
    with pytest.raises(ClientError, match="with SyncClient"):
        SyncClient(broker.url).describe()
