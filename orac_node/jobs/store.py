"""The job queue and the jobs themselves, in Redis: shared by every node and the CLI.

Why Redis Streams: a consumer group hands each job to one node, keeps it
*pending* until that node acknowledges it, and lets another node take over a
pending entry that has sat idle too long (``XAUTOCLAIM``) — at-least-once
delivery with reclaim, which is what a node dying mid-job needs.

A second run of a job must never *complete* a job twice, so every change a
worker makes goes through a small Lua script guarded by the job's
``attempts``: taking a job increments it and hands the worker that number as
its token; a checkpoint or the completion with a stale token is refused, and
the worker stops. A node that took over resumes at the last checkpoint (the
windows already decoded are kept), so a dead node costs at most one window.

Keys (``orac:jobs:`` prefix):

- ``queue``: the stream, one entry per run of a job; group ``nodes``.
- ``job:<id>``: a hash, the job's state (:class:`~orac_node.wire.JobInfo`).
- ``job:<id>:audio``: a list of s16le 16 kHz mono pieces of :data:`PIECE_S`;
  read a piece at a time, so no node holds a whole recording, and deleted
  when the job is done.
- ``job:<id>:segments``: a list of JSON segments, appended window by window.
- ``index``: a sorted set of job ids by creation time, for ``jobs list``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis.asyncio as aioredis

from orac_node.audio import Samples, float_to_s16, pcm_to_float
from orac_node.errors import OracNodeError
from orac_node.wire import JOB_STATES, SAMPLE_RATE, AudioFormat, JobInfo, JobState, Segment

PIECE_S = 30.0
"""Audio is stored in pieces of 30 s (960 KB): a window needs one or two, and a
piece is small enough to move in one Redis call without stalling it."""
PIECE_SAMPLES = int(PIECE_S * SAMPLE_RATE)
GROUP = "nodes"
PREFIX = "orac:jobs:"


class JobError(OracNodeError):
    """A job that cannot be found or changed as asked."""


@dataclass(frozen=True, slots=True)
class Taken:
    """A job this node now runs: its stream entry and the token its writes carry."""

    job: JobInfo
    entry: str
    token: int
    next_sample: int


# A job is taken only while queued or running (another node's run that went idle);
# attempts is the fencing token of this run.
_START = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then return -1 end
local token = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'node', ARGV[1], 'started', ARGV[2])
return token
"""
# A window decoded: its segments appended, the resume point moved on.
_CHECKPOINT = """
if redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
for i = 4, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
redis.call('HSET', KEYS[1], 'next', ARGV[2], 'done_s', ARGV[3])
return 1
"""
# The end of a run: done (audio dropped) or failed (audio kept for retry).
_FINISH = """
if redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'finished', ARGV[3], 'error', ARGV[5],
           'language', ARGV[6])
if ARGV[2] == 'done' then redis.call('DEL', KEYS[3]) end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[4]) end
return 1
"""
_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then return state or '' end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished', ARGV[1])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[2]) end
return 'ok'
"""
_RETRY = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'failed' and state ~= 'cancelled' then return state or '' end
if redis.call('EXISTS', KEYS[3]) == 0 then return 'gone' end
redis.call('HSET', KEYS[1], 'state', 'queued', 'next', 0, 'done_s', 0, 'error', '')
redis.call('HDEL', KEYS[1], 'finished')
redis.call('DEL', KEYS[2])
for i = 1, 3 do redis.call('PERSIST', KEYS[i]) end
return 'ok'
"""


class JobStore:
    """The jobs in one Redis database, as nodes, the CLI and the SDK's node see them."""

    def __init__(self, url: str, *, keep_s: float, prefix: str = PREFIX) -> None:
        self._redis = aioredis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self._keep_s = int(keep_s)
        self._p = prefix
        self._start = self._redis.register_script(_START)
        self._checkpoint = self._redis.register_script(_CHECKPOINT)
        self._finish = self._redis.register_script(_FINISH)
        self._cancel = self._redis.register_script(_CANCEL)
        self._retry = self._redis.register_script(_RETRY)
        self._group_ready = False

    async def close(self) -> None:
        """Let go of the connections."""
        await self._redis.aclose()

    def _keys(self, job: str) -> list[str]:
        base = f"{self._p}job:{job}"
        return [base, f"{base}:segments", f"{base}:audio"]

    # -- submitting -----------------------------------------------------------------

    async def submit(
        self,
        pieces: AsyncIterable[Samples],
        *,
        name: str,
        language: str | None = None,
        prompt: str | None = None,
        max_audio_s: float,
    ) -> str:
        """Store a recording's audio piece by piece, then queue it; returns the job id.

        ``pieces``: float32 16 kHz mono, of any length; re-cut to :data:`PIECE_S`.
        A recording over ``max_audio_s`` is refused before it is queued.
        """
        job = uuid.uuid4().hex[:12]
        key, _, audio_key = self._keys(job)
        try:
            total = await self._store_audio(audio_key, pieces, name, max_audio_s)
        except BaseException:
            await self._redis.delete(audio_key)
            raise
        fields: dict[Any, Any] = {
            "job": job,
            "state": "queued",
            "name": name,
            "created": time.time(),
            "samples": total,
            "next": 0,
            "done_s": 0,
            "attempts": 0,
            "language": language or "",
            "prompt": prompt or "",
            "error": "",
        }
        await self._redis.hset(key, mapping=fields)
        await self._redis.zadd(f"{self._p}index", {job: float(fields["created"])})
        await self._ensure_group()
        await self._redis.xadd(f"{self._p}queue", {"job": job})
        return job

    async def _store_audio(
        self, audio_key: str, pieces: AsyncIterable[Samples], name: str, max_audio_s: float
    ) -> int:
        """Append the recording to ``audio_key`` in :data:`PIECE_S` pieces; its samples."""
        total = 0
        pending = np.zeros(0, np.float32)
        async for block in pieces:
            pending = np.concatenate([pending, block])
            while pending.size >= PIECE_SAMPLES:
                await self._redis.rpush(audio_key, float_to_s16(pending[:PIECE_SAMPLES]))
                total += PIECE_SAMPLES
                pending = pending[PIECE_SAMPLES:]
            if total + pending.size > max_audio_s * SAMPLE_RATE:
                raise JobError(f"{name}: longer than jobs.max_audio_s ({max_audio_s:g} s)")
        if pending.size:
            await self._redis.rpush(audio_key, float_to_s16(pending))
            total += pending.size
        if not total:
            raise JobError(f"{name}: no audio")
        return total

    # -- reading ----------------------------------------------------------------------

    async def get(self, job: str, *, segments: bool = False) -> JobInfo:
        """One job (:class:`JobError` if unknown or expired); ``segments`` adds the result."""
        key, seg_key, _ = self._keys(job)
        raw = await self._redis.hgetall(key)
        if not raw:
            raise JobError(f"no job {job} (unknown, or expired)")
        found = [] if not segments else await self._segments(seg_key)
        return _info(raw, found)

    async def _segments(self, seg_key: str) -> list[Segment]:
        rows = await self._redis.lrange(seg_key, 0, -1)
        return [Segment(**json.loads(row)) for row in rows]

    async def latest(self, limit: int = 50) -> list[JobInfo]:
        """The latest jobs, newest first; expired ones leave the index as they are met."""
        ids = [_text(i) for i in await self._redis.zrevrange(f"{self._p}index", 0, limit - 1)]
        found: list[JobInfo] = []
        for job in ids:
            raw = await self._redis.hgetall(self._keys(job)[0])
            if raw:
                found.append(_info(raw, []))
            else:
                await self._redis.zrem(f"{self._p}index", job)
        return found

    async def piece(self, job: str, index: int) -> Samples | None:
        """Piece ``index`` of a job's audio (None past the end, or once deleted)."""
        data = await self._redis.lindex(self._keys(job)[2], index)
        if not isinstance(data, bytes):
            return None
        return pcm_to_float(data, AudioFormat.S16LE, 1)

    # -- running ----------------------------------------------------------------------

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._redis.xgroup_create(f"{self._p}queue", GROUP, id="0", mkstream=True)
        except aioredis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def take(self, node: str, *, lease_s: float, block_s: float) -> Taken | None:
        """The next job for ``node``: one whose run went idle past ``lease_s`` first, else new.

        Waits up to ``block_s`` for a new one. None: nothing to do.
        """
        await self._ensure_group()
        queue = f"{self._p}queue"
        claimed: Any = await self._redis.xautoclaim(
            queue, GROUP, node, min_idle_time=int(lease_s * 1000), count=1
        )
        entries = [(entry_id, data) for entry_id, data in claimed[1]]
        if not entries:
            got: Any = await self._redis.xreadgroup(
                GROUP, node, {queue: ">"}, count=1, block=int(block_s * 1000)
            )
            entries = [(entry_id, data) for _, rows in got for entry_id, data in rows]
        for entry_id, data in entries:
            entry = entry_id.decode()
            job = data[b"job"].decode()
            key = self._keys(job)[0]
            token = int(await self._start(keys=[key], args=[node, time.time()]))
            if token < 0:  # cancelled, or done by a run that was only slow
                await self._ack(entry)
                continue
            raw = await self._redis.hgetall(key)
            return Taken(_info(raw, []), entry, token, int(_text(raw[b"next"])))
        return None

    async def keep(self, taken: Taken, node: str) -> None:
        """Still working on it: reset the entry's idle time so no other node takes it."""
        await self._redis.xclaim(
            f"{self._p}queue", GROUP, node, min_idle_time=0, message_ids=[taken.entry], justid=True
        )

    async def release(self, taken: Taken, node: str, *, lease_s: float) -> None:
        """Hand the job back now (a node stopping): mark its entry idle past any lease.

        The next node's ``take`` reclaims it at once and resumes at the last
        checkpoint, instead of waiting out the lease.
        """
        await self._redis.xclaim(
            f"{self._p}queue",
            GROUP,
            node,
            min_idle_time=0,
            message_ids=[taken.entry],
            idle=int(lease_s * 1000) + 1000,
            justid=True,
        )

    async def checkpoint(self, taken: Taken, next_sample: int, segments: list[Segment]) -> bool:
        """A window is done: keep its segments and where to resume.

        False: this run is over (cancelled, or another node took the job).
        """
        key, seg_key, _ = self._keys(taken.job.job)
        rows = [json.dumps({"start": s.start, "end": s.end, "text": s.text}) for s in segments]
        done_s = round(next_sample / SAMPLE_RATE, 2)
        return bool(
            await self._checkpoint(
                keys=[key, seg_key], args=[taken.token, next_sample, done_s, *rows]
            )
        )

    async def finish(
        self, taken: Taken, state: JobState, *, error: str = "", language: str = ""
    ) -> bool:
        """End this run (``done`` or ``failed``); False: it was no longer this run's to end.

        Only a run that ended the job acknowledges its queue entry: a run that lost
        it must not take the entry from the run that has it now.
        """
        ended = bool(
            await self._finish(
                keys=self._keys(taken.job.job),
                args=[taken.token, state, time.time(), self._keep_s, error, language],
            )
        )
        if ended:
            await self._ack(taken.entry)
        return ended

    async def drop(self, taken: Taken) -> None:
        """Acknowledge a cancelled job's entry: nothing is left to run."""
        await self._ack(taken.entry)

    async def _ack(self, entry: str) -> None:
        queue = f"{self._p}queue"
        await self._redis.xack(queue, GROUP, entry)
        await self._redis.xdel(queue, entry)

    # -- operating --------------------------------------------------------------------

    async def cancel(self, job: str) -> JobInfo:
        """Stop a queued or running job (the running node stops at its next window)."""
        await self.get(job)
        state = await self._cancel(keys=self._keys(job), args=[time.time(), self._keep_s])
        if _text(state) != "ok":
            raise JobError(f"job {job} is {_text(state)}: only a queued or running job cancels")
        return await self.get(job)

    async def retry(self, job: str) -> JobInfo:
        """Queue a failed or cancelled job again, from its start."""
        await self.get(job)
        state = _text(await self._retry(keys=self._keys(job), args=[]))
        if state == "gone":
            raise JobError(f"job {job}: its audio has expired; submit the file again")
        if state != "ok":
            raise JobError(f"job {job} is {state}: only a failed or cancelled job is retried")
        await self._ensure_group()
        await self._redis.xadd(f"{self._p}queue", {"job": job})
        return await self.get(job)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _info(raw: Mapping[bytes | str, bytes | str], segments: list[Segment]) -> JobInfo:
    f = {_text(k): _text(v) for k, v in raw.items()}
    state = f["state"]
    assert state in JOB_STATES, state
    return JobInfo(
        job=f["job"],
        state=state,
        name=f["name"],
        created=float(f["created"]),
        audio_s=round(int(f["samples"]) / SAMPLE_RATE, 2),
        done_s=float(f.get("done_s") or 0),
        node=f.get("node") or None,
        attempts=int(f.get("attempts") or 0),
        finished=float(f["finished"]) if f.get("finished") else None,
        error=f.get("error") or None,
        language=f.get("language") or None,
        prompt=f.get("prompt") or None,
        text=" ".join(s.text.strip() for s in segments if s.text.strip()),
        segments=segments,
    )
