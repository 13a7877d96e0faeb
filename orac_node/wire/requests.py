"""ORAC Core's requests over MQTT v5: ``orac/request/<node|any>/<method>`` and the answers.

A requester publishes JSON with the MQTT v5 *response topic* and *correlation
data* properties; the node answers there with a :class:`Response`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Self

from orac_node.errors import ContractError
from orac_node.wire.base import (
    MAX_TOPIC_BYTES,
    PROTOCOL_VERSION,
    ErrorCode,
    JsonPayload,
    build,
    is_valid_name,
    json_object,
    language_field,
    name_field,
    optional,
    require,
    session_field,
)
from orac_node.wire.transcripts import Segment, Word

REQUEST_ANY = "any"
"""Request target meaning "whichever node": nodes share that subscription, so
exactly one of them answers."""
SHARE_GROUP = "orac-node"
"""MQTT v5 shared-subscription group of all nodes, for requests to ``any``."""
SHARED_REQUEST_FILTER = f"$share/{SHARE_GROUP}/orac/request/{REQUEST_ANY}/+"
"""The shared subscription through which nodes take turns answering ``any``. A
stopping node leaves it: its persistent session would otherwise go on taking its
share of the requests, queued, while the node is away."""
RESPONSE_PREFIX = "orac/response/"
"""Nodes publish responses only under this prefix: a request cannot make a node
publish on a transcript or status topic by naming it as its response topic."""
MAX_PROMPT_CHARS = 800
"""Longest prompt the node passes to whisper (about the 224 tokens whisper.cpp
keeps of a prompt); longer context is cut from the front, keeping the most recent."""


class Method(StrEnum):
    """What a request asks for (last level of its topic)."""

    DESCRIBE = "describe"  # models, languages, limits of the answering node
    TRANSCRIBE = "transcribe"  # a submitted file
    RETRANSCRIBE = "retranscribe"  # a recent session again, with another model or prompt
    SUBMIT_JOB = "submit_job"  # a long recording, queued as a job (jobs.py)


def request_topic(method: Method, target: str = REQUEST_ANY) -> str:
    """Topic a request for ``method`` is published on (``target``: a node id or ``any``)."""
    return f"orac/request/{target}/{method.value}"


def request_subscriptions(node_id: str) -> list[str]:
    """What a node subscribes to for requests: its own, and its share of ``any``."""
    return [f"orac/request/{node_id}/+", SHARED_REQUEST_FILTER]


def parse_request_topic(topic: str) -> tuple[str, str]:
    """``orac/request/<target>/<method>`` → (target, method), both unchecked strings."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[:2] != ["orac", "request"]:
        raise ContractError(ErrorCode.BAD_FIELD, f"not a request topic: {topic!r}")
    return parts[2], parts[3]


def response_topic(owner: str, nonce: str) -> str:
    """A response topic for ``owner`` (its MQTT user name under the shipped ACL)."""
    return f"{RESPONSE_PREFIX}{owner}/{nonce}"


def is_response_topic(topic: str) -> bool:
    """Whether a node may publish a response on ``topic``."""
    return (
        topic.startswith(RESPONSE_PREFIX)
        and len(topic) > len(RESPONSE_PREFIX)
        and not any(c in topic for c in "+#\0")
        and len(topic.encode()) <= MAX_TOPIC_BYTES
    )


def prompt_field(data: dict[str, Any]) -> str | None:
    """An optional prompt, at most ten times what is used (the end is kept when cut)."""
    prompt: str | None = optional(data, "prompt", str)
    if prompt is not None and len(prompt) > 10 * MAX_PROMPT_CHARS:
        raise ContractError(ErrorCode.TOO_LARGE, f"prompt over {10 * MAX_PROMPT_CHARS} chars")
    return prompt


def _request_json(payload: bytes) -> dict[str, Any]:
    data = json_object(payload) if payload.strip() else {}
    version = data.get("v", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise ContractError(ErrorCode.UNSUPPORTED_VERSION, f"v={version!r}, this node speaks 1")
    return data


@dataclass(frozen=True, slots=True)
class TranscribeRequest:
    """``transcribe``: decode a submitted audio file (any format ffmpeg reads).

    The file travels base64-encoded in ``audio``. With ``publish`` (default)
    the final is also published on ``transcript/<topic>`` like any other, so
    the topic's consumers and webhooks see it; the response carries it either way.
    """

    audio: bytes
    device: str = "request"
    topic: str | None = None
    language: str | None = None
    prompt: str | None = None
    model: str | None = None
    publish: bool = True

    def encode(self) -> bytes:
        """Serialize to the JSON a requester sends."""
        data: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "audio": base64.b64encode(self.audio).decode(),
        }
        data["device"] = self.device
        for key in ("topic", "language", "prompt", "model"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        data["publish"] = self.publish
        return json.dumps(data).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        """Parse and validate; :class:`ContractError` on any fault."""
        data = _request_json(payload)
        try:
            audio = base64.b64decode(require(data, "audio", str), validate=True)
        except binascii.Error as exc:
            raise ContractError(ErrorCode.BAD_FIELD, f"audio is not base64: {exc}") from None
        publish = optional(data, "publish", bool)
        return cls(
            audio=audio,
            device=name_field(data, "device") or "request",
            topic=name_field(data, "topic"),
            language=language_field(data, "language"),
            prompt=prompt_field(data),
            model=optional(data, "model", str),
            publish=True if publish is None else publish,
        )


@dataclass(frozen=True, slots=True)
class RetranscribeRequest:
    """``retranscribe``: decode a recent session's audio again, another way.

    Core's confidence-based retry: a final came back with low confidence, so it
    asks for the same audio with a bigger model, a prompt or beam search. Only
    the node that produced the final has the audio: send it to ``final.node``
    (or to ``any``: in a fleet it is forwarded to the node that claimed the session).
    """

    device: str
    session: str
    model: str | None = None
    prompt: str | None = None
    language: str | None = None
    beam_size: int | None = None

    def encode(self) -> bytes:
        """Serialize to JSON."""
        data = {k: v for k, v in asdict(self).items() if v is not None}
        return json.dumps({"v": PROTOCOL_VERSION, **data}).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        """Parse and validate; :class:`ContractError` on any fault."""
        data = _request_json(payload)
        device = require(data, "device", str)
        if not is_valid_name(device):
            raise ContractError(ErrorCode.BAD_FIELD, f"device {device!r} is not a valid name")
        beam = optional(data, "beam_size", int)
        if beam is not None and not 1 <= beam <= 8:
            raise ContractError(ErrorCode.BAD_FIELD, "beam_size must be 1-8")
        return cls(
            device=device,
            session=session_field(data),
            model=optional(data, "model", str),
            prompt=prompt_field(data),
            language=language_field(data, "language"),
            beam_size=beam,
        )


@dataclass(frozen=True, slots=True)
class Transcription(JsonPayload):
    """Result of ``transcribe`` and ``retranscribe``.

    ``rejected`` says why there is no text (as in a final); ``prompt``
    is the prompt the decode actually used (topic vocabulary + context + the
    request's own), so Core can see what it was given.
    """

    node: str
    model: str
    device: str
    session: str
    topic: str
    text: str
    language: str
    confidence: float
    rejected: str | None
    audio_s: float
    decode_ms: float
    prompt: str
    beam_size: int
    ts: float
    words: list[Word] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    language_p: float | None = None  # as in a final: when the language was detected


@dataclass(frozen=True, slots=True)
class ResponseError:
    """Why a request failed."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Response(JsonPayload):
    """The answer to one request, on its response topic with its correlation data.

    ``result`` is a :class:`Transcription` (transcribe, retranscribe) or a
    description (describe) as a JSON object; ``error`` is set instead when the
    request failed. Errors are answers too: a requester never waits for a
    timeout to learn its request was bad.
    """

    node: str
    method: str
    ok: bool
    ts: float
    result: dict[str, Any] | None = None
    error: ResponseError | None = None
    v: int = PROTOCOL_VERSION

    def transcription(self) -> Transcription:
        """The result as a :class:`Transcription` (transcribe, retranscribe)."""
        if self.result is None:
            raise ContractError(ErrorCode.BAD_FIELD, "response has no result")
        return build(Transcription, self.result)
