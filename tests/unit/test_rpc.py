"""The request protocol (rpc.py) over a stand-in backend: every request gets an answer.

The node's real backend is exercised end to end in tests/integration/test_core.py;
here the seam lets each protocol rule be checked alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from orac_node.mqtt.bus import Outgoing
from orac_node.mqtt.rpc import RequestFailedError, RequestHandler
from orac_node.wire import (
    ErrorCode,
    JobRequest,
    Method,
    Response,
    RetranscribeRequest,
    TranscribeRequest,
    Transcription,
    request_topic,
)


class Backend:
    def __init__(self) -> None:
        self.release = asyncio.Event()

    def describe(self) -> dict[str, Any]:
        return {"models": ["tiny.en"]}

    async def transcribe(self, request: TranscribeRequest) -> Transcription:
        await self.release.wait()
        return Transcription(
            "n", "tiny.en", request.device, "s", "t", "hi", "en", 0.9, None, 1.0, 5.0, "", 1, 0.0
        )

    async def retranscribe(self, request: RetranscribeRequest) -> Transcription:
        raise RequestFailedError(ErrorCode.NOT_FOUND, "gone")

    def holder(self, request: RetranscribeRequest) -> str | None:
        return "node-2" if request.session == "elsewhere" else None

    async def submit_job(self, request: JobRequest) -> dict[str, Any]:
        return {"job": f"job-{request.name}"}


def _properties(reply_to: str | None, correlation: bytes | None = b"c1") -> Properties:
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if reply_to is not None:
        properties.ResponseTopic = reply_to
    if correlation is not None:
        properties.CorrelationData = correlation
    return properties


RESPONSE_TOPIC = "orac/response/core/1"


class Rig:
    def __init__(self, max_in_flight: int = 1) -> None:
        self.sent: list[Outgoing] = []
        self.tasks: list[asyncio.Task[object]] = []
        self.backend = Backend()
        self.handler = RequestHandler(
            "node-1",
            self.backend,
            max_in_flight=max_in_flight,
            publish=self.sent.append,
            spawn=self._spawn,
        )

    def _spawn(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        self.tasks.append(asyncio.create_task(coro, name=name))

    def ask(
        self, method: str, payload: bytes, reply_to: str | None = "orac/response/core/1"
    ) -> None:
        self.handler.on_message(f"orac/request/any/{method}", payload, _properties(reply_to))

    def responses(self) -> list[Response]:
        return [Response.decode(m.payload) for m in self.sent]


async def test_answers_carry_the_correlation_data_to_the_response_topic() -> None:
    rig = Rig()
    rig.ask(Method.DESCRIBE, b"{}")
    (message,) = rig.sent
    assert message.topic == "orac/response/core/1" and message.qos == 1
    assert getattr(message.properties, "CorrelationData", None) == b"c1"
    response = Response.decode(message.payload)
    assert response.ok and response.result == {"models": ["tiny.en"]} and response.node == "node-1"


async def test_failures_are_answers_too() -> None:
    rig = Rig()
    rig.ask("nope", b"{}")
    rig.ask(Method.TRANSCRIBE, b"[1, 2]")
    rig.ask(Method.RETRANSCRIBE, RetranscribeRequest("d", "s").encode())
    await asyncio.gather(*rig.tasks)
    codes = [r.error.code for r in rig.responses() if r.error]
    assert codes == [ErrorCode.UNKNOWN_METHOD, ErrorCode.BAD_PAYLOAD, ErrorCode.NOT_FOUND]
    assert rig.handler.handled[("retranscribe", "not_found")] == 1
    # a method the sender made up is counted under one label (metrics stay bounded)
    assert rig.handler.handled[("unknown", "unknown_method")] == 1


async def test_requests_beyond_the_in_flight_bound_are_answered_busy() -> None:
    rig = Rig(max_in_flight=1)
    request = TranscribeRequest(audio=b"RIFF").encode()
    rig.ask(Method.TRANSCRIBE, request)
    rig.ask(Method.TRANSCRIBE, request)
    rig.ask(Method.DESCRIBE, b"")  # cheap: answered even when busy
    rig.backend.release.set()
    await asyncio.gather(*rig.tasks)
    outcomes = [(r.method, r.ok, r.error.code if r.error else None) for r in rig.responses()]
    assert outcomes == [
        ("transcribe", False, ErrorCode.BUSY),
        ("describe", True, None),
        ("transcribe", True, None),
    ]
    assert rig.handler.in_flight == 0


async def test_nothing_is_published_where_a_request_cannot_be_answered() -> None:
    rig = Rig()
    rig.ask(Method.DESCRIBE, b"{}", reply_to=None)
    rig.ask(Method.DESCRIBE, b"{}", reply_to="transcript/general")  # not under orac/response/
    rig.ask(Method.DESCRIBE, b"{}", reply_to="orac/response/+/x")
    assert rig.sent == [] and rig.handler.unanswerable == 3


def test_request_topics_name_target_and_method() -> None:
    assert request_topic(Method.RETRANSCRIBE, "box") == "orac/request/box/retranscribe"
    assert request_topic(Method.DESCRIBE) == "orac/request/any/describe"


async def test_a_job_submission_is_answered_with_its_id() -> None:
    rig = Rig(max_in_flight=2)
    rig.ask(Method.SUBMIT_JOB, JobRequest(b"RIFF", name="memo.wav").encode())
    rig.ask(Method.SUBMIT_JOB, b'{"audio": "not base64!"}')
    await asyncio.gather(*rig.tasks)
    bad, ok = rig.responses()  # a bad request is answered at once
    assert ok.ok and ok.result == {"job": "job-memo.wav"}
    assert bad.error is not None and bad.error.code == ErrorCode.BAD_FIELD


async def test_a_retranscribe_for_another_nodes_session_is_forwarded_to_it_once() -> None:
    rig = Rig()
    payload = RetranscribeRequest("kitchen", "elsewhere").encode()
    rig.ask(Method.RETRANSCRIBE, payload)
    (forwarded,) = rig.sent
    assert forwarded.topic == request_topic(Method.RETRANSCRIBE, "node-2")
    assert forwarded.payload == payload
    assert getattr(forwarded.properties, "ResponseTopic", None) == RESPONSE_TOPIC
    assert getattr(forwarded.properties, "CorrelationData", None) == b"c1"
    assert rig.handler.handled[("retranscribe", "forwarded")] == 1
    # sent to this node by name (as the forward is), it is answered here: never forwarded twice
    rig.handler.on_message(
        request_topic(Method.RETRANSCRIBE, "node-1"), payload, _properties(RESPONSE_TOPIC)
    )
    await asyncio.gather(*rig.tasks)
    (answer,) = [Response.decode(m.payload) for m in rig.sent if m.topic == RESPONSE_TOPIC]
    assert answer.error is not None and answer.error.code == ErrorCode.NOT_FOUND
    assert len(rig.sent) == 2  # the forward, and this answer
