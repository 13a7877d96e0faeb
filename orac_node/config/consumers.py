"""ORAC Core's side: requests, conversation context, and the topics registry."""

from __future__ import annotations

from pydantic import Field, field_validator

from orac_node.config.base import Section, one_level_names
from orac_node.wire import RoomGroup, TopicConfig


class RequestsSection(Section):
    """Request/response for ORAC Core on orac/request/<node|any>/<method>."""

    enabled: bool = Field(True, description="Answer requests (describe, transcribe, retranscribe).")
    recent_sessions: int = Field(
        64,
        ge=0,
        le=10_000,
        description="Finished sessions whose audio is kept for retranscribe (16-bit: a 30 s"
        " session is ~1 MB, 64 of them at most ~60 MB); 0 keeps none.",
    )
    recent_ttl_s: float = Field(
        600.0,
        gt=0,
        le=86_400,
        description="How long a session's audio stays retranscribable, seconds. Core retries a"
        " low-confidence final within seconds; 10 minutes leaves room for a person.",
    )
    max_in_flight: int = Field(
        4,
        ge=1,
        le=256,
        description="Requests decoded at once; more are answered busy. Transcribe requests"
        " decode behind live sessions (the batch lane); retranscribes beside live finals.",
    )


class ContextSection(Section):
    """Conversation context from ORAC Core (orac/context/device/<d>, orac/context/topic/<t>).

    Used as the prompt of finals until its ttl_s runs out.
    """

    enabled: bool = Field(True, description="Use context published on orac/context/...")
    max_entries: int = Field(
        1024,
        ge=1,
        le=1_000_000,
        description="Devices and topics with context held at once (oldest go first): bounds"
        " what a stream of context messages can cost.",
    )


class RegistrySection(Section):
    """The topics registry (retained orac/config/topic/<topic>) and satellite heartbeats."""

    enabled: bool = Field(
        True, description="Follow retained topic configs and satellite heartbeats."
    )
    topics: dict[str, TopicConfig] = Field(
        default_factory=dict,
        description="Topic configs from this file, e.g.\n"
        "  kitchen:\n"
        '    prompt: "Lights, oven, radio, kettle."\n'
        "    wake_words: [computer]\n"
        '    webhooks: [{url: "https://ha.lan/hook", secret: "..."}]\n'
        "A retained config of the same topic (orac-node topics set) replaces it.",
    )
    room_groups: dict[str, RoomGroup] = Field(
        default_factory=dict,
        description="Satellites that hear the same room, e.g.\n"
        "  kitchen:\n"
        "    devices: [kitchen-counter, kitchen-table]\n"
        "When they hear the same words at once, one final wins (the satellite that heard"
        " them best) and the others are published rejected as duplicate."
        " A retained group of the same name (orac-node rooms set) replaces it.",
    )
    register_topics: bool = Field(
        True,
        description="A topic a satellite's heartbeat names that has no config gets a default"
        " one published (lazy registration), so it shows in `orac-node topics list`.",
    )

    @field_validator("topics")
    @classmethod
    def _topic_names(cls, value: dict[str, TopicConfig]) -> dict[str, TopicConfig]:
        return one_level_names(value, "topic names")

    @field_validator("room_groups")
    @classmethod
    def _group_names(cls, value: dict[str, RoomGroup]) -> dict[str, RoomGroup]:
        return one_level_names(value, "room group names")
