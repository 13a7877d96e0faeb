"""What every message of the contract shares: its version, its names, its faults.

:class:`JsonPayload` is the one encode/decode pair of the JSON messages: a payload
class is a frozen dataclass that inherits it and, where it takes input from others,
overrides :meth:`JsonPayload.from_dict` to validate. Every fault in a received
message becomes a :class:`~orac_node.errors.ContractError` with an
:class:`ErrorCode`, which the node publishes to the sender.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import types
import typing
from enum import StrEnum
from typing import Any, Self, TypeVar

from orac_node.errors import ContractError

T = TypeVar("T")

PROTOCOL_VERSION = 1

# A device or transcript topic is one topic level of plain characters, so it
# can be used in ACL patterns and typed in a shell without quoting.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Session ids are chosen by satellites (often UUIDs); printable, no spaces.
SESSION_RE = re.compile(r"[\x21-\x7e]{1,128}")
LANG_RE = re.compile(r"auto|[a-z]{2,3}(-[A-Za-z]{2,4})?")
MAX_TOPIC_BYTES = 65_535
"""MQTT's limit on a topic name (UTF-8 bytes): a device name long enough to fill
its audio topic leaves no room for its error topic, which cannot be published."""


class ErrorCode(StrEnum):
    """Machine-readable codes in error reports and error responses."""

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
    OVERLOADED = "overloaded"  # the node is behind: the session is refused whole, send it later
    DECODE_FAILED = "decode_failed"
    RATE_LIMITED = "rate_limited"  # over the device's rate; ErrorReport.dropped says how much
    TOPIC_DISABLED = "topic_disabled"  # the topic's registry config says enabled: false
    LATE_AUDIO = "late_audio"  # chunks after the session ended; ErrorReport.dropped counts them
    MODEL_UNAVAILABLE = "model_unavailable"  # a topic's model cannot be loaded; the node's was used
    UNSUPPORTED_LANGUAGE = "unsupported_language"  # unknown to Whisper, or an English-only model
    # request/response (Response.error.code)
    UNKNOWN_METHOD = "unknown_method"
    NOT_FOUND = "not_found"  # retranscribe: the session is not (or no longer) in the recent ring
    UNKNOWN_MODEL = "unknown_model"
    BUSY = "busy"  # too many requests in flight on this node
    NO_JOBS = "no_jobs"  # submit_job to a node whose jobs.enabled is false


ROOM_CODES = frozenset({ErrorCode.TOO_MANY_SESSIONS, ErrorCode.OVERLOADED})
"""Refusals for want of room: the session is refused whole (never opened halfway),
and with another node up with room a satellite may send it there (docs/FLEET.md)."""


def is_valid_name(name: str) -> bool:
    """Whether ``name`` may be used as a device or transcript topic name."""
    return NAME_RE.fullmatch(name) is not None


def is_valid_language(code: str) -> bool:
    """Whether ``code`` is a language code this contract accepts (``en``, ``pt-BR``, ``auto``)."""
    return LANG_RE.fullmatch(code) is not None


def require(data: dict[Any, Any], key: str, kind: type | tuple[type, ...]) -> Any:  # noqa: ANN401
    """Fetch a required key with an exact type (bool is not accepted as int)."""
    if key not in data:
        raise ContractError(ErrorCode.BAD_FIELD, f"missing key {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ContractError(ErrorCode.BAD_FIELD, f"{key!r} has type {type(value).__name__}")
    return value


def optional(data: dict[Any, Any], key: str, kind: type | tuple[type, ...]) -> Any:  # noqa: ANN401
    """Like :func:`require`, but a missing or null key is None."""
    return None if data.get(key) is None else require(data, key, kind)


def finite_number(data: dict[Any, Any], key: str) -> float | None:
    """An optional number that must be finite (a bool is not a number)."""
    value = optional(data, key, (int, float))
    if value is not None and (isinstance(value, bool) or not math.isfinite(value)):
        raise ContractError(ErrorCode.BAD_FIELD, f"{key} must be a finite number")
    return None if value is None else float(value)


def name_field(data: dict[str, Any], key: str) -> str | None:
    """An optional device or topic name."""
    value: str | None = optional(data, key, str)
    if value is not None and not is_valid_name(value):
        raise ContractError(ErrorCode.BAD_FIELD, f"{key} {value!r} is not a valid name")
    return value


def session_field(data: dict[str, Any], key: str = "session") -> str:
    """A required session id."""
    session: str = require(data, key, str)
    if not SESSION_RE.fullmatch(session):
        raise ContractError(ErrorCode.BAD_FIELD, f"{key} must be 1-128 printable chars")
    return session


def language_field(data: dict[str, Any], key: str) -> str | None:
    """An optional language code."""
    lang: str | None = optional(data, key, str)
    if lang is not None and not LANG_RE.fullmatch(lang):
        raise ContractError(ErrorCode.BAD_FIELD, f"{key} {lang!r} is not a language code")
    return lang


def json_object(payload: bytes | str) -> dict[str, Any]:
    """Parse a JSON object; anything else is a :class:`ContractError`."""
    try:
        data = json.loads(payload)
    # RecursionError: thousands of nested arrays, which json's C decoder recurses into.
    except (ValueError, RecursionError) as exc:
        raise ContractError(ErrorCode.BAD_PAYLOAD, f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ContractError(ErrorCode.BAD_PAYLOAD, "expected a JSON object")
    return data


@functools.cache
def _nested_types(cls: type) -> dict[str, type]:
    """Fields holding contract dataclasses, or lists of them: what :meth:`from_dict` rebuilds."""
    hints = typing.get_type_hints(cls)
    nested: dict[str, type] = {}
    for item in dataclasses.fields(cls):
        hint = hints[item.name]
        args = typing.get_args(hint)
        if typing.get_origin(hint) is list and args and dataclasses.is_dataclass(args[0]):
            nested[item.name] = args[0]  # type: ignore[assignment]
        elif isinstance(hint, types.UnionType):
            inner = [a for a in args if a is not type(None)]
            if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
                nested[item.name] = inner[0]  # type: ignore[assignment]
        elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
            nested[item.name] = hint
    return nested


class JsonPayload:
    """The encode/decode pair of every JSON message, written once.

    :meth:`encode` writes the dataclass's fields (nested ones too) as JSON and
    refuses NaN and infinity, which JSON has no spelling for. :meth:`decode`
    parses and hands the object to :meth:`from_dict`, which builds the class,
    rebuilding nested contract dataclasses (a final's words) on the way; a
    missing field is a ``bad_field`` :class:`ContractError`. A field this
    version does not know is ignored: version 1 grows by adding optional
    fields (a final's ``level_db``, a status's ``last_final_ms``), and a reader
    of an older release must go on reading a newer node's messages.
    """

    __slots__ = ()

    def encode(self) -> bytes:
        """Serialize to JSON (UTF-8)."""
        data = dataclasses.asdict(self)  # type: ignore[call-overload]
        return json.dumps(data, ensure_ascii=False, allow_nan=False).encode()

    @classmethod
    def decode(cls, payload: bytes | str) -> Self:
        """Parse and validate one message."""
        return cls.from_dict(json_object(payload))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from a decoded JSON object (subclasses validate what others send)."""
        return build(cls, data)


def build(cls: type[T], data: dict[str, Any]) -> T:
    """Construct a contract dataclass, nested ones included; faults are ContractErrors.

    Keys that are not fields of ``cls`` are dropped (see :class:`JsonPayload`).
    """
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {key: value for key, value in data.items() if key in known}
    try:
        for key, kind in _nested_types(cls).items():  # type: ignore[arg-type]
            value = values.get(key)
            if isinstance(value, list):
                values[key] = [build(kind, _object(item, key)) for item in value]
            elif value is not None:
                values[key] = build(kind, _object(value, key))
        return cls(**values)
    except TypeError as exc:
        raise ContractError(ErrorCode.BAD_FIELD, f"{cls.__name__}: {exc}") from exc


def _object(value: object, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ContractError(ErrorCode.BAD_FIELD, f"{key} must hold JSON objects")
    return value
