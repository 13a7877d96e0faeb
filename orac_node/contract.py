"""Wire contract, version 1: every topic and payload orac-node speaks.

Satellites, ORAC Core, the CLI and the client SDK are written against this one
module; nothing else in the package builds a topic string or a payload by hand.
docs/CONTRACT.md explains each message with examples a person can type.

Topics
    audio/<device>/chunk       msgpack :class:`AudioChunk`, one piece of a session
    audio/<device>/raw         bare s16le 16 kHz mono PCM, cut into utterances by VAD
    audio/<device>/file        a whole WAV/FLAC/MP3/OGG file, decoded with ffmpeg
    transcript/<topic>         JSON :class:`Partial` and :class:`Final`
    orac/node/<node>/status    retained JSON :class:`NodeStatus` (Last Will: offline)
    orac/device/<device>/error JSON :class:`ErrorReport` for the sender
    orac/request/<node|any>/<method>  JSON request (MQTT v5 response topic +
                               correlation data), answered with a :class:`Response`
    orac/response/<owner>/...  where requesters ask to be answered
    orac/context/device/<device>, orac/context/topic/<topic>
                               retained JSON :class:`Context`: a prompt for the
                               next utterances (empty payload: cleared)
    orac/config/topic/<topic>  retained JSON topic config (config.TopicConfig)
    orac/satellite/<device>/status  retained JSON :class:`SatelliteStatus` (LWT offline)

Webhooks receive :class:`TranscriptionEvent` as JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal, Self, TypeVar

import msgpack

from orac_node.errors import ContractError

T = TypeVar("T")

PROTOCOL_VERSION = 1
SAMPLE_RATE = 16_000
"""Rate of everything after ingest: whisper.cpp and the VAD both want 16 kHz."""

AUDIO_FILTER = "audio/#"
"""The node subscribes to all of audio/ (one subscription, so no message arrives
twice) and so also sees, and can answer, a device name of several levels."""
TRANSCRIPT_FILTER = "transcript/#"
STATUS_FILTER = "orac/node/+/status"

# A device or transcript topic is one topic level of plain characters, so it
# can be used in ACL patterns and typed in a shell without quoting.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Session ids are chosen by satellites (often UUIDs); printable, no spaces.
_SESSION_RE = re.compile(r"[\x21-\x7e]{1,128}")
_LANG_RE = re.compile(r"auto|[a-z]{2,3}(-[A-Za-z]{2,4})?")
# Rates a real microphone or codec produces; anything outside is a bug upstream.
MIN_RATE, MAX_RATE = 8_000, 192_000
MAX_CHANNELS = 8
MAX_SEQ = 2**31 - 1
MAX_TOPIC_BYTES = 65_535
"""MQTT's limit on a topic name (UTF-8 bytes): a device name long enough to fill
its audio topic leaves no room for its error topic, which cannot be published."""


class AudioKind(StrEnum):
    """The three ways audio enters the node (last level of the audio topic)."""

    CHUNK = "chunk"
    RAW = "raw"
    FILE = "file"


class AudioFormat(StrEnum):
    """Sample encodings accepted in :attr:`AudioChunk.format`."""

    S16LE = "s16le"
    F32LE = "f32le"

    @property
    def sample_width(self) -> int:
        """Bytes per sample."""
        return 2 if self is AudioFormat.S16LE else 4


class ErrorCode(StrEnum):
    """Machine-readable codes in :class:`ErrorReport`."""

    BAD_PAYLOAD = "bad_payload"  # not msgpack, not a map, truncated
    BAD_FIELD = "bad_field"  # a key is missing or has the wrong type/value
    UNSUPPORTED_VERSION = "unsupported_version"
    UNSUPPORTED_FORMAT = "unsupported_format"
    BAD_RATE = "bad_rate"
    BAD_AUDIO = "bad_audio"  # odd byte count, NaN/inf samples
    TOO_LARGE = "too_large"
    BAD_DEVICE = "bad_device"
    SESSION_TOO_LONG = "session_too_long"
    TOO_MANY_SESSIONS = "too_many_sessions"  # the node's or the device's session limit
    DECODE_FAILED = "decode_failed"
    RATE_LIMITED = "rate_limited"  # over the device's rate; ErrorReport.dropped says how much
    TOPIC_DISABLED = "topic_disabled"  # the topic's registry config says enabled: false
    # request/response (Response.error.code)
    UNKNOWN_METHOD = "unknown_method"
    NOT_FOUND = "not_found"  # retranscribe: the session is not (or no longer) in the recent ring
    UNKNOWN_MODEL = "unknown_model"
    BUSY = "busy"  # too many requests in flight on this node


def is_valid_name(name: str) -> bool:
    """Whether ``name`` may be used as a device or transcript topic name."""
    return _NAME_RE.fullmatch(name) is not None


def is_valid_language(code: str) -> bool:
    """Whether ``code`` is a language code this contract accepts (``en``, ``pt-BR``, ``auto``)."""
    return _LANG_RE.fullmatch(code) is not None


def audio_topic(device: str, kind: AudioKind = AudioKind.CHUNK) -> str:
    """Topic a satellite publishes audio on."""
    return f"audio/{device}/{kind.value}"


def transcript_topic(topic: str) -> str:
    """Topic partial and final transcripts for ``topic`` are published on."""
    return f"transcript/{topic}"


def status_topic(node_id: str) -> str:
    """Retained status topic of one node."""
    return f"orac/node/{node_id}/status"


def error_topic(device: str) -> str:
    """Topic on which a device is told what was wrong with its messages."""
    return f"orac/device/{device}/error"


def error_topic_fits(device: str) -> bool:
    """Whether :func:`error_topic` of ``device`` is short enough to publish."""
    if len(device) * 4 + len(error_topic("")) <= MAX_TOPIC_BYTES:
        return True  # fits even if every character takes 4 bytes: no need to encode
    return len(error_topic(device).encode()) <= MAX_TOPIC_BYTES


def audio_topic_device(topic: str) -> str:
    """The device part of ``audio/<device>/<kind>``, even an invalid one ("" if none).

    Replies to a malformed message go to this device's error topic.
    """
    parts = topic.split("/")
    return "/".join(parts[1:-1]) if len(parts) >= 3 else ""


def parse_audio_topic(topic: str) -> tuple[str, AudioKind | None]:
    """Split ``audio/<device>/<kind>`` into its device and kind.

    The kind is None for a last level this contract version does not define
    (left alone for future use). Raises :class:`ContractError`
    (``bad_device``) when the device is not one valid topic level.
    """
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != "audio":
        raise ContractError(ErrorCode.BAD_DEVICE, f"not an audio/<device>/<kind> topic: {topic!r}")
    device = audio_topic_device(topic)
    try:
        kind: AudioKind | None = AudioKind(parts[-1])
    except ValueError:
        kind = None
    if not is_valid_name(device):
        raise ContractError(
            ErrorCode.BAD_DEVICE,
            f"device {device!r} must be one topic level matching {_NAME_RE.pattern}",
        )
    return device, kind


def _field(data: dict[Any, Any], key: str, kind: type | tuple[type, ...]) -> Any:  # noqa: ANN401
    """Fetch a required key with an exact type (bool is not accepted as int)."""
    if key not in data:
        raise ContractError(ErrorCode.BAD_FIELD, f"missing key {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ContractError(ErrorCode.BAD_FIELD, f"{key!r} has type {type(value).__name__}")
    return value


def _optional(data: dict[Any, Any], key: str, kind: type | tuple[type, ...]) -> Any:  # noqa: ANN401
    return None if data.get(key) is None else _field(data, key, kind)


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """One msgpack message on ``audio/<device>/chunk``."""

    session: str
    seq: int
    rate: int
    channels: int
    format: AudioFormat
    pcm: bytes
    end: bool = False
    topic: str | None = None
    lang: str | None = None
    ts: float | None = None
    v: int = PROTOCOL_VERSION

    @property
    def frames(self) -> int:
        """Number of sample frames (samples per channel) in ``pcm``."""
        return len(self.pcm) // (self.format.sample_width * self.channels)

    def encode(self) -> bytes:
        """Serialize to the msgpack map satellites send."""
        data: dict[str, Any] = {
            "v": self.v,
            "session": self.session,
            "seq": self.seq,
            "rate": self.rate,
            "channels": self.channels,
            "format": self.format.value,
            "pcm": self.pcm,
            "end": self.end,
        }
        for key in ("topic", "lang", "ts"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return msgpack.packb(data, use_bin_type=True)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        """Parse and validate a chunk; raise :class:`ContractError` on any fault."""
        try:
            data = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        # TypeError: a map key that is itself a map or array (unhashable).
        except (
            ValueError,
            TypeError,
            msgpack.ExtraData,
            msgpack.FormatError,
            msgpack.StackError,
        ) as exc:
            raise ContractError(ErrorCode.BAD_PAYLOAD, f"not a msgpack message: {exc}") from exc
        if not isinstance(data, dict):
            raise ContractError(ErrorCode.BAD_PAYLOAD, "chunk must be a msgpack map")
        version = _field(data, "v", int)
        if version != PROTOCOL_VERSION:
            raise ContractError(ErrorCode.UNSUPPORTED_VERSION, f"v={version}, this node speaks 1")
        session = _field(data, "session", str)
        if not _SESSION_RE.fullmatch(session):
            raise ContractError(ErrorCode.BAD_FIELD, "session must be 1-128 printable chars")
        seq = _field(data, "seq", int)
        if not 0 <= seq <= MAX_SEQ:
            raise ContractError(ErrorCode.BAD_FIELD, f"seq {seq} out of range")
        rate = _field(data, "rate", int)
        if not MIN_RATE <= rate <= MAX_RATE:
            raise ContractError(ErrorCode.BAD_RATE, f"rate {rate} Hz outside {MIN_RATE}-{MAX_RATE}")
        channels = _field(data, "channels", int)
        if not 1 <= channels <= MAX_CHANNELS:
            raise ContractError(ErrorCode.BAD_FIELD, f"channels {channels} outside 1-8")
        try:
            fmt = AudioFormat(_field(data, "format", str))
        except ValueError:
            raise ContractError(
                ErrorCode.UNSUPPORTED_FORMAT, f"format {data['format']!r}: use s16le or f32le"
            ) from None
        pcm = _field(data, "pcm", bytes)
        if len(pcm) % (fmt.sample_width * channels):
            raise ContractError(ErrorCode.BAD_AUDIO, "pcm length is not a whole number of frames")
        end = _field(data, "end", bool)
        topic = _optional(data, "topic", str)
        if topic is not None and not is_valid_name(topic):
            raise ContractError(ErrorCode.BAD_FIELD, f"topic {topic!r} is not a valid name")
        lang = _optional(data, "lang", str)
        if lang is not None and not _LANG_RE.fullmatch(lang):
            raise ContractError(ErrorCode.BAD_FIELD, f"lang {lang!r} is not a language code")
        ts = _optional(data, "ts", (int, float))
        if ts is not None and (isinstance(ts, bool) or not math.isfinite(ts)):
            raise ContractError(ErrorCode.BAD_FIELD, "ts must be a finite number")
        return cls(
            session=session,
            seq=seq,
            rate=rate,
            channels=channels,
            format=fmt,
            pcm=pcm,
            end=end,
            topic=topic,
            lang=lang,
            ts=None if ts is None else float(ts),
            v=version,
        )


def _to_json(obj: object) -> bytes:
    return json.dumps(asdict(obj), ensure_ascii=False, allow_nan=False).encode()  # type: ignore[call-overload]


def _from_json(payload: bytes | str) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    # RecursionError: thousands of nested arrays, which json's C decoder recurses into.
    except (ValueError, RecursionError) as exc:
        raise ContractError(ErrorCode.BAD_PAYLOAD, f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ContractError(ErrorCode.BAD_PAYLOAD, "expected a JSON object")
    return data


def _build(cls: type[T], data: dict[str, Any]) -> T:
    """Construct a payload class, turning missing/unknown fields into ContractError."""
    try:
        return cls(**data)
    except TypeError as exc:
        raise ContractError(ErrorCode.BAD_FIELD, f"{cls.__name__}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word with its time span in the utterance and probability."""

    word: str
    start: float
    end: float
    p: float


@dataclass(frozen=True, slots=True)
class Segment:
    """One whisper segment: a span of the utterance and its text."""

    start: float
    end: float
    text: str


@dataclass(frozen=True, slots=True)
class Partial:
    """An interim hypothesis while the user is still speaking.

    ``stable`` only ever grows within a session (LocalAgreement-2); ``unstable``
    may change with every partial. ``text`` is ``stable`` + ``unstable``.
    """

    node: str
    model: str
    device: str
    session: str
    topic: str
    text: str
    stable: str
    unstable: str
    seq: int
    audio_s: float
    lag_ms: float
    decode_ms: float
    ts: float
    type: Literal["partial"] = "partial"
    v: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        """Serialize to JSON."""
        return _to_json(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from a decoded JSON object."""
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Final:
    """The one final transcript of a session.

    ``reason`` is why the utterance ended (``end``, ``silence``,
    ``max_duration``, ``idle``, ``shutdown``) or, when the session was rejected
    as non-speech, why (``no_speech``, ``non_speech``, ``low_confidence``,
    ``hallucination``); ``endpoint`` always holds the end reason and
    ``rejected`` the rejection reason or null (also ``wake_word_only``: the
    text was nothing but the topic's wake word, which ``wake_word`` names when
    one was stripped). ``latency_ms`` runs from the
    moment the endpoint was known (the ``end`` chunk, the last chunk of the
    trailing silence, the idle deadline) to publication.
    """

    node: str
    model: str
    device: str
    session: str
    topic: str
    text: str
    language: str
    confidence: float
    reason: str
    endpoint: str
    rejected: str | None
    audio_s: float
    speech_s: float
    chunks: int
    gaps: int
    duplicates: int
    incomplete: bool
    latency_ms: float
    decode_ms: float
    queue_ms: float
    ts: float
    speculative: bool = False
    words: list[Word] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    wake_word: str | None = None
    type: Literal["final"] = "final"
    v: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        """Serialize to JSON."""
        return _to_json(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from a decoded JSON object."""
        values = dict(data)
        values["words"] = [Word(**w) for w in values.get("words", [])]
        values["segments"] = [Segment(**s) for s in values.get("segments", [])]
        return cls(**values)


def decode_transcript(payload: bytes | str) -> Partial | Final:
    """Parse a ``transcript/<topic>`` message into a :class:`Partial` or :class:`Final`."""
    data = _from_json(payload)
    try:
        if data.get("type") == "partial":
            return Partial.from_dict(data)
        if data.get("type") == "final":
            return Final.from_dict(data)
    except TypeError as exc:
        raise ContractError(ErrorCode.BAD_FIELD, f"transcript fields: {exc}") from exc
    raise ContractError(ErrorCode.BAD_FIELD, f"unknown transcript type {data.get('type')!r}")


NodeState = Literal["starting", "ready", "draining", "offline"]


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """Retained availability of one node; the Last Will carries ``offline``."""

    node: str
    state: NodeState
    version: str
    model: str
    sessions: int
    queued: int
    ts: float
    v: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        """Serialize to JSON."""
        return _to_json(self)

    @classmethod
    def decode(cls, payload: bytes | str) -> Self:
        """Parse a status message."""
        return _build(cls, _from_json(payload))


@dataclass(frozen=True, slots=True)
class ErrorReport:
    """Why a device's message was refused, published on its error topic.

    ``dropped`` is set only on ``rate_limited`` reports: how many of the
    device's messages were dropped since its previous report (reports are
    rate-limited too, so one stands for many refused messages).
    """

    node: str
    device: str
    code: str
    message: str
    ts: float
    session: str | None = None
    seq: int | None = None
    dropped: int | None = None
    v: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        """Serialize to JSON."""
        return _to_json(self)

    @classmethod
    def decode(cls, payload: bytes | str) -> Self:
        """Parse an error report."""
        return _build(cls, _from_json(payload))


# -- ORAC Core: request/response (MQTT v5) ------------------------------------

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


def _check_prompt(data: dict[str, Any]) -> str | None:
    prompt: str | None = _optional(data, "prompt", str)
    if prompt is not None and len(prompt) > 10 * MAX_PROMPT_CHARS:
        raise ContractError(ErrorCode.TOO_LARGE, f"prompt over {10 * MAX_PROMPT_CHARS} chars")
    return prompt


def _check_lang(data: dict[str, Any]) -> str | None:
    lang: str | None = _optional(data, "language", str)
    if lang is not None and not _LANG_RE.fullmatch(lang):
        raise ContractError(ErrorCode.BAD_FIELD, f"language {lang!r} is not a language code")
    return lang


def _check_name(data: dict[str, Any], key: str) -> str | None:
    value: str | None = _optional(data, key, str)
    if value is not None and not is_valid_name(value):
        raise ContractError(ErrorCode.BAD_FIELD, f"{key} {value!r} is not a valid name")
    return value


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
            audio = base64.b64decode(_field(data, "audio", str), validate=True)
        except binascii.Error as exc:
            raise ContractError(ErrorCode.BAD_FIELD, f"audio is not base64: {exc}") from None
        device = _check_name(data, "device") or "request"
        publish = _optional(data, "publish", bool)
        return cls(
            audio=audio,
            device=device,
            topic=_check_name(data, "topic"),
            language=_check_lang(data),
            prompt=_check_prompt(data),
            model=_optional(data, "model", str),
            publish=True if publish is None else publish,
        )


@dataclass(frozen=True, slots=True)
class RetranscribeRequest:
    """``retranscribe``: decode a recent session's audio again, another way.

    Core's confidence-based retry: a final came back with low confidence, so it
    asks for the same audio with a bigger model, a prompt or beam search. Only
    the node that produced the final has the audio: send it to ``final.node``.
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
        device = _field(data, "device", str)
        if not is_valid_name(device):
            raise ContractError(ErrorCode.BAD_FIELD, f"device {device!r} is not a valid name")
        session = _field(data, "session", str)
        if not _SESSION_RE.fullmatch(session):
            raise ContractError(ErrorCode.BAD_FIELD, "session must be 1-128 printable chars")
        beam = _optional(data, "beam_size", int)
        if beam is not None and not 1 <= beam <= 8:
            raise ContractError(ErrorCode.BAD_FIELD, "beam_size must be 1-8")
        return cls(
            device=device,
            session=session,
            model=_optional(data, "model", str),
            prompt=_check_prompt(data),
            language=_check_lang(data),
            beam_size=beam,
        )


def _request_json(payload: bytes) -> dict[str, Any]:
    data = _from_json(payload) if payload.strip() else {}
    version = data.get("v", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise ContractError(ErrorCode.UNSUPPORTED_VERSION, f"v={version!r}, this node speaks 1")
    return data


@dataclass(frozen=True, slots=True)
class Transcription:
    """Result of ``transcribe`` and ``retranscribe``.

    ``rejected`` says why there is no text (as in :class:`Final`); ``prompt``
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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from a decoded JSON object."""
        values = dict(data)
        values["words"] = [Word(**w) for w in values.get("words", [])]
        values["segments"] = [Segment(**s) for s in values.get("segments", [])]
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ResponseError:
    """Why a request failed."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Response:
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

    def encode(self) -> bytes:
        """Serialize to JSON."""
        return _to_json(self)

    @classmethod
    def decode(cls, payload: bytes | str) -> Self:
        """Parse a response."""
        data = _from_json(payload)
        error = data.get("error")
        if isinstance(error, dict):
            data["error"] = _build(ResponseError, error)
        return _build(cls, data)

    def transcription(self) -> Transcription:
        """The result as a :class:`Transcription` (transcribe, retranscribe)."""
        if self.result is None:
            raise ContractError(ErrorCode.BAD_FIELD, "response has no result")
        try:
            return Transcription.from_dict(self.result)
        except TypeError as exc:
            raise ContractError(ErrorCode.BAD_FIELD, f"transcription fields: {exc}") from exc


# -- context, topic configs, satellites ---------------------------------------

CONTEXT_FILTER = "orac/context/#"
TOPIC_CONFIG_FILTER = "orac/config/topic/+"
SATELLITE_STATUS_FILTER = "orac/satellite/+/status"
CONTEXT_DEFAULT_TTL_S = 300.0
"""A context nobody refreshes stops applying after 5 minutes: a conversation's
vocabulary should not colour a device's utterances the next morning."""
CONTEXT_MAX_TTL_S = 86_400.0


def context_topic(*, device: str | None = None, topic: str | None = None) -> str:
    """Where Core publishes context for one device or one transcript topic."""
    if (device is None) == (topic is None):
        raise ValueError("give exactly one of device and topic")
    return f"orac/context/device/{device}" if device is not None else f"orac/context/topic/{topic}"


def parse_context_topic(topic: str) -> tuple[Literal["device", "topic"], str]:
    """``orac/context/<device|topic>/<name>`` → (scope, name)."""
    parts = topic.split("/")
    if len(parts) == 4 and parts[:2] == ["orac", "context"] and is_valid_name(parts[3]):
        if parts[2] == "device":
            return "device", parts[3]
        if parts[2] == "topic":
            return "topic", parts[3]
    raise ContractError(ErrorCode.BAD_FIELD, f"not a context topic: {topic!r}")


@dataclass(frozen=True, slots=True)
class Context:
    """Conversation context or vocabulary for a device's (or topic's) next utterances.

    Used as whisper's initial prompt for finals until ``ttl_s`` after it was
    received. Publish retained so a restarted node has it; an empty retained
    message clears it.
    """

    prompt: str
    ttl_s: float = CONTEXT_DEFAULT_TTL_S
    ts: float = 0.0
    v: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        """Serialize to JSON."""
        return _to_json(self)

    @classmethod
    def decode(cls, payload: bytes | str) -> Self:
        """Parse and validate a context message."""
        data = _from_json(payload)
        prompt = _field(data, "prompt", str)
        if len(prompt) > 10 * MAX_PROMPT_CHARS:
            raise ContractError(ErrorCode.TOO_LARGE, f"prompt over {10 * MAX_PROMPT_CHARS} chars")
        ttl = _optional(data, "ttl_s", (int, float))
        if ttl is not None and (isinstance(ttl, bool) or not 0 < ttl <= CONTEXT_MAX_TTL_S):
            raise ContractError(ErrorCode.BAD_FIELD, f"ttl_s must be in (0, {CONTEXT_MAX_TTL_S:g}]")
        ts = _optional(data, "ts", (int, float))
        if ts is not None and (isinstance(ts, bool) or not math.isfinite(ts)):
            raise ContractError(ErrorCode.BAD_FIELD, "ts must be a finite number")
        return cls(
            prompt=prompt,
            ttl_s=CONTEXT_DEFAULT_TTL_S if ttl is None else float(ttl),
            ts=0.0 if ts is None else float(ts),
        )


def topic_config_topic(topic: str) -> str:
    """Retained config of one transcript topic (the topics registry)."""
    return f"orac/config/topic/{topic}"


def satellite_status_topic(device: str) -> str:
    """Retained heartbeat/status of one satellite (its Last Will: offline)."""
    return f"orac/satellite/{device}/status"


SatelliteState = Literal["online", "offline"]


@dataclass(frozen=True, slots=True)
class SatelliteStatus:
    """A satellite's retained heartbeat: online with the topics it uses, or offline."""

    device: str
    state: SatelliteState
    topics: list[str]
    ts: float
    v: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        """Serialize to JSON."""
        return _to_json(self)

    @classmethod
    def decode(cls, payload: bytes | str) -> Self:
        """Parse and validate a heartbeat."""
        status = _build(cls, _from_json(payload))
        if status.state not in ("online", "offline"):
            raise ContractError(ErrorCode.BAD_FIELD, f"state {status.state!r}")
        if not isinstance(status.topics, list) or not all(
            isinstance(t, str) and is_valid_name(t) for t in status.topics
        ):
            raise ContractError(ErrorCode.BAD_FIELD, "topics must be a list of valid names")
        if not isinstance(status.device, str) or not is_valid_name(status.device):
            raise ContractError(ErrorCode.BAD_FIELD, "device is not a valid name")
        return status


# -- webhooks -----------------------------------------------------------------

WEBHOOK_EVENT = "transcription.complete"


@dataclass(frozen=True, slots=True)
class TranscriptionEvent:
    """What a webhook receives for each final with text (JSON body of the POST).

    ``id`` is unique per event and repeated on retries: receivers deduplicate on it.
    """

    id: str
    event: str
    topic: str
    device: str
    session: str
    text: str
    confidence: float
    language: str
    timestamp: float
    node: str
    model: str
    audio_s: float
    v: int = PROTOCOL_VERSION

    @classmethod
    def from_final(cls, final: Final) -> Self:
        """The event for a published final (its id: node, device and session)."""
        return cls(
            id=f"{final.node}:{final.device}:{final.session}",
            event=WEBHOOK_EVENT,
            topic=final.topic,
            device=final.device,
            session=final.session,
            text=final.text,
            confidence=final.confidence,
            language=final.language,
            timestamp=final.ts,
            node=final.node,
            model=final.model,
            audio_s=final.audio_s,
        )

    def encode(self) -> bytes:
        """Serialize to the JSON body."""
        return _to_json(self)

    @classmethod
    def decode(cls, payload: bytes | str) -> Self:
        """Parse an event (receivers, tests)."""
        return _build(cls, _from_json(payload))
