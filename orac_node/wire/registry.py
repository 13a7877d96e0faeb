"""The topics registry on the bus: retained topic configs and satellites' heartbeats.

``orac/config/topic/<topic>`` holds a topic's :class:`TopicConfig` (JSON, retained,
shared by every node; empty: removed); ``orac/satellite/<device>/status`` a
satellite's :class:`SatelliteStatus` (retained; its Last Will says ``offline``).
:class:`TopicConfig` is also what ``registry.topics`` in config.yaml holds, so it
is a pydantic model: one validation for the file and for the bus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orac_node.errors import ContractError
from orac_node.wire.base import (
    PROTOCOL_VERSION,
    ErrorCode,
    JsonPayload,
    build,
    is_valid_language,
    is_valid_name,
)

TOPIC_CONFIG_FILTER = "orac/config/topic/+"
SATELLITE_STATUS_FILTER = "orac/satellite/+/status"
ROOM_GROUP_FILTER = "orac/config/room/+"


def topic_config_topic(topic: str) -> str:
    """Retained config of one transcript topic (the topics registry)."""
    return f"orac/config/topic/{topic}"


def room_group_topic(group: str) -> str:
    """Retained config of one room group: the satellites that hear the same room."""
    return f"orac/config/room/{group}"


def satellite_status_topic(device: str) -> str:
    """Retained heartbeat/status of one satellite (its Last Will: offline)."""
    return f"orac/satellite/{device}/status"


class _Strict(BaseModel):
    """Unknown keys are errors (a typo must not be ignored); values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class WebhookTarget(_Strict):
    """One webhook receiver of a topic's finals."""

    url: str = Field(description="http:// or https:// URL that receives the POST.")
    secret: str | None = Field(
        None,
        repr=False,
        description="HMAC-SHA256 key: each POST carries X-Orac-Signature (docs/WEBHOOKS.md)."
        " Kept out of logs; the retained topic config holding it is readable only by the"
        " node and admins under the shipped ACL.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("webhook url must be http:// or https:// with a host")
        if parts.username or parts.password:
            raise ValueError("no credentials in a webhook url: use secret")
        return value


class TopicConfig(_Strict):
    """Settings of one transcript topic.

    Set in config.yaml (``registry.topics``) or retained on
    ``orac/config/topic/<topic>`` (the topics registry, shared by every node).
    """

    enabled: bool = Field(
        True, description="false: audio for this topic is refused with topic_disabled."
    )
    model: str | None = Field(
        None,
        description="Model for this topic's finals (the node's model.finals, or one of"
        " model.extra).",
    )
    partials_model: str | None = Field(
        None,
        description="Model for this topic's partials (the node's model.partials, or one of"
        " model.extra).",
    )
    language: str | None = Field(
        None, description="Language of this topic's sessions unless a chunk names one."
    )
    silence_ms: int | None = Field(
        None,
        ge=0,
        le=10_000,
        description="Trailing silence that ends this topic's utterances (endpoint.silence_ms"
        " when null): a dictation topic wants ~1500, as read speech pauses for a second.",
    )
    prompt: str = Field(
        "",
        max_length=4000,
        description="Vocabulary/prompt for this topic's finals (names, rooms, devices),"
        " before any context Core sends.",
    )
    wake_words: list[str] = Field(
        default_factory=list,
        description="Wake words stripped from the start of this topic's transcripts"
        ' ("computer, turn on..." is published as "Turn on...").',
    )
    webhooks: list[WebhookTarget] = Field(
        default_factory=list, description="Receivers of this topic's finals."
    )

    @field_validator("model", "partials_model")
    @classmethod
    def _model_name(cls, value: str | None) -> str | None:
        if value is not None and not is_valid_name(value):
            raise ValueError("model must be a model name such as base.en")
        return value

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        if value is not None and not is_valid_language(value):
            raise ValueError("language must be a code such as en, de or auto")
        return value

    @field_validator("wake_words")
    @classmethod
    def _words(cls, value: list[str]) -> list[str]:
        if any(not word.strip() for word in value):
            raise ValueError("wake words must not be empty")
        return value


class RoomGroup(_Strict):
    """Satellites close enough to hear the same words (one room, an open-plan floor).

    Set in config.yaml (``registry.room_groups``) or retained on
    ``orac/config/room/<group>``. When satellites of a group open sessions
    within ``window_ms`` of each other and their finals say the same thing, one
    final wins (pipeline/arbitration.py) and the others are published
    rejected as ``duplicate``. docs/HOME_ASSISTANT.md explains the rules.
    """

    devices: list[str] = Field(
        description="Device names of the group's satellites (a device belongs to one group)."
    )
    window_ms: int = Field(
        1000,
        ge=0,
        le=10_000,
        description="Sessions of the group opened this close together may be the same words:"
        " a wake word heard by two satellites opens both within a few hundred ms.",
    )
    wait_ms: int = Field(
        1500,
        ge=0,
        le=10_000,
        description="Longest a final waits for another open session of its group to end."
        " Only finals with such a session wait; a lone satellite's final never does.",
    )

    @field_validator("devices")
    @classmethod
    def _device_names(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("a room group needs at least one device")
        if any(not is_valid_name(device) for device in value):
            raise ValueError("devices must be valid device names")
        if len(set(value)) != len(value):
            raise ValueError("a device is listed twice")
        return value


SatelliteState = Literal["online", "offline"]


@dataclass(frozen=True, slots=True)
class SatelliteStatus(JsonPayload):
    """A satellite's retained heartbeat: online with the topics it uses, or offline."""

    device: str
    state: SatelliteState
    topics: list[str]
    ts: float
    v: int = PROTOCOL_VERSION

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Validate a heartbeat."""
        status = build(cls, data)
        if status.state not in ("online", "offline"):
            raise ContractError(ErrorCode.BAD_FIELD, f"state {status.state!r}")
        if not isinstance(status.topics, list) or not all(
            isinstance(t, str) and is_valid_name(t) for t in status.topics
        ):
            raise ContractError(ErrorCode.BAD_FIELD, "topics must be a list of valid names")
        if not isinstance(status.device, str) or not is_valid_name(status.device):
            raise ContractError(ErrorCode.BAD_FIELD, "device is not a valid name")
        return status
