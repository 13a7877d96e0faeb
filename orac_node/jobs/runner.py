"""A node's job worker: takes jobs from the queue and decodes them in the batch lane.

Live sessions always go first: every window is a batch job of the inference
scheduler, which live finals and partials preempt. One job runs at a time per
node; a fleet runs as many as it has nodes with ``jobs.enabled``.

While a window decodes, the worker tells the queue it is still on the job
(:meth:`JobStore.keep`, every third of ``jobs.lease_s``). A node that dies stops
telling; after the lease another node takes the job and resumes at its last
checkpoint. A run that finds its checkpoint refused (the job was cancelled, or
taken over) stops without a word more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import numpy as np
from redis.exceptions import RedisError

from orac_node.audio import Samples
from orac_node.decode.decoding import DecodeOptions
from orac_node.decode.longform import SpeechProbabilities
from orac_node.decode.scheduler import InferenceScheduler, Lane
from orac_node.jobs.store import PIECE_SAMPLES, JobStore, Taken
from orac_node.jobs.windows import carry, plan
from orac_node.wire import SAMPLE_RATE, JobEvent, JobState, job_percent

log = logging.getLogger(__name__)

TAKE_BLOCK_S = 2.0
"""How long one wait for a new job blocks Redis's reply: short, so a stopping
node is not held, long enough that an idle node costs Redis nothing."""
RELEASE_TIMEOUT_S = 2.0
"""A stopping node waits this long to hand its job back; past it, the lease frees it."""
REDIS_RETRY_S = 5.0
"""A Redis that is away is asked again after this long (jobs wait; live work goes on)."""


class _Audio:
    """A job's audio, read from the store a piece at a time, the last two kept."""

    def __init__(self, store: JobStore, job: str) -> None:
        self._store = store
        self._job = job
        self._pieces: dict[int, Samples] = {}

    async def read(self, start: int, end: int) -> Samples:
        first, last = start // PIECE_SAMPLES, (end - 1) // PIECE_SAMPLES
        parts = []
        for index in range(first, last + 1):
            piece = self._pieces.get(index)
            if piece is None:
                piece = await self._store.piece(self._job, index)
                if piece is None:
                    raise LookupError(f"job {self._job}: audio piece {index} is gone")
                self._pieces[index] = piece
            parts.append(piece)
        for index in [i for i in self._pieces if i < first - 1]:  # behind the window: dropped
            del self._pieces[index]
        joined = np.concatenate(parts)
        offset = first * PIECE_SAMPLES
        return joined[start - offset : end - offset]


class JobRunner:
    """Takes jobs one at a time and runs each to its end, or until it is taken away."""

    def __init__(
        self,
        store: JobStore,
        scheduler: InferenceScheduler,
        *,
        node_id: str,
        lease_s: float,
        options: Callable[[str | None, str], DecodeOptions],
        speech: SpeechProbabilities,
        publish: Callable[[JobEvent], None],
    ) -> None:
        self._store = store
        self._scheduler = scheduler
        self._node_id = node_id
        self._lease_s = lease_s
        self._options = options
        self._speech = speech
        self._publish = publish

    async def run(self) -> None:
        """Take and run jobs until cancelled."""
        while True:
            try:
                taken = await self._store.take(
                    self._node_id, lease_s=self._lease_s, block_s=TAKE_BLOCK_S
                )
            except (RedisError, OSError) as exc:
                log.warning("job queue unreachable (%s); again in %.0f s", exc, REDIS_RETRY_S)
                await asyncio.sleep(REDIS_RETRY_S)
                continue
            if taken is None:
                continue
            try:
                await self._run(taken)
            except (RedisError, OSError) as exc:  # the job stays pending: taken again later
                log.warning("job %s: queue lost mid-run (%s)", taken.job.job, exc)
                await asyncio.sleep(REDIS_RETRY_S)

    async def _run(self, taken: Taken) -> None:
        job = taken.job
        resumed = f" from {taken.next_sample / SAMPLE_RATE:.0f} s" if taken.next_sample else ""
        log.info("job %s (%s, %.0f s of audio): running%s", job.job, job.name, job.audio_s, resumed)
        keeper = asyncio.create_task(self._keep(taken), name=f"job-keep-{job.job}")
        try:
            language = await self._windows(taken)
        except asyncio.CancelledError:  # stopping: another node resumes it at once
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(RELEASE_TIMEOUT_S):
                    await self._store.release(taken, self._node_id, lease_s=self._lease_s)
                log.info("job %s handed back for another node to resume", job.job)
            raise
        except (RedisError, OSError):
            raise  # the queue is away: the job stays pending, resumed later
        except Exception as exc:  # the job's own fault (its audio gone, a decode failed)
            log.exception("job %s failed", job.job)
            if await self._store.finish(taken, "failed", error=str(exc)):
                self._event(taken, "failed", taken.next_sample, error=str(exc))
        else:
            if language is not None and await self._store.finish(taken, "done", language=language):
                done = await self._store.get(job.job, segments=True)
                self._event(taken, "done", int(job.audio_s * SAMPLE_RATE), text=done.text)
                log.info("job %s done", job.job)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _windows(self, taken: Taken) -> str | None:
        """Decode from the checkpoint to the end; the language, or None if the run lost the job."""
        job = taken.job
        total = round(job.audio_s * SAMPLE_RATE)
        audio = _Audio(self._store, job.job)
        language = job.language or ""
        start = taken.next_sample
        said = ""  # the last window's text: the next one's prompt (a resumed run has none)
        while start < total:
            window = await plan(start, total, audio.read, self._speech)
            samples = await audio.read(window.start, window.cut)
            options = self._options(job.language, carry(job.prompt or "", said))
            result = await self._scheduler.final(samples, options, lane=Lane.BATCH)
            decoding = result.decoding
            language = language or decoding.language
            kept = window.place(decoding.segments)
            said = " ".join(s.text for s in kept)
            if not await self._store.checkpoint(taken, window.cut, kept):
                log.info("job %s: cancelled or taken over; this run stops", job.job)
                current = await self._store.get(job.job)
                if current.state == "cancelled":
                    await self._store.drop(taken)
                    self._event(taken, "cancelled", start)
                return None
            self._event(taken, "running", window.cut, text=said)
            start = window.cut
        return language

    async def _keep(self, taken: Taken) -> None:
        """Tell the queue this node is still on the job, a few times per lease."""
        while True:
            await asyncio.sleep(self._lease_s / 3)
            try:
                await self._store.keep(taken, self._node_id)
            except RedisError as exc:  # a hiccup: the next one may pass; a lease is long
                log.warning("job %s: could not renew its lease: %s", taken.job.job, exc)

    def _event(
        self, taken: Taken, state: JobState, done: int, *, text: str = "", error: str | None = None
    ) -> None:
        job = taken.job
        done_s = round(done / SAMPLE_RATE, 2)
        event = JobEvent(
            job.job,
            state,
            job_percent(state, done_s, job.audio_s),
            done_s,
            job.audio_s,
            self._node_id,
            time.time(),
            text,
            error,
        )
        self._publish(event)
