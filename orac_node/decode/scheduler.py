"""Inference scheduling: a few model workers serving every session.

Each worker owns one engine and one thread (a single-thread executor), so a
model instance is never touched by two threads (pywhispercpp aborts the process
if it is). Requests wait in two queues:

- finals, served first and in arrival order: the final is what ORAC Core acts
  on, so a final never waits behind a partial. A partial already running when a
  final arrives is aborted at whisper.cpp's next abort check.
- a final whose caller gave up (a speculative final overtaken by new speech)
  is skipped if still queued and aborted if already running.
- partials, served only when no final waits. The caller passes a *snapshot
  function* instead of audio: it is called when a worker picks the job up, so
  a partial that waited always decodes the newest audio (partials coalesce),
  and the caller keeps at most one partial per session queued (fairness).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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


@dataclass(slots=True)
class _Job:
    audio: Callable[[], Samples | None]
    options: DecodeOptions
    future: asyncio.Future[Decoding | None]
    enqueued: float
    is_final: bool
    started: float = 0.0

    @property
    def wait_ms(self) -> float:
        """How long the job waited for a worker."""
        return round((self.started - self.enqueued) * 1000, 1)


class InferenceScheduler:
    """Runs decode jobs on a pool of engines, finals before partials."""

    def __init__(self, engines: list[Decoder], *, cores: int = 1) -> None:
        if not engines:
            raise ValueError("at least one engine is needed")
        self._engines = engines
        self._cores = cores
        self._finals: deque[_Job] = deque()
        self._partials: deque[_Job] = deque()
        self._wakeup = asyncio.Event()
        self.busy = 0
        self.decodes = 0
        self.aborted = 0

    @property
    def queued(self) -> int:
        """Jobs waiting for a worker."""
        return len(self._finals) + len(self._partials)

    async def run(self) -> None:
        """Serve jobs until cancelled (one named task per worker)."""
        executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"whisper-{i}")
            for i in range(len(self._engines))
        ]
        try:
            async with asyncio.TaskGroup() as group:
                for i, (engine, executor) in enumerate(zip(self._engines, executors, strict=True)):
                    group.create_task(self._worker(engine, executor), name=f"inference-worker-{i}")
        finally:
            for job in (*self._finals, *self._partials):
                job.future.cancel()
            for executor in executors:
                executor.shutdown(wait=True)

    async def final(self, samples: Samples, options: DecodeOptions) -> FinalDecoding:
        """Decode a finished utterance with priority over every partial."""
        job = self._enqueue(lambda: samples, options, is_final=True)
        decoding = await job.future
        assert decoding is not None  # finals are never skipped
        return FinalDecoding(decoding, queue_ms=job.wait_ms)

    async def partial(
        self, snapshot: Callable[[], Samples | None], options: DecodeOptions
    ) -> Decoding | None:
        """Decode the newest audio when a worker is free; None if skipped or aborted."""
        return await self._enqueue(snapshot, options, is_final=False).future

    def _enqueue(
        self, audio: Callable[[], Samples | None], options: DecodeOptions, *, is_final: bool
    ) -> _Job:
        future: asyncio.Future[Decoding | None] = asyncio.get_running_loop().create_future()
        job = _Job(audio, options, future, time.monotonic(), is_final)
        (self._finals if is_final else self._partials).append(job)
        self._wakeup.set()
        return job

    async def _take(self) -> _Job:
        while not (self._finals or self._partials):
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._finals.popleft() if self._finals else self._partials.popleft()

    def _final_waiting(self) -> bool:
        # Called from the worker thread between whisper.cpp graph evaluations;
        # reading a deque's length is atomic under the GIL.
        return bool(self._finals)

    def _abort_check(self, job: _Job) -> Callable[[], bool]:
        """When a running decode should stop: its caller gave up, or (partials) a final waits."""
        future = job.future
        if job.is_final:
            return future.cancelled
        return lambda: self._final_waiting() or future.cancelled()

    async def _worker(self, engine: Decoder, executor: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = await self._take()
            if job.future.cancelled():
                continue
            samples = job.audio()
            if samples is None or samples.size == 0:
                job.future.set_result(None)
                continue
            job.started = time.monotonic()
            abort = self._abort_check(job)
            self.busy += 1
            # All cores for a lone decode, shared out when several workers are busy
            # (two 1-thread decodes in parallel beat two 2-thread ones in a row).
            options = dataclasses.replace(job.options, threads=max(1, self._cores // self.busy))
            try:
                decoding = await loop.run_in_executor(
                    executor, engine.decode, samples, options, abort
                )
            except asyncio.CancelledError:
                job.future.cancel()  # the scheduler is stopping: release the caller
                raise
            except Exception as exc:  # a decode failure must fail the job, not the worker
                log.exception("decode failed")
                if not job.future.done():
                    job.future.set_exception(exc)
                continue
            finally:
                self.busy -= 1
            self.decodes += 1
            if decoding.aborted:
                self.aborted += 1
            with contextlib.suppress(asyncio.InvalidStateError):
                job.future.set_result(None if decoding.aborted else decoding)
