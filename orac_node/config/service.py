"""The node as a service: its identity, logs, on-disk spool, metrics and response cache."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from orac_node.config.base import Section, state_dir
from orac_node.wire import is_valid_name


def _default_node_id() -> str:
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())
    return f"orac-{host}"[:64]


class NodeSection(Section):
    """Identity of this node on the bus."""

    id: str = Field(
        default_factory=_default_node_id,
        description="Node id: status topic orac/node/<id>/status and the MQTT client id."
        " null means orac-<hostname>.",
        json_schema_extra={"template": None},
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


class FleetSection(Section):
    """Several nodes on one broker sharing the satellites (docs/FLEET.md)."""

    enabled: bool = Field(
        True,
        description="Decode only the sessions this node owns among the ready nodes on the"
        " broker, claiming each on orac/claim/<device>, so that each session gets one final;"
        " alone on its broker the node owns them all. false: every session, whatever other"
        " nodes do.",
    )
    claim_wait_ms: int = Field(
        30_000,
        ge=1000,
        le=300_000,
        description="Longest a final waits for its session's claim to come back from the"
        " broker, past which it is published anyway. The claim comes back in milliseconds,"
        " but behind every chunk the node received before it: a node flooded with audio"
        " can take seconds, and publishing before knowing whose claim came first is how"
        " a session gets two finals.",
    )


class LoggingSection(Section):
    """Log output (stderr)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Least severe level written."
    )
    format: Literal["text", "json"] = Field(
        "text",
        description="text: readable lines; json: one JSON object per line (ts, level, logger,"
        " message, and device/session on the records of a session) for log collectors."
        " Neither ever holds audio or the broker password.",
    )


class SpoolSection(Section):
    """In-flight session audio kept on disk, so a killed node loses no utterance."""

    enabled: bool = Field(True, description="Spool in-flight sessions to disk.")
    dir: Path | None = Field(
        None,
        description="Spool directory; empty: $XDG_STATE_HOME (~/.local/state)/orac-node/<node"
        " id>/spool. The systemd unit sets /var/lib/orac-node/spool.",
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
        description="fsync spooled audio this often, in a thread (0: as soon as anything was"
        " written). Writes reach the kernel at once, so a killed process loses nothing; this"
        " bounds what a power cut loses, at the cost of SD-card writes.",
    )
    finished_ttl_s: float = Field(
        3600.0,
        gt=0,
        description="Finalized sessions are remembered this long (across restarts), so a"
        " redelivered chunk never produces a second final.",
    )

    def resolved_dir(self, node_id: str) -> Path:
        """The spool directory of a node."""
        return self.dir if self.dir is not None else state_dir(node_id) / "spool"


class MetricsSection(Section):
    """Prometheus exposition (ops/metrics.py)."""

    enabled: bool = Field(False, description="Serve /metrics over HTTP.")
    host: str = Field(
        "127.0.0.1",
        description="Address to listen on; 0.0.0.0 lets a Prometheus on another machine scrape.",
    )
    port: int = Field(9464, ge=1, le=65535, description="Port of /metrics.")


class CacheSection(Section):
    """Response cache: identical audio decoded the same way is not decoded twice."""

    backend: Literal["memory", "redis", "off"] = Field(
        "memory", description="memory: in the node; redis: shared by all nodes; off."
    )
    max_entries: int = Field(
        1000, ge=1, le=1_000_000, description="memory: entries kept (least recently used go)."
    )
    ttl_s: float = Field(3600.0, gt=0, description="How long an entry is kept, seconds.")
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="redis: the server (redis:// or rediss://)."
    )
    timeout_ms: int = Field(
        100,
        ge=1,
        le=10_000,
        description="redis: longest wait for one lookup or store; past it, or on any error,"
        " the lookup is a miss and Redis is left alone for 5 s. A Redis on the LAN answers"
        " in ~1 ms; 100 ms is what a black-holed server may add to one final.",
    )
