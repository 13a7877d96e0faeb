"""Request/response for ORAC Core over MQTT v5 (``orac/request/<node|any>/<method>``).

A requester publishes a JSON request with the MQTT v5 *response topic* and
*correlation data* properties; the node answers on that topic with the same
correlation data and a :class:`~orac_node.wire.Response`. Requests to
``any`` are shared among the nodes (MQTT shared subscription), so one node
answers; requests naming a node go to it. Only the node that produced a final
holds its audio, so a ``retranscribe`` sent to ``any`` that reaches another
node is forwarded to the one that claimed the session (ingest/fleet.py),
with the requester's response topic and correlation data: that node answers.

Every request gets an answer, failures included (bad JSON, unknown method,
session no longer held, unknown model, busy...), so a requester never has to
wait out a timeout to learn that its request was wrong. The only requests not
answered are those that name no usable response topic (nothing to answer on:
logged and counted). Responses go only to topics under ``orac/response/``.

This module is the protocol: parsing, dispatch, the in-flight bound, replies.
The work itself (decoding) is the node's, behind :class:`Backend`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from typing import Any, Protocol

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from orac_node.errors import ContractError
from orac_node.mqtt.bus import Outgoing
from orac_node.wire import (
    REQUEST_ANY,
    ErrorCode,
    JobRequest,
    Method,
    Response,
    ResponseError,
    RetranscribeRequest,
    TranscribeRequest,
    Transcription,
    is_response_topic,
    parse_request_topic,
    request_topic,
)

log = logging.getLogger(__name__)


class RequestFailedError(Exception):
    """A request that cannot be served; becomes an error response with ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Backend(Protocol):
    """What the node does for requests."""

    def describe(self) -> dict[str, Any]:
        """Models, languages, limits of this node."""

    async def transcribe(self, request: TranscribeRequest) -> Transcription:
        """Decode a submitted file (raises RequestFailedError)."""

    async def retranscribe(self, request: RetranscribeRequest) -> Transcription:
        """Decode a recent session again (raises RequestFailedError)."""

    def holder(self, request: RetranscribeRequest) -> str | None:
        """Another live node that decoded the session (None: this one, or none known)."""

    async def submit_job(self, request: JobRequest) -> dict[str, Any]:
        """Queue a long recording as a job; ``{"job": id}`` (raises RequestFailedError)."""


class RequestHandler:
    """Parses requests, runs them (bounded), publishes the responses."""

    def __init__(
        self,
        node_id: str,
        backend: Backend,
        *,
        max_in_flight: int,
        publish: Callable[[Outgoing], None],
        spawn: Callable[[Coroutine[Any, Any, None], str], None],
    ) -> None:
        self._node_id = node_id
        self._backend = backend
        self._max_in_flight = max_in_flight
        self._publish = publish
        self._spawn = spawn
        self.in_flight = 0
        self.handled: Counter[tuple[str, str]] = Counter()  # (method, "ok" or error code)
        self.unanswerable = 0

    def on_message(self, topic: str, payload: bytes, properties: Properties | None) -> None:
        """Take one request message; never raises."""
        reply_to = getattr(properties, "ResponseTopic", None) if properties else None
        correlation = getattr(properties, "CorrelationData", None) if properties else None
        try:
            target, method = parse_request_topic(topic)
        except ContractError:
            target, method = None, topic.rpartition("/")[2]
        known = method in {m.value for m in Method}
        if not isinstance(reply_to, str) or not is_response_topic(reply_to):
            self.unanswerable += 1
            log.warning(
                "request %.64s without a response topic under orac/response/: not answered",
                method,
            )
            return
        reply = _Reply(
            self._node_id,
            self._publish,
            self.handled,
            method=method,
            # a metric label: the sender chooses the method, so unknown ones count as one
            counted_as=method if known else "unknown",
            topic=reply_to,
            correlation=correlation,
        )
        if not known:
            reply.error(ErrorCode.UNKNOWN_METHOD, f"unknown method {method!r}")
            return
        if method == Method.DESCRIBE:  # cheap: answered at once, even when busy
            reply.ok(self._backend.describe())
            return
        if self.in_flight >= self._max_in_flight:
            reply.error(ErrorCode.BUSY, f"{self.in_flight} requests in flight; retry later")
            return
        if method == Method.RETRANSCRIBE and self._forwarded(target, payload, properties):
            self.handled[(method, "forwarded")] += 1
            return
        try:
            work: Coroutine[Any, Any, Transcription | dict[str, Any]]
            if method == Method.TRANSCRIBE:
                work = self._backend.transcribe(TranscribeRequest.decode(payload))
            elif method == Method.SUBMIT_JOB:
                work = self._backend.submit_job(JobRequest.decode(payload))
            else:
                work = self._backend.retranscribe(RetranscribeRequest.decode(payload))
        except ContractError as exc:
            reply.error(exc.code, exc.message)
            return
        self.in_flight += 1
        self._spawn(self._serve(reply, work), f"request-{method}")

    def _forwarded(self, target: str | None, payload: bytes, properties: Properties | None) -> bool:
        """A retranscribe sent to ``any`` for a session another node decoded: sent on to it.

        Only requests to ``any``: one naming this node is answered here, so a
        request is forwarded at most once.
        """
        if target != REQUEST_ANY:
            return False
        try:
            request = RetranscribeRequest.decode(payload)
        except ContractError:
            return False  # answered with the error, here
        holder = self._backend.holder(request)
        if holder is None:
            return False
        log.info("retranscribe of %s/%s forwarded to %s", request.device, request.session, holder)
        # only what the holder needs to answer the requester: a received message may carry
        # properties a client must not send (a subscription identifier)
        forward = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        forward.ResponseTopic = getattr(properties, "ResponseTopic", None)
        correlation = getattr(properties, "CorrelationData", None)
        if correlation is not None:
            forward.CorrelationData = correlation
        self._publish(
            Outgoing(request_topic(Method.RETRANSCRIBE, holder), payload, properties=forward)
        )
        return True

    async def _serve(
        self, reply: _Reply, work: Coroutine[Any, Any, Transcription | dict[str, Any]]
    ) -> None:
        try:
            result = await work
        except RequestFailedError as exc:
            reply.error(exc.code, exc.message)
        except Exception as exc:  # an unforeseen failure is still an answer
            log.exception("request %s failed", reply.method)
            reply.error(ErrorCode.DECODE_FAILED, f"request failed: {exc}")
        else:
            reply.ok(result if isinstance(result, dict) else asdict(result))
        finally:
            self.in_flight -= 1


class _Reply:
    """Where and how to answer one request."""

    def __init__(
        self,
        node_id: str,
        publish: Callable[[Outgoing], None],
        handled: Counter[tuple[str, str]],
        *,
        method: str,
        counted_as: str,
        topic: str,
        correlation: bytes | None,
    ) -> None:
        self._node_id = node_id
        self._publish = publish
        self._handled = handled
        self.method = method
        self._counted_as = counted_as
        self._topic = topic
        self._correlation = correlation

    def ok(self, result: dict[str, Any]) -> None:
        self._send(Response(self._node_id, self.method, True, time.time(), result))

    def error(self, code: str, message: str) -> None:
        log.info("request %.64s refused: %s (%s)", self.method, message, code)
        error = ResponseError(str(code), message)
        self._send(Response(self._node_id, self.method, False, time.time(), error=error))

    def _send(self, response: Response) -> None:
        outcome = "ok" if response.ok else response.error.code if response.error else "error"
        self._handled[(self._counted_as, outcome)] += 1
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if self._correlation is not None:
            properties.CorrelationData = self._correlation
        self._publish(Outgoing(self._topic, response.encode(), qos=1, properties=properties))
