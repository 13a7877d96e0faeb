"""Long recordings as jobs: submitted, queued in Redis, decoded by any node (docs/JOBS.md).

``orac/job/<id>`` carries :class:`JobEvent` (JSON, QoS 1): progress while a node
decodes the job window by window, and its end (``done``, ``failed``,
``cancelled``). The job itself, its result included, is kept in Redis
(jobs/store.py) and read by id; the events are for watching. A job is submitted
with ``orac-node transcribe --submit``, the SDK's ``Client.submit_job`` or the
``submit_job`` request (requests.py), whose answer carries the job id.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Self, get_args

from orac_node.errors import ContractError
from orac_node.wire.base import (
    PROTOCOL_VERSION,
    ErrorCode,
    JsonPayload,
    json_object,
    language_field,
    name_field,
    optional,
    require,
)
from orac_node.wire.transcripts import Segment

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
JOB_STATES: tuple[JobState, ...] = get_args(JobState)
FINISHED: frozenset[JobState] = frozenset({"done", "failed", "cancelled"})
JOB_FILTER = "orac/job/+"


def job_topic(job: str) -> str:
    """Where a job's progress and end are published."""
    return f"orac/job/{job}"


def job_percent(state: JobState, done_s: float, audio_s: float) -> float:
    """Share of a job's audio decoded, 0-100 (100 once done)."""
    return 100.0 if state == "done" else round(100 * done_s / audio_s, 1)


@dataclass(frozen=True, slots=True)
class JobEvent(JsonPayload):
    """A job moved on: ``percent`` of its audio decoded; ``text``: what the last window said.

    On ``done`` ``text`` is the whole transcript; on ``failed`` ``error`` says why.
    """

    job: str
    state: JobState
    percent: float
    done_s: float
    audio_s: float
    node: str
    ts: float
    text: str = ""
    error: str | None = None
    v: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class JobInfo(JsonPayload):
    """A job as the store holds it: what ``jobs show`` prints and the SDK returns."""

    job: str
    state: JobState
    name: str
    created: float
    audio_s: float
    done_s: float = 0.0
    node: str | None = None
    attempts: int = 0
    finished: float | None = None
    error: str | None = None
    language: str | None = None
    prompt: str | None = None
    text: str = ""
    segments: list[Segment] = field(default_factory=list)
    v: int = PROTOCOL_VERSION

    @property
    def percent(self) -> float:
        """Share of the audio decoded, 0-100."""
        return job_percent(self.state, self.done_s, self.audio_s)


@dataclass(frozen=True, slots=True)
class JobRequest:
    """``submit_job``: queue an audio file (any format ffmpeg reads, base64 in ``audio``)."""

    audio: bytes
    name: str = "request"
    language: str | None = None
    prompt: str | None = None

    def encode(self) -> bytes:
        """Serialize to the JSON a requester sends."""
        data: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "audio": base64.b64encode(self.audio).decode(),
            "name": self.name,
        }
        for key in ("language", "prompt"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return json.dumps(data).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        """Parse and validate; :class:`ContractError` on any fault."""
        data = json_object(payload)
        if data.get("v", PROTOCOL_VERSION) != PROTOCOL_VERSION:
            raise ContractError(ErrorCode.UNSUPPORTED_VERSION, f"v={data.get('v')!r}")
        try:
            audio = base64.b64decode(require(data, "audio", str), validate=True)
        except binascii.Error as exc:
            raise ContractError(ErrorCode.BAD_FIELD, f"audio is not base64: {exc}") from None
        return cls(
            audio=audio,
            name=name_field(data, "name") or "request",
            language=language_field(data, "language"),
            prompt=optional(data, "prompt", str),
        )
