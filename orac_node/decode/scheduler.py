"""Inference scheduling: a few model workers serving every session, live work first.

Each engine is owned by one worker with one thread (a single-thread executor),
so a model instance is never touched by two threads (pywhispercpp aborts the
process if it is). Engines belong to models (the node's own and ``model.extra``
ones); at most ``slots`` decodes run at once whatever their model, so an extra
model never oversubscribes the cores. Jobs wait in three lanes, served in order:

1. ``LIVE``: finals of live sessions (speculative ones too) and Core's
   retranscribe requests: what a user or Core waits for.
2. ``PARTIAL``: partials, served only when no live final waits. The caller
   passes a *snapshot function* instead of audio: it is called when a worker
   picks the job up, so a partial that waited always decodes the newest audio
   (partials coalesce), and the caller keeps at most one partial per session
   queued (fairness).
3. ``BATCH``: whole files and transcribe requests (up to 10 minutes of audio,
   decoded a window at a time, longform.py). Never ahead of live sessions.

Preemption: when a job cannot start because lower-lane jobs hold the slots or
the engine it needs, one of them is aborted at whisper.cpp's next abort check
(a few ms): a partial is dropped (the next one decodes newer audio anyway), a
batch window goes back to the head of its lane and is decoded again. A job
whose caller gave up (a speculative final overtaken by new speech) is skipped
if still queued and aborted if already running.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from orac_node.audio import Samples
from orac_node.decode.decoding import DecodeOptions, Decoding, FinalDecoding

log = logging.getLogger(__name__)


class Decoder(Protocol):
    """What the scheduler needs of an engine (a seam for scheduling tests)."""

    def decode(
        self,
        samples: Samples,
        options: DecodeOptions,
        should_abort: Callable[[], bool] | None = None,
    ) -> Decoding:
        """Transcribe samples; blocking."""
        ...


class Lane(IntEnum):
    """Where a job queues; a lower value is served first."""

    LIVE = 0
    PARTIAL = 1
    BATCH = 2


@dataclass(eq=False)
class _Job:
    audio: Callable[[], Samples | None]
    options: DecodeOptions
    model: str
    lane: Lane
    future: asyncio.Future[Decoding | None]
    enqueued: float
    started: float = 0.0
    preempted: bool = False

    @property
    def wait_ms(self) -> float:
        """How long the job waited for a worker."""
        return round((self.started - self.enqueued) * 1000, 1)

    def should_abort(self) -> bool:
        # Called from the worker thread between whisper.cpp graph evaluations;
        # reading two attributes is atomic under the GIL.
        return self.preempted or self.future.cancelled()


@dataclass(eq=False)
class _Worker:
    """One engine of one model, with the thread it is only ever called from."""

    model: str
    engine: Decoder
    executor: ThreadPoolExecutor
    job: _Job | None = None


@dataclass
class _Lanes:
    queues: dict[Lane, deque[_Job]] = field(
        default_factory=lambda: {lane: deque() for lane in Lane}
    )

    def __len__(self) -> int:
        return sum(len(queue) for queue in self.queues.values())

    def waiting(self) -> list[_Job]:
        return [job for lane in Lane for job in self.queues[lane]]


class InferenceScheduler:
    """Runs decode jobs on the node's engines, live work first (module docstring)."""

    def __init__(
        self,
        engines: Sequence[Decoder],
        *,
        cores: int = 1,
        slots: int | None = None,
        model: str = "main",
    ) -> None:
        if not engines:
            raise ValueError("at least one engine is needed")
        self._cores = cores
        self._slots = slots or len(engines)
        self.main = model
        self._workers: list[_Worker] = []
        self._lanes = _Lanes()
        self._wakeup = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self.busy = 0
        self.decodes = 0
        self.aborted = 0
        self.preemptions = 0
        self.add_model(model, engines)

    def add_model(self, model: str, engines: Sequence[Decoder]) -> None:
        """Engines of another model (``model.extra``), served from now on."""
        for engine in engines:
            index = len(self._workers)
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"whisper-{index}")
            self._workers.append(_Worker(model, engine, executor))
        self._wakeup.set()

    @property
    def models(self) -> list[str]:
        """Models with engines here."""
        return list(dict.fromkeys(worker.model for worker in self._workers))

    @property
    def queued(self) -> int:
        """Jobs waiting for a worker."""
        return len(self._lanes)

    async def final(
        self,
        samples: Samples,
        options: DecodeOptions,
        *,
        model: str | None = None,
        lane: Lane = Lane.LIVE,
    ) -> FinalDecoding:
        """Decode a finished utterance (or a window of a file: ``lane`` BATCH).

        A live final goes before every partial and batch job. A batch window that
        live work preempts is decoded again from the start of the window.
        """
        if lane is Lane.PARTIAL:
            raise ValueError("partials go through partial()")
        job = self._enqueue(lambda: samples, options, model or self.main, lane)
        decoding = await job.future
        if decoding is None:  # nothing to decode: nothing was said
            decoding = Decoding("", options.language, 0.0, 0.0)
        return FinalDecoding(decoding, queue_ms=job.wait_ms, model=job.model)

    async def partial(
        self,
        snapshot: Callable[[], Samples | None],
        options: DecodeOptions,
        *,
        model: str | None = None,
    ) -> Decoding | None:
        """Decode the newest audio with ``model`` (the node's) when a worker is free.

        None if skipped (nothing to decode) or aborted (a final needed the worker).
        """
        return await self._enqueue(snapshot, options, model or self.main, Lane.PARTIAL).future

    def _enqueue(
        self,
        audio: Callable[[], Samples | None],
        options: DecodeOptions,
        model: str,
        lane: Lane,
    ) -> _Job:
        if model not in self.models:
            raise LookupError(f"no engine for model {model!r}")
        future: asyncio.Future[Decoding | None] = asyncio.get_running_loop().create_future()
        job = _Job(audio, options, model, lane, future, time.monotonic())
        self._lanes.queues[lane].append(job)
        self._wakeup.set()
        return job

    async def run(self) -> None:
        """Start jobs as slots and engines free up, until cancelled."""
        try:
            while True:
                self._wakeup.clear()
                self._dispatch()
                await self._wakeup.wait()
        finally:
            for task in self._running:
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)
            for job in self._lanes.waiting():
                job.future.cancel()
            for worker in self._workers:
                worker.executor.shutdown(wait=True)

    def _dispatch(self) -> None:
        """Start every waiting job that can start, best lane first; preempt for the rest."""
        for lane in Lane:
            queue = self._lanes.queues[lane]
            for job in list(queue):
                if job.future.cancelled():
                    queue.remove(job)
                    continue
                worker = self._free_worker(job.model)
                if worker is not None:
                    queue.remove(job)
                    self._start(worker, job)
                else:
                    self._preempt_for(job)

    def _free_worker(self, model: str) -> _Worker | None:
        if self.busy >= self._slots:
            return None
        return next((w for w in self._workers if w.model == model and w.job is None), None)

    def _preempt_for(self, job: _Job) -> None:
        """Abort one lower-lane job whose end would let ``job`` start (if none is going)."""
        running = [w.job for w in self._workers if w.job is not None]
        if any(r.preempted and r.lane > job.lane for r in running):
            return  # one is already stopping; it frees what it frees
        slots_full = self.busy >= self._slots
        victims = [r for r in running if r.lane > job.lane and (r.model == job.model or slots_full)]
        if victims:
            victim = max(victims, key=lambda r: (r.lane, r.started))
            victim.preempted = True
            self.preemptions += 1

    def _start(self, worker: _Worker, job: _Job) -> None:
        samples = job.audio()
        if samples is None or samples.size == 0:
            job.future.set_result(None)
            return
        job.started = time.monotonic()
        worker.job = job
        self.busy += 1
        # All cores for a lone decode, shared out when several are busy (two
        # 1-thread decodes in parallel beat two 2-thread ones in a row).
        options = dataclasses.replace(job.options, threads=max(1, self._cores // self.busy))
        task = asyncio.create_task(self._decode(worker, job, samples, options))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _decode(
        self, worker: _Worker, job: _Job, samples: Samples, options: DecodeOptions
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            decoding = await loop.run_in_executor(
                worker.executor, worker.engine.decode, samples, options, job.should_abort
            )
        except asyncio.CancelledError:
            job.future.cancel()  # the scheduler is stopping: release the caller
            raise
        except Exception as exc:  # a decode failure must fail the job, not the worker
            log.exception("decode failed")
            if not job.future.done():
                job.future.set_exception(exc)
            return
        finally:
            worker.job = None
            self.busy -= 1
            self._wakeup.set()
        self.decodes += 1
        if decoding.aborted:
            self.aborted += 1
            if job.preempted and job.lane is Lane.BATCH and not job.future.cancelled():
                job.preempted = False
                job.enqueued = time.monotonic()
                self._lanes.queues[Lane.BATCH].appendleft(job)  # decoded again, first in line
                return
        with contextlib.suppress(asyncio.InvalidStateError):
            job.future.set_result(None if decoding.aborted else decoding)
