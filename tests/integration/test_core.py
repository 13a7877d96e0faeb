"""ORAC Core's interfaces on a real node: requests, context, wake words, webhooks.

Everything goes over a real Mosquitto to a real node decoding the shared audio
with the real model; requests are sent the way Core sends them, with MQTT v5
response topic and correlation data (the client SDK is tested separately in
test_client.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from orac_node.consumers.webhooks.signing import SIGNATURE_HEADER, verify
from orac_node.ops.localbroker import LocalBroker, free_port
from orac_node.wire import (
    REQUEST_ANY,
    Context,
    ErrorCode,
    Method,
    Response,
    RetranscribeRequest,
    SatelliteStatus,
    TopicConfig,
    TranscribeRequest,
    TranscriptionEvent,
    context_topic,
    response_topic,
    satellite_status_topic,
    topic_config_topic,
)
from tests.conftest import AUDIO, MODEL
from tests.integration.conftest import load
from tests.integration.harness import Harness, RunningNode, harness, start_node
from tests.integration.receivers import receiving

VOCABULARY = (
    "Turn on the kitchen lights. Set the thermostat. Open the curtains in the lounge."
    " Play the radio."
)
"""A household's command vocabulary, as Core would send it. Measured with the node's
decode settings: with it, tiny.en hears utt006 as "Switch off the television."; without
it, "Switch off from the television." (greedy decoding heard "We're chaff in the
television.")."""
UNPROMPTED = "Switch off from the television."
"""What tiny.en hears in utt006 with no prompt, at the default beam 5."""
TELEVISION = AUDIO / "commands" / "utt006.wav"  # "switch off the television"
HOOK_PORT = free_port()
HOOK_SECRET = "hook-secret"
NODE_CONFIG: dict[str, object] = {
    "model": {"extra": {"tiny-alt": str(MODEL)}},
    "registry": {
        "topics": {
            "speeches": {"wake_words": ["and so"]},
            "off-air": {"enabled": False},
            "alt-model": {"model": "tiny-alt"},
            "odd-model": {"model": "not-here"},  # a topic config naming a model this node lacks
            "hooked": {
                "webhooks": [{"url": f"http://127.0.0.1:{HOOK_PORT}/hook", "secret": HOOK_SECRET}]
            },
        }
    },
    # a receiver on this machine must be allowed; quick retries for the outage test
    "webhooks": {"allow": ["127.0.0.0/8"], "backoff_initial_s": 0.2, "backoff_max_s": 0.5},
}


class Requester:
    """Core's side of request/response: a response topic of its own, matched by correlation."""

    def __init__(self, mqtt: aiomqtt.Client) -> None:
        self.mqtt = mqtt
        self.owner = f"core-{uuid.uuid4().hex[:6]}"
        self._waiting: dict[bytes, asyncio.Future[Response]] = {}

    async def start(self) -> None:
        await self.mqtt.subscribe(response_topic(self.owner, "#"), qos=1)

    def on_message(self, message: aiomqtt.Message) -> bool:
        if not message.topic.matches(response_topic(self.owner, "#")):
            return False
        correlation = getattr(message.properties, "CorrelationData", None)
        future = self._waiting.pop(bytes(correlation or b""), None)
        if future is not None:
            assert isinstance(message.payload, bytes)
            future.set_result(Response.decode(message.payload))
        return True

    async def ask(
        self, method: str, payload: bytes, *, target: str = REQUEST_ANY, timeout: float = 60
    ) -> Response:
        correlation = uuid.uuid4().bytes
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ResponseTopic = response_topic(self.owner, "r")
        properties.CorrelationData = correlation
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._waiting[correlation] = future
        topic = f"orac/request/{target}/{method}"
        await self.mqtt.publish(topic, payload, qos=1, properties=properties)
        async with asyncio.timeout(timeout):
            return await future


@contextlib.asynccontextmanager
async def _core(h: Harness) -> AsyncIterator[Requester]:
    requester = Requester(h.mqtt)
    await requester.start()
    # The harness files messages it does not know under .other; route ours from there.
    seen = 0

    async def pump() -> None:
        nonlocal seen
        while True:
            while seen < len(h.other):
                requester.on_message(h.other[seen])
                seen += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(pump())
    try:
        yield requester
    finally:
        task.cancel()


async def test_describe_names_the_models_and_limits(node: RunningNode, broker: LocalBroker) -> None:
    async with harness(broker.url) as h, _core(h) as core:
        response = await core.ask(Method.DESCRIBE, b"{}")
    assert response.ok, response.error
    assert response.node == node.node_id
    result: dict[str, Any] = response.result or {}
    assert result["model"] == "tiny.en"
    assert result["models"] == ["tiny.en", "tiny-alt"]
    assert result["languages"] == ["en"]  # an English-only model
    assert result["tiers"] == {"partials": "tiny.en", "finals": "tiny.en"}
    main, alt = result["model_details"]["tiny.en"], result["model_details"]["tiny-alt"]
    assert (main["multilingual"], main["languages"], main["loaded"]) == (False, ["en"], True)
    assert main["file"] == str(MODEL) and main["load_s"] > 0 and main["memory_mb"] > 10
    assert alt["file"] == str(MODEL)
    assert alt["loaded"] == (alt["load_s"] is not None)  # loaded on first use: a topic's decode
    assert result["limits"]["max_file_s"] == 600
    assert set(result["methods"]) == {"describe", "transcribe", "retranscribe"}


async def test_a_language_the_model_cannot_decode_is_refused(
    node: RunningNode, broker: LocalBroker
) -> None:
    wav = (AUDIO / "commands" / "utt000.wav").read_bytes()
    request = TranscribeRequest(audio=wav, device="script", topic="batch", language="de")
    async with harness(broker.url) as h, _core(h) as core:
        response = await core.ask(Method.TRANSCRIBE, request.encode())
    assert not response.ok and response.error is not None
    assert response.error.code == "unsupported_language"
    assert "English-only" in response.error.message


async def test_transcribe_a_submitted_file_answers_and_publishes(
    node: RunningNode, broker: LocalBroker
) -> None:
    wav = (AUDIO / "commands" / "utt000.wav").read_bytes()
    request = TranscribeRequest(audio=wav, device="script", topic="batch")
    async with harness(broker.url) as h, _core(h) as core:
        response = await core.ask(Method.TRANSCRIBE, request.encode())
        assert response.ok, response.error
        result = response.transcription()
        published = await h.wait_final(result.session, timeout=10)
        quiet = TranscribeRequest(audio=wav, device="script", topic="batch", publish=False)
        unpublished = (await core.ask(Method.TRANSCRIBE, quiet.encode())).transcription()
        await asyncio.sleep(0.5)
    assert "kitchen lights" in result.text.lower()
    assert (result.device, result.topic, result.model) == ("script", "batch", "tiny.en")
    assert 0.3 < result.confidence <= 1 and result.words and result.audio_s > 1
    assert published.text == result.text and published.topic == "batch"
    assert unpublished.text == result.text
    assert unpublished.session not in h.results  # publish: false stays off transcript/


async def test_bad_requests_get_error_answers(node: RunningNode, broker: LocalBroker) -> None:
    async with harness(broker.url) as h, _core(h) as core:
        answers = {
            "not json": await core.ask(Method.TRANSCRIBE, b"{not json"),
            "not base64": await core.ask(Method.TRANSCRIBE, b'{"audio": "%%%"}'),
            "not audio": await core.ask(
                Method.TRANSCRIBE,
                json.dumps({"audio": base64.b64encode(b"hello").decode()}).encode(),
            ),
            "method": await core.ask("explode", b"{}"),
            "session": await core.ask(
                Method.RETRANSCRIBE,
                RetranscribeRequest("kitchen", "never-was").encode(),
                target=node.node_id,
            ),
            "model": await core.ask(
                Method.TRANSCRIBE,
                TranscribeRequest(audio=b"x", model="large-v9").encode(),
            ),
            "disabled": await core.ask(
                Method.TRANSCRIBE, TranscribeRequest(audio=b"x", topic="off-air").encode()
            ),
        }
        # the node keeps serving: a good request right after
        good = await core.ask(Method.DESCRIBE, b"")
    codes = {name: (r.ok, r.error.code if r.error else None) for name, r in answers.items()}
    assert codes == {
        "not json": (False, ErrorCode.BAD_PAYLOAD),
        "not base64": (False, ErrorCode.BAD_FIELD),
        "not audio": (False, ErrorCode.DECODE_FAILED),
        "method": (False, ErrorCode.UNKNOWN_METHOD),
        "session": (False, ErrorCode.NOT_FOUND),
        "model": (False, ErrorCode.UNKNOWN_MODEL),
        "disabled": (False, ErrorCode.TOPIC_DISABLED),
    }
    assert good.ok


async def test_retranscribe_with_a_prompt_or_another_model(
    node: RunningNode, broker: LocalBroker
) -> None:
    device = f"lounge-{uuid.uuid4().hex[:6]}"
    async with harness(broker.url) as h, _core(h) as core:
        final = (await h.session(device, load(TELEVISION))).final
        assert final is not None
        again = RetranscribeRequest(device, final.session, prompt=VOCABULARY)
        prompted = await core.ask(Method.RETRANSCRIBE, again.encode(), target=final.node)
        other = RetranscribeRequest(device, final.session, model="tiny-alt")
        alt = await core.ask(Method.RETRANSCRIBE, other.encode(), target=final.node)
        # to "any": the one node here holds the audio, so it still answers
        plain = await core.ask(
            Method.RETRANSCRIBE, RetranscribeRequest(device, final.session).encode()
        )
    assert final.text == UNPROMPTED
    result = prompted.transcription()
    assert result.text == "Switch off the television."
    assert result.prompt == VOCABULARY and result.session == final.session
    assert alt.transcription().model == "tiny-alt"
    assert alt.transcription().text == final.text  # the same weights under another name
    assert plain.transcription().text == final.text


async def test_context_from_core_prompts_that_devices_finals_until_it_expires(
    node: RunningNode, broker: LocalBroker
) -> None:
    told, other = f"den-{uuid.uuid4().hex[:6]}", f"hall-{uuid.uuid4().hex[:6]}"
    samples = load(TELEVISION)
    async with harness(broker.url) as h:
        context = Context(prompt=VOCABULARY, ttl_s=3.0, ts=time.time())
        await h.mqtt.publish(context_topic(device=told), context.encode(), qos=1, retain=True)
        await asyncio.sleep(0.3)
        with_context = (await h.session(told, samples)).final
        without = (await h.session(other, samples)).final
        await asyncio.sleep(3.0)  # the context's ttl_s runs out
        expired = (await h.session(told, samples)).final
        await h.mqtt.publish(context_topic(device=told), b"", qos=1, retain=True)
    assert with_context is not None and without is not None and expired is not None
    assert with_context.text == "Switch off the television."
    assert without.text == UNPROMPTED
    assert expired.text == UNPROMPTED


async def test_wake_words_are_stripped_per_topic_and_topic_configs_apply_live(
    node: RunningNode, broker: LocalBroker
) -> None:
    jfk = load(AUDIO / "speech" / "jfk.wav")  # "And so my fellow Americans, ask not ..."
    live = f"live-{uuid.uuid4().hex[:6]}"
    async with harness(broker.url) as h:
        from_yaml = (await h.session("podium", jfk, topic="speeches")).final
        before = (await h.session("podium", jfk, topic=live)).final
        config = json.dumps({"wake_words": ["and so", "my fellow"]}).encode()
        await h.mqtt.publish(topic_config_topic(live), config, qos=1, retain=True)
        await asyncio.sleep(0.5)
        after = (await h.session("podium", jfk, topic=live)).final
        await h.mqtt.publish(topic_config_topic(live), b"", qos=1, retain=True)
    assert from_yaml is not None and before is not None and after is not None
    assert from_yaml.text.startswith("My fellow Americans")
    assert from_yaml.wake_word == "and so"
    assert from_yaml.words[0].word.lower().startswith("my")
    assert before.text.startswith("And so") and before.wake_word is None
    assert after.text == from_yaml.text  # the longest match at the start: "and so"


async def test_a_disabled_topic_refuses_audio(
    node: RunningNode, broker: LocalBroker, device: str
) -> None:
    async with harness(broker.url) as h:
        task = asyncio.create_task(h.session(device, load(TELEVISION), topic="off-air", timeout=5))
        errors = await h.wait_errors(device, 1)
        task.cancel()
    assert errors[0].code == ErrorCode.TOPIC_DISABLED


async def _until(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.05)


async def test_a_topics_webhook_gets_each_final_signed_even_across_an_outage(
    node: RunningNode, broker: LocalBroker, device: str
) -> None:
    lights = load(AUDIO / "commands" / "utt000.wav")
    async with harness(broker.url) as h:
        with receiving(HOOK_PORT) as receiver:
            first = (await h.session(device, lights, topic="hooked")).final
            await _until(lambda: len(receiver.requests) == 1)
        # the receiver is down: the node keeps the event in its outbox and retries
        second = (await h.session(device, lights, topic="hooked")).final
        await asyncio.sleep(1.0)
        with receiving(HOOK_PORT) as receiver_again:
            await _until(lambda: len(receiver_again.requests) >= 1)
            await asyncio.sleep(0.5)  # nothing more arrives: each event once
    assert first is not None and second is not None
    request = receiver.requests[0]
    header = request.headers[SIGNATURE_HEADER.lower()]
    assert verify(HOOK_SECRET, header, request.body)
    assert not verify("another-secret", header, request.body)
    event = TranscriptionEvent.decode(request.body)
    assert (event.event, event.topic, event.device) == ("transcription.complete", "hooked", device)
    assert (event.session, event.text, event.confidence) == (
        first.session,
        first.text,
        first.confidence,
    )
    assert [TranscriptionEvent.decode(r.body).session for r in receiver_again.requests] == [
        second.session
    ]


async def test_a_node_that_stopped_leaves_requests_to_any_to_the_others(
    node: RunningNode, broker: LocalBroker, tmp_path: Path
) -> None:
    other = await asyncio.to_thread(
        start_node, broker.url, tmp_path, MODEL, f"{node.node_id}-b", {}
    )
    async with harness(broker.url) as h, _core(h) as core:
        while_both = {(await core.ask(Method.DESCRIBE, b"{}")).node for _ in range(6)}
        assert await asyncio.to_thread(other.stop, signal.SIGTERM) == 0
        # its persistent session outlives it, but no longer shares in "any"
        after = [await core.ask(Method.DESCRIBE, b"{}", timeout=10) for _ in range(4)]
    assert while_both == {node.node_id, other.node_id}  # the two took turns
    assert {r.node for r in after} == {node.node_id}


async def test_a_topics_model_decodes_its_finals_and_an_unknown_one_falls_back(
    node: RunningNode, broker: LocalBroker, device: str
) -> None:
    lights = load(AUDIO / "commands" / "utt000.wav")
    async with harness(broker.url) as h:
        alt = (await h.session(device, lights, topic="alt-model")).final
        odd = (await h.session(device, lights, topic="odd-model")).final
    assert alt is not None and odd is not None
    assert alt.model == "tiny-alt" and "kitchen lights" in alt.text.lower()
    assert odd.model == "tiny.en" and odd.text == alt.text  # the user still gets the final
    assert "not available here" in node.log()


async def test_context_for_a_topic_applies_to_every_device_on_it(
    node: RunningNode, broker: LocalBroker
) -> None:
    topic = f"tv-{uuid.uuid4().hex[:6]}"
    async with harness(broker.url) as h:
        context = Context(prompt=VOCABULARY, ttl_s=60, ts=time.time()).encode()
        await h.mqtt.publish(context_topic(topic=topic), context, qos=1, retain=True)
        await asyncio.sleep(0.3)
        final = (
            await h.session(f"any-{uuid.uuid4().hex[:4]}", load(TELEVISION), topic=topic)
        ).final
        await h.mqtt.publish(context_topic(topic=topic), b"", qos=1, retain=True)
    assert final is not None and final.text == "Switch off the television."


async def test_a_satellites_heartbeat_registers_its_topic_with_a_default_config(
    node: RunningNode, broker: LocalBroker
) -> None:
    device, topic = f"sat-{uuid.uuid4().hex[:6]}", f"lazy-{uuid.uuid4().hex[:6]}"
    heartbeat = SatelliteStatus(device, "online", [topic], time.time()).encode()
    async with harness(broker.url) as h:
        await h.mqtt.subscribe(topic_config_topic(topic), qos=1)
        await h.mqtt.publish(satellite_status_topic(device), heartbeat, qos=1, retain=True)
        await _until(lambda: any(m.topic.value == topic_config_topic(topic) for m in h.other))
        (config,) = [m for m in h.other if m.topic.value == topic_config_topic(topic)]
        await h.mqtt.publish(topic_config_topic(topic), b"", qos=1, retain=True)
        await h.mqtt.publish(satellite_status_topic(device), b"", qos=1, retain=True)
    assert isinstance(config.payload, bytes)
    assert TopicConfig.model_validate_json(config.payload) == TopicConfig()
