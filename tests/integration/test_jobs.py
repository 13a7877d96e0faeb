"""Long recordings as jobs: real node processes, a real redis-server, real speech.

A recording of about two minutes is built from the shared clips (many voices,
pauses between them) so it spans several windows; the references tell what it
says and where each clip lies on its timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import srt
import webvtt
import yaml

from orac_node.audio import float_to_s16
from orac_node.client import Client, RequestError, RequestTimeoutError, connect
from orac_node.decode.decoding import DecodeOptions
from orac_node.jobs.formats import vtt_time
from orac_node.jobs.runner import JobRunner
from orac_node.jobs.store import JobError, JobStore
from orac_node.ops.localbroker import LocalBroker, free_port
from orac_node.wire import SAMPLE_RATE, JobEvent, JobInfo, Segment
from tests.conftest import AUDIO, MODEL
from tests.integration.accuracy import normalize, word_error_rate
from tests.integration.conftest import load, load_refs
from tests.integration.harness import RunningNode, start_node
from tests.integration.redisproc import running_redis

THERMOSTAT = AUDIO / "commands" / "utt015.wav"  # "set the thermostat to twenty one degrees"
PAUSE_S = 0.8  # between clips: a pause a window can be cut at
REDIS_PORT = free_port()
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"
JOBS = {"enabled": True, "redis_url": REDIS_URL, "lease_s": 3.0}
NODE_CONFIG = {"jobs": JOBS, "model": {"workers": 1, "threads": 1}}


@pytest.fixture(scope="module", autouse=True)
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_redis(REDIS_PORT, tmp_path_factory.mktemp("redis")):
        yield REDIS_URL


@dataclass(frozen=True)
class Clip:
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class Recording:
    path: Path
    clips: list[Clip]

    @property
    def text(self) -> str:
        return " ".join(c.text for c in self.clips)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """Every shared speech and command clip, one after another: about two minutes."""
    parts: list[np.ndarray] = []
    clips: list[Clip] = []
    at = 0
    pause = np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32)
    for path, text in [*load_refs("speech"), *load_refs("commands")]:
        samples = load(path)
        clips.append(Clip(at / SAMPLE_RATE, (at + samples.size) / SAMPLE_RATE, text))
        parts += [samples, pause]
        at += samples.size + pause.size
    audio = np.concatenate(parts)
    path = tmp_path_factory.mktemp("jobs") / "meeting.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(float_to_s16(audio))
    return Recording(path, clips)


def _config_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cli.yaml"
    path.write_text(yaml.safe_dump({"jobs": JOBS}))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orac_node.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@contextlib.asynccontextmanager
async def _events(url: str) -> AsyncIterator[list[JobEvent]]:
    """Every job event on the broker, as it comes."""
    seen: list[JobEvent] = []
    ready = asyncio.Event()

    async def collect() -> None:
        async with connect(url) as mqtt:
            await mqtt.subscribe("orac/job/+", qos=1)
            ready.set()
            async for message in mqtt.messages:
                assert isinstance(message.payload, bytes)
                seen.append(JobEvent.decode(message.payload))

    task = asyncio.create_task(collect())
    await ready.wait()
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until(predicate: object, timeout: float = 240.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.1)


def _timeline(info: JobInfo) -> str:
    return "\n".join(f"{s.start:7.2f} {s.end:7.2f} {s.text}" for s in info.segments)


def _check_result(info: JobInfo, recording: Recording) -> None:
    """Right words, on the recording's timeline, none twice."""
    wer = word_error_rate([recording.text], [info.text])
    assert wer < 0.25, (wer, info.text)
    starts = [s.start for s in info.segments]
    assert starts == sorted(starts), starts  # stitched in order
    assert info.segments[-1].end <= info.audio_s + 0.5
    for clip in recording.clips:  # each clip's words lie where the clip lies
        heard = " ".join(
            s.text for s in info.segments if s.start < clip.end_s + 0.5 and s.end > clip.start_s
        )
        words = set(normalize(heard).split())
        wanted = normalize(clip.text).split()
        found = sum(word in words for word in wanted) / len(wanted)
        assert len(wanted) < 4 or found >= 0.6, (clip, heard, _timeline(info))


def test_a_submitted_recording_is_transcribed_with_progress_and_subtitles(
    broker: LocalBroker, tmp_path: Path, recording: Recording
) -> None:
    node = start_node(broker.url, tmp_path / "node", MODEL, "jobs-one", NODE_CONFIG)
    config = _config_file(tmp_path)

    async def run() -> tuple[str, list[JobEvent]]:
        async with _events(broker.url) as events:
            submitted = await asyncio.to_thread(
                _cli, "transcribe", "--submit", str(recording.path), "--config", str(config)
            )
            assert submitted.returncode == 0, submitted.stderr
            job = submitted.stdout.strip()
            await _until(lambda: any(e.job == job and e.state == "done" for e in events))
            return job, [e for e in events if e.job == job]

    try:
        job, events = asyncio.run(run())
    finally:
        node.stop(signal.SIGTERM)
    running = [e for e in events if e.state == "running"]
    assert len(running) >= 4, events  # about two minutes: five windows or so
    percents = [e.percent for e in running]
    assert percents == sorted(percents) and 0 < percents[0] < 50, percents
    assert all(e.node == "jobs-one" and e.text for e in running)
    (done,) = [e for e in events if e.state == "done"]
    assert done.percent == 100.0

    shown = _cli("jobs", "result", job, "--format", "json", "--config", str(config))
    assert shown.returncode == 0, shown.stderr
    info = JobInfo.decode(shown.stdout)
    assert info.state == "done" and info.attempts == 1 and info.text == done.text
    assert info.audio_s == pytest.approx(recording.clips[-1].end_s + PAUSE_S, abs=0.1)
    _check_result(info, recording)

    subtitles = _cli("jobs", "result", job, "--format", "srt", "--config", str(config))
    parsed = list(srt.parse(subtitles.stdout))
    assert [p.content for p in parsed] == [s.text for s in info.segments]
    vtt = _cli("jobs", "result", job, "--format", "vtt", "--config", str(config))
    captions = webvtt.from_string(vtt.stdout).captions
    assert [c.text for c in captions] == [s.text for s in info.segments]
    assert captions[-1].end == vtt_time(info.segments[-1].end)
    listed = _cli("jobs", "list", "--config", str(config))
    assert job in listed.stdout and "done" in listed.stdout


def test_a_node_killed_mid_job_hands_it_over_and_it_completes_once(
    tmp_path: Path, recording: Recording
) -> None:
    """SIGKILL after the first window: the other node resumes from that checkpoint."""
    # a broker of its own: the killed node's persistent session would keep its share of
    # "any" requests on the shared one, and other tests' requests would wait for it
    broker = LocalBroker(tmp_path / "broker").start()
    first = start_node(broker.url, tmp_path / "a", MODEL, "jobs-a", NODE_CONFIG)
    second: RunningNode | None = None

    async def run() -> tuple[str, list[JobEvent]]:
        nonlocal second
        store = JobStore(REDIS_URL, keep_s=600)
        try:
            async with _events(broker.url) as events:
                job = await store.submit(
                    _pieces(recording.path), name="meeting.wav", max_audio_s=3600
                )
                await _until(lambda: any(e.job == job and e.state == "running" for e in events))
                first.process.kill()  # mid-job: its lease stops being renewed
                second = await asyncio.to_thread(
                    start_node, broker.url, tmp_path / "b", MODEL, "jobs-b", NODE_CONFIG
                )
                await _until(lambda: any(e.job == job and e.state == "done" for e in events))
                await asyncio.sleep(2.0)  # a second completion would show up now
                return job, [e for e in events if e.job == job]
        finally:
            await store.close()

    try:
        job, events = asyncio.run(run())
    finally:
        first.stop(signal.SIGKILL)
        if second is not None:
            second.stop(signal.SIGTERM)
        broker.stop()
    killed_at = max(e.percent for e in events if e.node == "jobs-a")
    resumed = [e for e in events if e.node == "jobs-b" and e.state == "running"]
    assert resumed and resumed[0].percent > killed_at > 0, events  # not from the start
    assert [e.node for e in events if e.state == "done"] == ["jobs-b"]  # once

    async def result() -> JobInfo:
        store = JobStore(REDIS_URL, keep_s=600)
        try:
            return await store.get(job, segments=True)
        finally:
            await store.close()

    info = asyncio.run(result())
    assert (info.state, info.node, info.attempts) == ("done", "jobs-b", 2)
    _check_result(info, recording)


async def _collect(client: Client, job: str) -> list[JobEvent]:
    return [e async for e in client.job_events(job)]


async def _pieces(path: Path) -> AsyncIterator[np.ndarray]:
    yield load(path)


def test_jobs_cancel_retry_and_the_sdk(
    broker: LocalBroker, tmp_path: Path, recording: Recording
) -> None:
    config = _config_file(tmp_path)

    async def queued() -> str:  # no node takes jobs yet: it waits in the queue
        async with Client(broker.url) as client:
            # no job node: unanswered, or refused by a node without jobs (another module's)
            with pytest.raises((RequestTimeoutError, RequestError), match=r"no answer|no_jobs"):
                await client.submit_job(recording.path, timeout=3)
        store = JobStore(REDIS_URL, keep_s=600)
        try:
            return await store.submit(_pieces(THERMOSTAT), name="x.wav", max_audio_s=3600)
        finally:
            await store.close()

    job = asyncio.run(queued())
    cancelled = _cli("jobs", "cancel", job, "--config", str(config))
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout, cancelled
    again = _cli("jobs", "cancel", job, "--config", str(config))
    assert again.returncode == 1 and "only a queued or running job" in again.stderr
    node = start_node(broker.url, tmp_path / "node", MODEL, "jobs-sdk", NODE_CONFIG)

    async def run() -> list[JobEvent]:
        await asyncio.sleep(3.0)  # the node sees the cancelled entry and leaves it
        store = JobStore(REDIS_URL, keep_s=600)
        try:
            assert (await store.get(job)).state == "cancelled"
        finally:
            await store.close()
        async with Client(broker.url) as client:
            follow = asyncio.create_task(_collect(client, job))
            await asyncio.sleep(0.5)  # subscribed
            retried = await asyncio.to_thread(_cli, "jobs", "retry", job, "--config", str(config))
            assert retried.returncode == 0, retried
            assert " queued " in retried.stdout or " running " in retried.stdout  # taken at once
            # the SDK's submit: a file in one request, queued behind the retried job
            jfk = await client.submit_job(
                load_refs("speech")[0][0], name="jfk.wav", node="jobs-sdk"
            )
            short = [e async for e in client.job_events(jfk)]
            assert short[-1].state == "done", short
            assert "ask not what your country" in short[-1].text.lower(), short
            return await follow

    try:
        events = asyncio.run(run())
    finally:
        node.stop(signal.SIGTERM)
    assert events[-1].state == "done" and "thermostat" in events[-1].text.lower(), events
    missing = _cli("jobs", "show", "nope", "--config", str(config))
    assert missing.returncode == 1 and "no job nope" in missing.stderr


async def _tone(seconds: float) -> AsyncIterator[np.ndarray]:
    yield np.full(int(seconds * SAMPLE_RATE), 0.1, np.float32)


async def test_the_queue_fences_every_run_by_its_token() -> None:
    """A run that lost its job (taken over, cancelled) can neither write nor end it."""
    store = JobStore(REDIS_URL, keep_s=600, prefix="fence:")
    try:
        job = await store.submit(_tone(70.0), name="tone", max_audio_s=3600)
        assert (await store.get(job)).audio_s == 70.0
        first = await store.take("node-x", lease_s=60, block_s=0.1)
        assert first is not None and (first.job.job, first.token) == (job, 1)
        assert await store.piece(job, 2) is not None and await store.piece(job, 3) is None
        assert await store.checkpoint(first, 28 * SAMPLE_RATE, [Segment(0.0, 1.0, "one")])
        await asyncio.sleep(0.3)
        # node-x went quiet past a short lease: node-y takes over and resumes at 28 s
        second = await store.take("node-y", lease_s=0.2, block_s=0.1)
        assert second is not None and (second.token, second.next_sample) == (2, 28 * SAMPLE_RATE)
        assert not await store.checkpoint(first, 56 * SAMPLE_RATE, [Segment(28.0, 29.0, "x")])
        assert not await store.finish(first, "done")  # the stale run cannot end it
        assert await store.take("node-z", lease_s=60, block_s=0.1) is None  # still node-y's
        assert await store.checkpoint(second, 70 * SAMPLE_RATE, [Segment(30.0, 31.0, "two")])
        assert await store.finish(second, "done", language="en")
        done = await store.get(job, segments=True)
        assert (done.state, done.text, done.attempts, done.node) == ("done", "one two", 2, "node-y")
        assert await store.piece(job, 0) is None  # a finished job's audio is gone
        with pytest.raises(JobError, match="only a failed or cancelled"):
            await store.retry(job)

        running = await store.submit(_tone(5.0), name="tone", max_audio_s=3600)
        taken = await store.take("node-x", lease_s=60, block_s=0.1)
        assert taken is not None and taken.job.job == running
        await store.cancel(running)
        assert not await store.checkpoint(taken, 5 * SAMPLE_RATE, [])  # cancelled: it stops
        again = await store.retry(running)
        assert (again.state, again.done_s) == ("queued", 0.0)
        # a stopping node hands its job back: the next node takes it at once, not after
        # the (long) lease
        stopping = await store.take("node-x", lease_s=60, block_s=0.1)
        assert stopping is not None and stopping.job.job == running
        assert await store.take("node-y", lease_s=60, block_s=0.1) is None
        await store.release(stopping, "node-x", lease_s=60)
        resumed = await store.take("node-y", lease_s=60, block_s=0.1)
        assert resumed is not None and (resumed.job.job, resumed.token) == (running, 3)
        with pytest.raises(JobError, match="longer than"):
            await store.submit(_tone(10.0), name="long", max_audio_s=5)
    finally:
        await store.close()


class _StuckScheduler:
    """A decoder that never finishes: the node is mid-window when it stops."""

    async def final(self, *args: object, **kwargs: object) -> None:
        await asyncio.Event().wait()


async def test_a_stopping_node_hands_its_job_back_at_once() -> None:
    store = JobStore(REDIS_URL, keep_s=600, prefix="release:")
    try:
        job = await store.submit(_tone(5.0), name="tone", max_audio_s=3600)
        runner = JobRunner(
            store,
            _StuckScheduler(),  # type: ignore[arg-type]
            node_id="node-x",
            lease_s=60,
            options=lambda language, prompt: DecodeOptions(),
            speech=lambda samples: np.zeros(len(samples) // 512, np.float32),
            publish=lambda event: None,
        )
        running = asyncio.create_task(runner.run())
        async with asyncio.timeout(10):
            while (await store.get(job)).state != "running":
                await asyncio.sleep(0.05)
        running.cancel()  # the node stops (systemctl stop)
        with contextlib.suppress(asyncio.CancelledError):
            await running
        taken = await store.take("node-y", lease_s=60, block_s=0.1)  # not after 60 s: now
        assert taken is not None and (taken.job.job, taken.token) == (job, 2)
    finally:
        await store.close()
