"""Audio coming in: limits, endpoints, partials, and the non-speech gate."""

from __future__ import annotations

from pydantic import Field, field_validator

from orac_node.config.base import Section
from orac_node.wire import is_valid_name


class IngestSection(Section):
    """Limits and defaults for incoming audio.

    Per-device limits, so one misbehaving satellite cannot crowd out the others.
    The rates apply when a session opens: a device over them has its new sessions
    refused (rate_limited, at most one report a second, saying how many messages
    were dropped) until it is back within them; a session once admitted is never
    cut by them (its length is bounded by endpoint.max_duration_s).
    """

    default_topic: str = Field(
        "general", description="Transcript topic (transcript/<topic>) when a chunk names none."
    )
    device_topics: dict[str, str] = Field(
        default_factory=dict,
        description="Per-device default transcript topic, e.g. {kitchen: home_assistant}.",
    )
    max_chunk_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description="Largest chunk or raw payload (256 KiB, ~8 s of 16 kHz s16).",
    )
    max_file_bytes: int = Field(
        25 * 1024 * 1024, ge=1024, description="Largest whole file (25 MiB)."
    )
    max_file_s: float = Field(600, ge=1, description="Longest whole file, in seconds of audio.")
    max_sessions: int = Field(
        256,
        ge=1,
        description="Concurrent sessions across all devices (200 satellites streaming at once"
        " is the ingest benchmark; a session's audio buffer starts at 320 KB).",
    )
    overload_lag_ms: int = Field(
        250,
        ge=0,
        le=60_000,
        description="How long a message may wait in the node before it is handled; beyond it"
        " the node is overloaded and refuses new sessions (overloaded) until it has caught up,"
        " keeping every session it admitted whole (ingest/load.py). 0: never refuse for load.",
    )
    reorder_window: int = Field(
        16,
        ge=0,
        le=1024,
        description="Out-of-order chunks held while waiting for a missing seq (16 x 20 ms chunks"
        " = 320 ms of audio), after which the hole is counted as a gap.",
    )
    reorder_wait_ms: int = Field(
        300,
        ge=0,
        le=10_000,
        description="After end, how long to wait for chunks still missing, milliseconds.",
    )
    device_max_sessions: int = Field(
        4,
        ge=1,
        le=1024,
        description="Concurrent open sessions of one device (chunk sessions, a raw stream's"
        " utterance, files being decoded); more gets too_many_sessions. A satellite has one,"
        " briefly two when it starts the next utterance at once; 4 leaves room, while a device"
        " that opens a session per chunk cannot take the node's max_sessions from everyone"
        " else.",
    )
    device_chunks_per_s: float = Field(
        150.0,
        ge=0,
        le=1_000_000,
        description="Messages per second one device may send (chunk, raw and file alike);"
        " 0 = no limit. Normal is 50/s (20 ms chunks), 100/s with 10 ms chunks; 150 leaves"
        " headroom for those and drains a backlog at 3x (20 ms), while a 10x flood (500/s)"
        " has most of its sessions refused.",
    )
    device_audio_s_per_s: float = Field(
        3.0,
        ge=0,
        le=10_000,
        description="Seconds of audio per second one device may send on chunk and raw; 0 = no"
        " limit. Live audio is 1.0; 3.0 lets a replayed backlog catch up at 3x real time."
        " Bounds what big chunks (up to max_chunk_bytes) can cost. Files are bounded by"
        " max_file_s and device_max_sessions instead.",
    )
    device_burst_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Depth of both per-device buckets in seconds of their rate: 1500 messages"
        " and 30 s of audio by default, i.e. a whole max-length (30 s) utterance replayed by"
        " a satellite after a network blip, or 30 s of 20 ms chunks redelivered at once by a"
        " persistent MQTT session. What a device uses beyond it is a debt of at most one"
        " burst, paid back at the rate before its next session is admitted.",
    )

    @field_validator("default_topic")
    @classmethod
    def _topic_name(cls, value: str) -> str:
        if not is_valid_name(value):
            raise ValueError("topic must be one topic level of [A-Za-z0-9_.-]")
        return value

    def topic_for(self, device: str) -> str:
        """Default transcript topic of a device."""
        return self.device_topics.get(device, self.default_topic)


class EndpointSection(Section):
    """When an utterance is over."""

    vad_threshold: float = Field(
        0.5, gt=0, lt=1, description="Silero speech probability that counts as speech."
    )
    silence_ms: int = Field(
        700,
        ge=0,
        le=10_000,
        description="Trailing silence that ends an utterance (Home Assistant's default 0.7 s);"
        " 0 disables silence endpointing. Read speech with long pauses wants ~1500.",
    )
    min_speech_ms: int = Field(
        160, ge=0, le=5000, description="Speech needed before trailing silence can end it."
    )
    speculate_ms: int = Field(
        200,
        ge=0,
        le=10_000,
        description="Speculative finals: start decoding this far into a pause after speech. If"
        " the utterance then ends (end flag or silence_ms) with no new speech, that result is"
        " published at once instead of decoding after the endpoint. 0 = off.",
    )
    max_duration_s: float = Field(
        30.0,
        ge=1,
        le=300,
        description="Longest utterance, seconds; later audio of the session is refused.",
    )
    idle_timeout_s: float = Field(
        3.0,
        gt=0,
        le=600,
        description="No chunk for this long: finalize what arrived, flagged incomplete.",
    )
    no_speech_timeout_s: float = Field(
        8.0, gt=0, le=600, description="Give up on a stream that has had no speech this long."
    )


class PartialsSection(Section):
    """Interim transcripts while the user speaks."""

    enabled: bool = Field(True, description="Publish partial transcripts.")
    interval_ms: int = Field(
        500,
        ge=100,
        le=10_000,
        description="New audio between partial decodes; ~0.5 s keeps words appearing while a"
        " tiny.en decode (~150-250 ms) uses under half of one worker per stream.",
    )
    window_margin_s: float = Field(
        6.0,
        ge=0,
        le=30,
        description="A partial's encoder window = its audio + this margin (see"
        " decode.window_margin_s): narrower than a final's because a partial must be cheap"
        " and is replaced half a second later.",
    )
    trim_after_s: float = Field(
        4.0,
        ge=0,
        le=30,
        description="Once a partial's window holds this much audio, drop whole committed"
        " segments from its front (whisper_streaming's buffer trimming), so partial cost stays"
        " flat however long the user talks (4 s keeps most windows in the smallest 512-frame"
        " encoder window); 0 never trims. Finals always decode everything.",
    )


class GateSection(Section):
    """Rejecting silence and noise before Whisper invents text for it."""

    min_speech_ms: int = Field(
        64,
        ge=0,
        le=5000,
        description="Less VAD speech than this (two 32 ms windows): reject as no_speech without"
        " decoding. Measured: none of 63 noise, hum, music and silence clips had any; real"
        " single words cut from recorded orders had from 0.096 s (docs/DECODING.md).",
    )
    min_confidence: float = Field(
        0.15,
        ge=0,
        le=1,
        description="Geometric-mean token probability below which text is rejected as"
        " low_confidence. Beam-5 finals of the 91 shared clips measured 0.20 ('Good night!',"
        " correct) to 0.97, median 0.80; digital silence decoded to 'you' at 0.24, but the VAD"
        " gate stops silence before any decode, and noise, hum, clicks and tones decode to"
        " nothing or to annotations (docs/DECODING.md).",
    )
