"""InferenceScheduler with a fake decoder at its seam: priority, coalescing, abort, threads.

The fake is the only stand-in in the unit suite: it takes the place of a
:class:`~orac_node.engine.WhisperEngine` to make scheduling observable (call order,
threads, abort polling). Each job's audio is a constant array whose value is the
job's label, so the fake can tell which job it is decoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import queue
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import numpy as np
import pytest

from orac_node.audio import Samples
from orac_node.decode.decoding import DecodeOptions, Decoding
from orac_node.decode.scheduler import InferenceScheduler

OPTIONS = DecodeOptions()
HARD_LIMIT_S = 5.0  # a fake decode never blocks longer than this, even if a test forgets it


def _audio(label: int, size: int = 160) -> Samples:
    return np.full(size, label, np.float32)


def _snapshot(label: int) -> Callable[[], Samples]:
    return lambda: _audio(label)


@dataclass(frozen=True)
class Call:
    label: int
    size: int
    threads: int
    thread: int
    thread_name: str


class FakeDecoder:
    """Records each call; blocks while ``gate`` is clear, polling ``should_abort``."""

    def __init__(self, *, seconds: float = 0.0, fail_on: frozenset[int] = frozenset()) -> None:
        self.seconds = seconds
        self.fail_on = fail_on
        self.gate = threading.Event()
        self.gate.set()
        self.calls: list[Call] = []
        self.started: queue.Queue[int] = queue.Queue()
        self._lock = threading.Lock()
        self._active = 0
        self.max_active = 0

    def decode(
        self,
        samples: Samples,
        options: DecodeOptions,
        should_abort: Callable[[], bool] | None = None,
    ) -> Decoding:
        assert dataclasses.replace(options, threads=0) == OPTIONS
        label = int(samples[0])
        with self._lock:
            self._active += 1
            self.max_active = max(self.max_active, self._active)
        self.calls.append(
            Call(
                label,
                samples.size,
                options.threads,
                threading.get_ident(),
                threading.current_thread().name,
            )
        )
        self.started.put(label)
        began = time.monotonic()
        aborted = False
        try:
            while time.monotonic() - began < self.seconds or not self.gate.is_set():
                if should_abort is not None and should_abort():
                    aborted = True
                    break
                if time.monotonic() - began > HARD_LIMIT_S:
                    raise RuntimeError("fake decode held too long")
                time.sleep(0.002)
            if label in self.fail_on:
                raise RuntimeError(f"decode of {label} failed")
            return Decoding(
                text=f"decoded {label}",
                language="en",
                confidence=0.5,
                decode_ms=round((time.monotonic() - began) * 1000, 1),
                aborted=aborted,
            )
        finally:
            with self._lock:
                self._active -= 1

    async def wait_started(self, label: int) -> None:
        """Wait (off the loop) until the decode of ``label`` has begun."""
        got = await asyncio.to_thread(self.started.get, True, HARD_LIMIT_S)
        assert got == label, f"expected {label} to start, got {got}"


@contextlib.asynccontextmanager
async def running(*engines: FakeDecoder) -> AsyncIterator[InferenceScheduler]:
    scheduler = InferenceScheduler(list(engines))
    task = asyncio.create_task(scheduler.run(), name="scheduler-under-test")
    try:
        yield scheduler
        assert not task.done(), "the scheduler stopped on its own"
    finally:
        for engine in engines:
            engine.gate.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_needs_an_engine() -> None:
    with pytest.raises(ValueError, match="engine"):
        InferenceScheduler([])


async def test_final_decodes_its_audio_and_reports_queue_time() -> None:
    engine = FakeDecoder()
    async with running(engine) as scheduler:
        result = await scheduler.final(_audio(7, 320), OPTIONS)
    assert result.decoding.text == "decoded 7"
    assert 0 <= result.queue_ms < 100  # idle worker: picked up at once
    assert engine.calls == [engine.calls[0]]
    assert engine.calls[0].size == 320
    assert scheduler.decodes == 1


async def test_finals_run_before_queued_partials() -> None:
    engine = FakeDecoder()
    engine.gate.clear()
    async with running(engine) as scheduler:
        blocker = asyncio.create_task(scheduler.final(_audio(0), OPTIONS))
        await engine.wait_started(0)
        partial_1 = asyncio.create_task(scheduler.partial(lambda: _audio(1), OPTIONS))
        await asyncio.sleep(0)
        partial_2 = asyncio.create_task(scheduler.partial(lambda: _audio(2), OPTIONS))
        await asyncio.sleep(0)
        final_3 = asyncio.create_task(scheduler.final(_audio(3), OPTIONS))
        await asyncio.sleep(0)
        final_4 = asyncio.create_task(scheduler.final(_audio(4), OPTIONS))
        await asyncio.sleep(0.02)
        assert scheduler.queued == 4
        assert scheduler.busy == 1
        engine.gate.set()
        results = await asyncio.wait_for(
            asyncio.gather(blocker, partial_1, partial_2, final_3, final_4), HARD_LIMIT_S
        )
    assert [c.label for c in engine.calls] == [0, 3, 4, 1, 2]
    blocker_r, p1, p2, f3, f4 = results
    assert (blocker_r.decoding.text, f3.decoding.text, f4.decoding.text) == (
        "decoded 0",
        "decoded 3",
        "decoded 4",
    )
    assert p1 is not None and p1.text == "decoded 1"
    assert p2 is not None and p2.text == "decoded 2"
    assert scheduler.queued == 0
    assert scheduler.busy == 0


async def test_partial_snapshot_is_taken_when_a_worker_picks_it_up() -> None:
    engine = FakeDecoder()
    engine.gate.clear()
    buffer = [_audio(1, 160)]
    snapshots: list[int] = []

    def snapshot() -> Samples:
        snapshots.append(len(buffer))
        return buffer[-1]

    async with running(engine) as scheduler:
        blocker = asyncio.create_task(scheduler.final(_audio(0), OPTIONS))
        await engine.wait_started(0)
        partial = asyncio.create_task(scheduler.partial(snapshot, OPTIONS))
        await asyncio.sleep(0.02)
        assert snapshots == []  # not read while waiting
        buffer.append(_audio(2, 480))  # newer audio arrives while the partial waits
        engine.gate.set()
        result = await asyncio.wait_for(partial, HARD_LIMIT_S)
        await blocker
    assert snapshots == [2]
    assert result is not None and result.text == "decoded 2"
    assert (engine.calls[-1].label, engine.calls[-1].size) == (2, 480)


@pytest.mark.parametrize("empty", [None, np.empty(0, np.float32)], ids=["none", "no-samples"])
async def test_partial_with_nothing_to_decode_is_skipped(empty: Samples | None) -> None:
    engine = FakeDecoder()
    async with running(engine) as scheduler:
        assert await scheduler.partial(lambda: empty, OPTIONS) is None
        result = await scheduler.partial(lambda: _audio(5), OPTIONS)
    assert result is not None and result.text == "decoded 5"
    assert [c.label for c in engine.calls] == [5]


async def test_running_partial_is_aborted_when_a_final_is_queued() -> None:
    engine = FakeDecoder()
    engine.gate.clear()
    async with running(engine) as scheduler:
        partial = asyncio.create_task(scheduler.partial(lambda: _audio(1), OPTIONS))
        await engine.wait_started(1)
        await asyncio.sleep(0.05)
        assert not partial.done()  # polling should_abort returned False so far
        final = asyncio.create_task(scheduler.final(_audio(2), OPTIONS))
        # the partial ends without the gate being opened: it was aborted
        assert await asyncio.wait_for(partial, HARD_LIMIT_S) is None
        assert scheduler.aborted == 1
        await engine.wait_started(2)
        engine.gate.set()
        result = await asyncio.wait_for(final, HARD_LIMIT_S)
    assert result.decoding.text == "decoded 2"
    assert [c.label for c in engine.calls] == [1, 2]


async def test_a_final_is_not_aborted_by_other_finals() -> None:
    engine = FakeDecoder()
    engine.gate.clear()
    async with running(engine) as scheduler:
        first = asyncio.create_task(scheduler.final(_audio(1), OPTIONS))
        await engine.wait_started(1)
        second = asyncio.create_task(scheduler.final(_audio(2), OPTIONS))
        await asyncio.sleep(0.05)
        assert not first.done()
        engine.gate.set()
        results = await asyncio.wait_for(asyncio.gather(first, second), HARD_LIMIT_S)
    assert [r.decoding.text for r in results] == ["decoded 1", "decoded 2"]
    assert scheduler.aborted == 0


async def test_a_final_whose_caller_gives_up_is_skipped_or_aborted() -> None:
    """Speculative finals are cancelled when speech resumes."""
    engine = FakeDecoder()
    engine.gate.clear()
    async with running(engine) as scheduler:
        running_final = asyncio.create_task(scheduler.final(_audio(1), OPTIONS))
        await engine.wait_started(1)
        queued_final = asyncio.create_task(scheduler.final(_audio(2), OPTIONS))
        await asyncio.sleep(0.02)
        queued_final.cancel()
        running_final.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running_final
        await asyncio.sleep(0.05)  # the worker polls should_abort and stops
        engine.gate.set()
        after = await asyncio.wait_for(scheduler.final(_audio(3), OPTIONS), HARD_LIMIT_S)
    assert after.decoding.text == "decoded 3"
    assert [c.label for c in engine.calls] == [1, 3]  # 2 was never decoded
    assert scheduler.aborted == 1


async def test_threads_are_shared_out_between_busy_workers() -> None:
    engines = [FakeDecoder(), FakeDecoder()]
    for engine in engines:
        engine.gate.clear()
    scheduler = InferenceScheduler(list(engines), cores=2)
    serving = asyncio.create_task(scheduler.run())
    try:
        first = asyncio.create_task(scheduler.final(_audio(1), OPTIONS))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(scheduler.final(_audio(2), OPTIONS))
        await asyncio.sleep(0.05)
        for engine in engines:
            engine.gate.set()
        await asyncio.wait_for(asyncio.gather(first, second), HARD_LIMIT_S)
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    calls = sorted((c for e in engines for c in e.calls), key=lambda c: c.label)
    assert [(c.label, c.threads) for c in calls] == [(1, 2), (2, 1)]


async def test_partial_is_not_aborted_without_a_final() -> None:
    engine = FakeDecoder(seconds=0.05)
    async with running(engine) as scheduler:
        result = await scheduler.partial(lambda: _audio(1), OPTIONS)
    assert result is not None and not result.aborted
    assert scheduler.aborted == 0


async def test_each_engine_is_only_called_from_its_own_thread() -> None:
    engines = [FakeDecoder(seconds=0.005), FakeDecoder(seconds=0.005)]
    async with running(*engines) as scheduler:
        jobs: list[Awaitable[object]] = []
        for i in range(20):
            jobs.append(scheduler.final(_audio(i), OPTIONS))
            jobs.append(scheduler.partial(_snapshot(100 + i), OPTIONS))
        results = await asyncio.wait_for(asyncio.gather(*jobs), 20)
    assert all(r is not None for r in results)
    loop_thread = threading.get_ident()
    threads = []
    for engine in engines:
        assert engine.calls, "every worker serves jobs"
        assert len({c.thread for c in engine.calls}) == 1
        assert all(c.thread_name.startswith("whisper-") for c in engine.calls)
        assert engine.max_active == 1
        threads.append(engine.calls[0].thread)
    assert threads[0] != threads[1]
    assert loop_thread not in threads
    labels = sorted(c.label for e in engines for c in e.calls)
    assert labels == sorted([*range(20), *range(100, 120)])


async def test_decode_exception_fails_that_job_only() -> None:
    engine = FakeDecoder(fail_on=frozenset({1, 3}))
    async with running(engine) as scheduler:
        with pytest.raises(RuntimeError, match="decode of 1 failed"):
            await scheduler.final(_audio(1), OPTIONS)
        good = await scheduler.final(_audio(2), OPTIONS)
        with pytest.raises(RuntimeError, match="decode of 3 failed"):
            await scheduler.partial(lambda: _audio(3), OPTIONS)
        partial = await scheduler.partial(lambda: _audio(4), OPTIONS)
        assert scheduler.busy == 0
    assert good.decoding.text == "decoded 2"
    assert partial is not None and partial.text == "decoded 4"
    assert [c.label for c in engine.calls] == [1, 2, 3, 4]


async def test_queue_ms_is_the_wait_for_a_worker() -> None:
    engine = FakeDecoder()
    engine.gate.clear()
    async with running(engine) as scheduler:
        blocker = asyncio.create_task(scheduler.final(_audio(0), OPTIONS))
        await engine.wait_started(0)
        waiting = asyncio.create_task(scheduler.final(_audio(1), OPTIONS))
        await asyncio.sleep(0.25)
        engine.gate.set()
        first, second = await asyncio.wait_for(asyncio.gather(blocker, waiting), HARD_LIMIT_S)
    assert first.queue_ms < 100
    assert 200 <= second.queue_ms < 3000


async def test_cancelled_caller_does_not_stop_the_worker() -> None:
    engine = FakeDecoder()
    engine.gate.clear()
    async with running(engine) as scheduler:
        blocker = asyncio.create_task(scheduler.final(_audio(0), OPTIONS))
        await engine.wait_started(0)
        gone = asyncio.create_task(scheduler.final(_audio(1), OPTIONS))
        await asyncio.sleep(0)
        gone.cancel()
        blocker.cancel()  # its caller leaves while the decode runs
        engine.gate.set()
        result = await asyncio.wait_for(scheduler.final(_audio(2), OPTIONS), HARD_LIMIT_S)
    assert result.decoding.text == "decoded 2"
    assert [c.label for c in engine.calls] == [0, 2]


async def test_stopping_the_scheduler_leaves_no_caller_waiting() -> None:
    engine = FakeDecoder(seconds=0.2)
    scheduler = InferenceScheduler([engine])
    task = asyncio.create_task(scheduler.run())
    running_final = asyncio.create_task(scheduler.final(_audio(0), OPTIONS))
    await engine.wait_started(0)
    queued_final = asyncio.create_task(scheduler.final(_audio(1), OPTIONS))
    await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    done, pending = await asyncio.wait({running_final, queued_final}, timeout=2)
    for leftover in pending:
        leftover.cancel()
    assert queued_final in done
    assert running_final in done, "the caller of the final being decoded was never told"
