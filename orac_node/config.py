"""Node configuration: one pydantic model per area, loaded from YAML, env and flags.

Precedence, lowest first: the defaults below, ``config.yaml`` (or ``--config``),
environment variables ``ORAC_NODE_<SECTION>__<KEY>`` (e.g.
``ORAC_NODE_BROKER__URL=mqtt://box:1883``), then command-line flags. Every model
forbids unknown keys so a typo fails at start instead of being ignored.
The repository's ``config.yaml`` documents every setting with its default; a
test keeps the two in sync.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from orac_node.allowlist import Allowlist
from orac_node.brokerurl import BrokerUrl
from orac_node.contract import is_valid_language, is_valid_name
from orac_node.errors import ConfigError

ENV_PREFIX = "ORAC_NODE_"
T = TypeVar("T")


def state_dir(node_id: str) -> Path:
    """Where a node keeps state by default: $XDG_STATE_HOME/orac-node/<node id>."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "orac-node" / node_id


def _one_level_names(value: dict[str, T], what: str) -> dict[str, T]:
    """The keys of ``value`` are names used in topics: one level of plain characters."""
    for name in value:
        if not is_valid_name(name):
            raise ValueError(f"{what} must be one topic level of [A-Za-z0-9_.-]")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _default_node_id() -> str:
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())
    return f"orac-{host}"[:64]


class NodeSection(_Section):
    """Identity of this node on the bus."""

    id: str = Field(
        default_factory=_default_node_id,
        description="Node id: status topic orac/node/<id>/status and the MQTT client id.",
    )

    @field_validator("id", mode="before")
    @classmethod
    def _default_when_null(cls, value: object) -> object:
        return _default_node_id() if value is None else value

    @field_validator("id")
    @classmethod
    def _one_level(cls, value: str) -> str:
        if not is_valid_name(value):
            raise ValueError("node id must be one topic level of [A-Za-z0-9_.-]")
        return value


class BrokerSection(_Section):
    """Where the MQTT broker is and how to talk to it."""

    url: str = Field(
        "mqtt://127.0.0.1:1883",
        description="mqtt://host:port of the broker, or mqtts://host:port for TLS (port 8883"
        " when none is given).",
    )
    username: str | None = Field(None, description="Username, when the broker wants one.")
    password: SecretStr | None = Field(
        None, description="Password for username (kept out of logs and reprs)."
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive.")
    reconnect_min_s: float = Field(0.5, gt=0, le=60, description="First reconnect delay.")
    reconnect_max_s: float = Field(
        4.0,
        gt=0,
        le=600,
        description="Reconnect delay cap: a restarted broker is back in service within it"
        " (the delay is jittered between half the cap and the cap).",
    )
    session_expiry_s: int = Field(
        600,
        ge=0,
        le=86_400,
        description="How long the broker keeps the node's session (subscriptions and the"
        " QoS 1 audio queued for it) while the node is away: a restart or crash within it"
        " loses no audio. 0 ends the session at every disconnect.",
    )
    outbox_size: int = Field(
        10_000,
        ge=100,
        le=1_000_000,
        description="Messages held for the broker while disconnected; beyond it the oldest"
        " partials are dropped first, then anything (counted, logged).",
    )
    ca_file: FilePath | None = Field(
        None,
        description="PEM CA certificate the broker's TLS certificate must chain to (mqtts://"
        " only); null = the system's trust store.",
    )
    cert_file: FilePath | None = Field(
        None,
        description="PEM client certificate, for a broker that requires one (mqtts:// only).",
    )
    key_file: FilePath | None = Field(
        None, description="Unencrypted PEM key of cert_file; null when cert_file holds it."
    )

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        url = BrokerUrl.parse(value)
        if url.username is not None or url.password is not None:
            # The node would log them with the URL; they belong in username/password.
            raise ValueError("put credentials in broker.username and broker.password, not the url")
        return value

    @model_validator(mode="after")
    def _tls_files_need_tls(self) -> BrokerSection:
        # Certificates with a plain mqtt:// URL would be ignored and the password
        # sent in clear: refuse rather than guess which one was meant.
        if not self.tls and (self.ca_file or self.cert_file or self.key_file):
            raise ValueError("ca_file, cert_file and key_file need an mqtts:// url")
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")
        return self

    @property
    def tls(self) -> bool:
        """Whether the URL asks for TLS (mqtts://)."""
        return BrokerUrl.parse(self.url).tls

    @property
    def host(self) -> str:
        """Broker host name from the URL."""
        return BrokerUrl.parse(self.url).host

    @property
    def port(self) -> int:
        """Broker port from the URL (1883, or 8883 for mqtts://, when absent)."""
        return BrokerUrl.parse(self.url).port


CORES_PER_WORKER = 4
"""Auto-sized worker pools get one model instance per this many cores. Measured on 2
cores (docs/BENCHMARKS.md, P5): a second instance raised throughput 1.75x but worsened
the 4-stream tail and cost ~130 MB, so small boxes keep one. That a second instance pays
from 8 cores on is an assumption, not measured (no bigger machine was available): the
bench's throughput and concurrent-4 scenarios are how to check it on a given machine."""


class ModelSection(_Section):
    """The whisper.cpp model and how many copies of it run."""

    path: Path | None = Field(None, description="ggml model file; overrides name.")
    name: str = Field("tiny.en", description="Model name, looked up in cache_dir.")
    cache_dir: Path = Field(
        Path("~/.cache/orac-node/models"), description="Where named models are kept."
    )
    hub_url: str = Field(
        "https://huggingface.co/ggerganov/whisper.cpp/resolve/main",
        description="Where named models are downloaded from on first use.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Inference device.")
    workers: int = Field(
        0,
        ge=0,
        le=16,
        description="Model instances, each with its own thread (pywhispercpp has no shared"
        " weights: ~100-150 MB each for tiny.en). 0 = auto: one per 4 CPU cores (one on 2-4"
        " cores, two on 8), one on CUDA; see docs/BENCHMARKS.md before raising it.",
    )
    threads: int = Field(
        0, ge=0, le=64, description="Threads per instance; 0 = CPU cores / workers."
    )
    extra: dict[str, Path] = Field(
        default_factory=dict,
        description="Other ggml models, by name, that retranscribe/transcribe requests and"
        " topic configs may ask for (e.g. {base.en: /models/ggml-base.en.bin}). Each is loaded"
        " on first use and then kept (one engine, its own memory) beside the main model; a"
        " name not listed here (or the main model's) is refused with unknown_model.",
    )

    @field_validator("extra")
    @classmethod
    def _extra_names(cls, value: dict[str, Path]) -> dict[str, Path]:
        return _one_level_names(value, "model names")

    def resolved_workers(self) -> int:
        """Model instances: as set, or one per ``CORES_PER_WORKER`` cores (one on a GPU)."""
        if self.workers:
            return self.workers
        if self.device == "cuda":
            return 1  # one GPU runs one decode at a time well; more contexts only cost memory
        return max(1, (os.cpu_count() or 1) // CORES_PER_WORKER)

    def resolved_threads(self) -> int:
        """Threads per worker: split the cores evenly when not set."""
        if self.threads:
            return self.threads
        return max(1, (os.cpu_count() or 1) // self.resolved_workers())


class DecodeSection(_Section):
    """Decoding parameters, set explicitly on every call (pywhispercpp keeps them)."""

    language: str = Field("en", description="Language code, or auto to detect.")
    beam_size: int = Field(
        1,
        ge=1,
        le=8,
        description="1 = greedy (deterministic). Beam search can score better (8-12 % vs"
        " 13.9 % on the shared commands) but its text varied with earlier decodes"
        " (docs/DECODING.md).",
    )
    window_margin_s: float = Field(
        6.0,
        ge=0,
        le=30,
        description="Encoder window = audio + this margin, rounded up to 256 frames (5.12 s)."
        " Under ~3 s Whisper repeats sentences; the full 30 s window costs ~3x more.",
    )
    temperature_fallback: bool = Field(
        False,
        description="Re-decode at higher temperature when output looks degenerate. Off: it"
        " makes text depend on earlier decodes and took 7.5 s on a pure tone.",
    )


class IngestSection(_Section):
    """Limits and defaults for incoming audio."""

    default_topic: str = Field("general", description="Transcript topic when a chunk has none.")
    device_topics: dict[str, str] = Field(
        default_factory=dict, description="Per-device default transcript topic."
    )
    max_chunk_bytes: int = Field(
        256 * 1024, ge=1024, description="Largest chunk or raw payload (~8 s of 16 kHz s16)."
    )
    max_file_bytes: int = Field(25 * 1024 * 1024, ge=1024, description="Largest whole file.")
    max_file_s: float = Field(600, ge=1, description="Longest whole file, in seconds of audio.")
    max_sessions: int = Field(
        256,
        ge=1,
        description="Concurrent sessions across all devices (200 satellites streaming at once"
        " is the ingest benchmark; a session's audio buffer starts at 320 KB).",
    )
    reorder_window: int = Field(
        16,
        ge=0,
        le=1024,
        description="Out-of-order chunks held while waiting for a missing seq (16 x 20 ms chunks"
        " = 320 ms of audio), after which the hole is counted as a gap.",
    )
    reorder_wait_ms: int = Field(
        300, ge=0, le=10_000, description="After end, how long to wait for missing chunks."
    )
    device_max_sessions: int = Field(
        4,
        ge=1,
        le=1024,
        description="Concurrent open sessions of one device (chunk sessions, a raw stream's"
        " utterance, files being decoded). A satellite has one, briefly two when it starts"
        " the next utterance at once; 4 leaves room, while a device that opens a session per"
        " chunk cannot take the node's max_sessions from everyone else.",
    )
    device_chunks_per_s: float = Field(
        150.0,
        ge=0,
        le=1_000_000,
        description="Messages per second one device may send (chunk, raw and file alike);"
        " 0 = no limit. Normal is 50/s (20 ms chunks), 100/s with 10 ms chunks; 150 leaves"
        " headroom for those and drains a backlog at 3x (20 ms), while a 10x flood (500/s)"
        " is throttled.",
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
        " persistent MQTT session. A 10x flood is throttled after ~4 s.",
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


class EndpointSection(_Section):
    """When an utterance is over."""

    vad_threshold: float = Field(
        0.5, gt=0, lt=1, description="Silero speech probability that counts as speech."
    )
    silence_ms: int = Field(
        700,
        ge=0,
        le=10_000,
        description="Trailing silence that ends an utterance (Home Assistant's default 0.7 s);"
        " 0 disables silence endpointing.",
    )
    min_speech_ms: int = Field(
        160, ge=0, le=5000, description="Speech needed before trailing silence can end it."
    )
    speculate_ms: int = Field(
        200,
        ge=0,
        le=10_000,
        description="Start the final's decode this far into a pause after speech; if the"
        " utterance then ends with no new speech, that result is published at once. 0 = off.",
    )
    max_duration_s: float = Field(30.0, ge=1, le=300, description="Longest utterance.")
    idle_timeout_s: float = Field(
        3.0, gt=0, le=600, description="No chunk for this long: finalize, flagged incomplete."
    )
    no_speech_timeout_s: float = Field(
        8.0, gt=0, le=600, description="Give up on a stream that has had no speech this long."
    )


class PartialsSection(_Section):
    """Interim transcripts while the user speaks."""

    enabled: bool = Field(True, description="Publish partial transcripts.")
    interval_ms: int = Field(
        500,
        ge=100,
        le=10_000,
        description="New audio between partial decodes; ~0.5 s keeps words appearing while a"
        " tiny.en decode (~150-250 ms) uses under half of one worker per stream.",
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


class GateSection(_Section):
    """Rejecting silence and noise before Whisper invents text for it."""

    min_speech_ms: int = Field(
        200, ge=0, le=5000, description="Less VAD speech than this: reject as no_speech."
    )
    min_confidence: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Geometric-mean token probability below which text is"
        " rejected as low_confidence (shared clips measured 0.31-0.94; silence decoded to"
        " 'you' at 0.22, though the VAD gate stops silence before decoding).",
    )


class LoggingSection(_Section):
    """Log output."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Level.")
    format: Literal["text", "json"] = Field(
        "text",
        description="text: readable lines; json: one JSON object per line, with device and"
        " session keys on a session's records, for log collectors.",
    )


class SpoolSection(_Section):
    """In-flight session audio kept on disk, so a killed node loses no utterance (spool.py)."""

    enabled: bool = Field(True, description="Spool in-flight sessions to disk.")
    dir: Path | None = Field(
        None,
        description="Spool directory; empty: $XDG_STATE_HOME (~/.local/state)"
        "/orac-node/<node id>/spool. The systemd unit sets /var/lib/orac-node/spool.",
    )
    max_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Spool size limit; beyond it new sessions are served but not spooled"
        " (counted, logged). A 30 s session is ~1 MB, so 256 MiB holds ~250 of them.",
    )
    fsync_interval_ms: int = Field(
        1000,
        ge=0,
        le=60_000,
        description="fsync spooled audio this often (0: after every chunk). Writes reach the"
        " kernel at once, so a killed process loses nothing; this bounds what a power cut"
        " loses, at the cost of SD-card writes.",
    )
    finished_ttl_s: float = Field(
        3600.0,
        gt=0,
        description="Finalized sessions are remembered this long (across restarts) so a"
        " redelivered chunk never produces a second final.",
    )

    def resolved_dir(self, node_id: str) -> Path:
        """The spool directory of a node."""
        return self.dir if self.dir is not None else state_dir(node_id) / "spool"


class CacheSection(_Section):
    """Response cache: identical audio decoded the same way is not decoded twice (cache.py)."""

    backend: Literal["memory", "redis", "off"] = Field(
        "memory", description="memory: in the node; redis: shared by all nodes; off."
    )
    max_entries: int = Field(
        1000, ge=1, le=1_000_000, description="memory: entries kept (least recently used go)."
    )
    ttl_s: float = Field(3600.0, gt=0, description="How long an entry is kept.")
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="redis: the server (redis:// or rediss://)."
    )


class MetricsSection(_Section):
    """Prometheus exposition (metrics.py)."""

    enabled: bool = Field(False, description="Serve /metrics over HTTP.")
    host: str = Field(
        "127.0.0.1",
        description="Address to listen on; 0.0.0.0 lets a Prometheus on another machine scrape.",
    )
    port: int = Field(9464, ge=1, le=65535, description="Port of /metrics.")


class RequestsSection(_Section):
    """Request/response for ORAC Core on orac/request/... (rpc.py)."""

    enabled: bool = Field(True, description="Answer requests (describe, transcribe, retranscribe).")
    recent_sessions: int = Field(
        64,
        ge=0,
        le=10_000,
        description="Finished sessions whose audio is kept for retranscribe (16-bit, so a"
        " 30 s session is ~1 MB; 64 of them at most ~60 MB); 0 keeps none.",
    )
    recent_ttl_s: float = Field(
        600.0,
        gt=0,
        le=86_400,
        description="How long a session's audio stays retranscribable. Core retries a"
        " low-confidence final within seconds; 10 minutes leaves room for a person.",
    )
    max_in_flight: int = Field(
        4,
        ge=1,
        le=256,
        description="Requests decoded at once; more are answered busy (a burst of"
        " retranscribes must not starve live finals of the workers).",
    )


class ContextSection(_Section):
    """Conversation context from ORAC Core, used as the prompt of finals (context.py)."""

    enabled: bool = Field(True, description="Use context published on orac/context/...")
    max_entries: int = Field(
        1024,
        ge=1,
        le=1_000_000,
        description="Devices and topics with context held at once (oldest go first): bounds"
        " what a stream of context messages can cost.",
    )


class WebhookTarget(_Section):
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
        from urllib.parse import urlsplit  # noqa: PLC0415 - only validation needs it

        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("webhook url must be http:// or https:// with a host")
        if parts.username or parts.password:
            raise ValueError("no credentials in a webhook url: use secret")
        return value


class TopicConfig(_Section):
    """Settings of one transcript topic.

    Set in config.yaml (``registry.topics``) or retained on
    ``orac/config/topic/<topic>`` (the topics registry, shared by every node).
    """

    enabled: bool = Field(
        True, description="false: audio for this topic is refused with topic_disabled."
    )
    model: str | None = Field(
        None, description="Model for this topic's finals (the node's, or one of model.extra)."
    )
    language: str | None = Field(
        None, description="Language of this topic's sessions unless a chunk names one."
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

    @field_validator("model")
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


class RegistrySection(_Section):
    """The topics registry and satellites' heartbeats (registry.py)."""

    enabled: bool = Field(
        True, description="Follow retained topic configs and satellite heartbeats."
    )
    topics: dict[str, TopicConfig] = Field(
        default_factory=dict,
        description="Topic configs from this file; a retained config of the same topic"
        " (orac-node topics set) replaces it.",
    )
    register_topics: bool = Field(
        True,
        description="A topic a satellite's heartbeat names that has no config gets a"
        " default one published (lazy registration), so it shows in orac-node topics list.",
    )

    @field_validator("topics")
    @classmethod
    def _topic_names(cls, value: dict[str, TopicConfig]) -> dict[str, TopicConfig]:
        return _one_level_names(value, "topic names")


class WebhooksSection(_Section):
    """Delivery of finals to HTTP receivers (webhooks.py)."""

    timeout_s: float = Field(5.0, gt=0, le=120, description="Per-POST timeout.")
    max_attempts: int = Field(
        10,
        ge=1,
        le=100,
        description="Attempts before an event is dead-lettered: with the default backoff"
        " the nine waits add up to 2-4 minutes, so a receiver down for a minute or two"
        " still gets everything.",
    )
    backoff_initial_s: float = Field(
        1.0, gt=0, le=3600, description="Delay before the first retry; doubles each time."
    )
    backoff_max_s: float = Field(60.0, gt=0, le=86_400, description="Longest retry delay.")
    outbox_max: int = Field(
        10_000,
        ge=1,
        le=10_000_000,
        description="Events waiting for delivery, kept on disk; beyond it the oldest are"
        " dead-lettered (counted, logged).",
    )
    dir: Path | None = Field(
        None,
        description="Outbox and dead letters (SQLite); empty: beside the spool, in"
        " $XDG_STATE_HOME/orac-node/<node id>/webhooks.",
    )
    allow: list[str] = Field(
        default_factory=list,
        description="Destination allowlist: host names and CIDR networks. Empty: any"
        " destination except loopback, link-local, multicast and unspecified addresses;"
        " otherwise only these (list 127.0.0.0/8 to allow a receiver on this machine).",
    )

    @field_validator("allow")
    @classmethod
    def _allow_entries(cls, value: list[str]) -> list[str]:
        Allowlist.parse(value)  # ValueError names the entry that is neither name nor network
        return value

    def resolved_dir(self, node_id: str) -> Path:
        """The outbox directory of a node."""
        return self.dir if self.dir is not None else state_dir(node_id) / "webhooks"


class NodeConfig(_Section):
    """Everything ``orac-node run`` needs."""

    node: NodeSection = Field(default_factory=NodeSection)
    broker: BrokerSection = Field(default_factory=BrokerSection)
    model: ModelSection = Field(default_factory=ModelSection)
    decode: DecodeSection = Field(default_factory=DecodeSection)
    ingest: IngestSection = Field(default_factory=IngestSection)
    endpoint: EndpointSection = Field(default_factory=EndpointSection)
    partials: PartialsSection = Field(default_factory=PartialsSection)
    gate: GateSection = Field(default_factory=GateSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)
    spool: SpoolSection = Field(default_factory=SpoolSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    cache: CacheSection = Field(default_factory=CacheSection)
    requests: RequestsSection = Field(default_factory=RequestsSection)
    context: ContextSection = Field(default_factory=ContextSection)
    registry: RegistrySection = Field(default_factory=RegistrySection)
    webhooks: WebhooksSection = Field(default_factory=WebhooksSection)


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``ORAC_NODE_SECTION__KEY=value`` variables into a nested mapping.

    Only names with a ``__`` separator count, so other ``ORAC_NODE_*``
    variables (``ORAC_NODE_MODEL`` in the Justfile, ``ORAC_NODE_SHARED`` in the
    tests) are not mistaken for settings. Values stay strings; pydantic
    converts them to the field's type. Values that look like YAML collections
    (``[...]``/``{...}``) are parsed as YAML.
    """
    result: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name[len(ENV_PREFIX) :]:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = result
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = yaml.safe_load(value) if value[:1] in "[{" else value
    return result


def load_config(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> NodeConfig:
    """Build the config from file, environment and explicit overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        data = loaded
    data = _deep_merge(data, env_overrides(os.environ if environ is None else environ))
    data = _deep_merge(data, overrides or {})
    try:
        return NodeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration:\n{_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    """Where each error is and what is wrong, without the offending value.

    pydantic's own message quotes the input, and the input may be a password
    (``password: 12345678`` is an int in YAML): this text ends up in the journal.
    """
    return "\n".join(
        f"  {'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    )
