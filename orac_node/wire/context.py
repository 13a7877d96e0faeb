"""Conversation context from ORAC Core: ``orac/context/device/<d>`` and ``.../topic/<t>``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Self

from orac_node.errors import ContractError
from orac_node.wire.base import (
    PROTOCOL_VERSION,
    ErrorCode,
    JsonPayload,
    finite_number,
    is_valid_name,
    optional,
    require,
)
from orac_node.wire.requests import MAX_PROMPT_CHARS

CONTEXT_FILTER = "orac/context/#"
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
class Context(JsonPayload):
    """Conversation context or vocabulary for a device's (or topic's) next utterances.

    Used as whisper's initial prompt for finals until ``ttl_s`` after it was
    received. Publish retained so a restarted node has it; an empty retained
    message clears it.
    """

    prompt: str
    ttl_s: float = CONTEXT_DEFAULT_TTL_S
    ts: float = 0.0
    v: int = PROTOCOL_VERSION

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Validate a context message."""
        prompt = require(data, "prompt", str)
        if len(prompt) > 10 * MAX_PROMPT_CHARS:
            raise ContractError(ErrorCode.TOO_LARGE, f"prompt over {10 * MAX_PROMPT_CHARS} chars")
        ttl = optional(data, "ttl_s", (int, float))
        if ttl is not None and (isinstance(ttl, bool) or not 0 < ttl <= CONTEXT_MAX_TTL_S):
            raise ContractError(ErrorCode.BAD_FIELD, f"ttl_s must be in (0, {CONTEXT_MAX_TTL_S:g}]")
        ts = finite_number(data, "ts")
        return cls(
            prompt=prompt,
            ttl_s=CONTEXT_DEFAULT_TTL_S if ttl is None else float(ttl),
            ts=0.0 if ts is None else ts,
        )
