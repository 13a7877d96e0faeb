"""Long recordings as jobs, queued in Redis and taken by any node (docs/JOBS.md)."""

from __future__ import annotations

from pydantic import Field

from orac_node.config.base import Section


class JobsSection(Section):
    """The job queue: voicemails, meetings, podcasts transcribed in the background."""

    enabled: bool = Field(
        False,
        description="Take jobs from the queue (needs a Redis server; live sessions always go"
        " first). Off: this node takes none, though `orac-node jobs` still works.",
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="The Redis server every node of the fleet shares (redis:// or rediss://).",
    )
    keep_s: float = Field(
        7 * 24 * 3600.0,
        gt=0,
        description="How long a job's result (and a failed job's audio, for retry) is kept.",
    )
    lease_s: float = Field(
        30.0,
        ge=2,
        le=3600,
        description="A job whose node has not reported for this long is taken by another node,"
        " which resumes it from its last finished window. Longer than one window's decode on"
        " a busy node (a few seconds on a CPU); shorter means a dead node's job waits less.",
    )
    max_audio_s: float = Field(
        4 * 3600.0,
        gt=0,
        description="Longest recording accepted as a job (Redis holds its audio, 115 MB an hour,"
        " until it is done).",
    )
