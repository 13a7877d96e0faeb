"""The ``jobs`` scenario: a long recording queued as a job, against the same audio decoded whole.

The recording is the corpus's referenced clips, one after another with a pause
between them and the list repeated, up to :data:`JOB_MINUTES` (a meeting's
length; the smoke run takes two minutes). It goes in through the real path
(``transcribe --submit``'s: ffmpeg streaming the file into Redis) and the
bench's node, configured with ``jobs.enabled`` on a private redis-server,
decodes it window by window. The baseline is each distinct clip sent to the
same node whole, as one ``transcribe`` request: the words whisper gives when
it hears every utterance entire, which windowing may only match.

Figures: the job's WER against the references and the baseline's, the job's
wall time per hour of audio (and the baseline's, summed request time), the
windows, and the node's peak memory while the job ran (the scenario's
process stats), to show a long file is not held whole.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np

from orac_node.audio import float_to_s16
from orac_node.bench.corpus import Clip
from orac_node.bench.scoring import wer
from orac_node.client import Client, connect
from orac_node.jobs.store import JobStore
from orac_node.jobs.submit import submit_file
from orac_node.wire import FINISHED, JOB_FILTER, SAMPLE_RATE, JobEvent, job_topic

log = logging.getLogger(__name__)

JOB_MINUTES = 30.0
"""A meeting's length: the issue's figure, and long enough for dozens of windows."""
SMOKE_MINUTES = 2.0
PAUSE_S = 0.8
"""Between clips: the pause between two speakers' turns."""


def build_recording(clips: list[Clip], minutes: float) -> tuple[np.ndarray, list[str]]:
    """The clips with references, in order and repeated, up to ``minutes``; and their texts."""
    usable = [c for c in clips if c.reference]
    if not usable:
        raise ValueError("the jobs scenario needs clips with references")
    pause = np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32)
    parts: list[np.ndarray] = []
    texts: list[str] = []
    total, i = 0, 0
    while total < minutes * 60 * SAMPLE_RATE:
        clip = usable[i % len(usable)]
        parts += [clip.samples, pause]
        texts.append(clip.reference or "")
        total += clip.samples.size + pause.size
        i += 1
    return np.concatenate(parts), texts


def _write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(float_to_s16(samples))


async def run_jobs(
    url: str, redis_url: str, clips: list[Clip], *, smoke: bool = False
) -> dict[str, Any]:
    """Submit the recording, wait for its end; then the baseline. The scenario's figures."""
    minutes = SMOKE_MINUTES if smoke else JOB_MINUTES
    samples, texts = await asyncio.to_thread(build_recording, clips, minutes)
    audio_s = samples.size / SAMPLE_RATE
    store = JobStore(redis_url, keep_s=3600)
    try:
        async with connect(url) as mqtt:
            await mqtt.subscribe(JOB_FILTER, qos=1)  # before the job can start
            with tempfile.TemporaryDirectory(prefix="orac-bench-job-") as tmp:
                path = Path(tmp) / "meeting.wav"
                await asyncio.to_thread(_write_wav, path, samples)
                started = time.monotonic()
                job = await submit_file(store, path, max_audio_s=audio_s + 60)
            submitted_s = time.monotonic() - started
            log.info("job %s: %.0f s of audio submitted in %.1f s", job, audio_s, submitted_s)
            await _until_finished(mqtt, job)
        wall_s = time.monotonic() - started
        info = await store.get(job, segments=True)
    finally:
        await store.close()
    if info.state != "done":
        raise RuntimeError(f"the bench's job ended {info.state}: {info.error}")
    whole_wer, whole_s = await _decoded_whole(url, clips)
    return {
        "audio_s": round(audio_s, 1),
        "clips": len(texts),
        "submit_s": round(submitted_s, 2),
        "wall_s": round(wall_s, 1),
        "s_per_audio_hour": round(wall_s / audio_s * 3600, 1),
        "segments": len(info.segments),
        "wer": round(wer([" ".join(texts)], [info.text]), 4),
        "whole_wer": round(whole_wer, 4),
        "whole_s_per_audio_hour": whole_s,
    }


async def _until_finished(mqtt: aiomqtt.Client, job: str) -> None:
    async for message in mqtt.messages:
        if message.topic.value != job_topic(job) or not isinstance(message.payload, bytes):
            continue
        event = JobEvent.decode(message.payload)
        log.info("job %s: %s %.0f %% on %s", job, event.state, event.percent, event.node)
        if event.state in FINISHED:
            return


async def _decoded_whole(url: str, clips: list[Clip]) -> tuple[float, float]:
    """Each distinct clip as one ``transcribe`` request: WER and seconds per audio hour."""
    usable = [c for c in clips if c.reference]
    hyps: list[str] = []
    spent = 0.0
    async with Client(url) as client:
        for clip in usable:
            started = time.monotonic()
            result = await client.transcribe(clip.samples, publish=False, timeout=120)
            spent += time.monotonic() - started
            hyps.append(result.text)
    audio_s = sum(c.samples.size for c in usable) / SAMPLE_RATE
    refs = [c.reference or "" for c in usable]
    return wer([" ".join(refs)], [" ".join(hyps)]), round(spent / audio_s * 3600, 1)


def format_jobs(extra: dict[str, Any]) -> list[str]:
    """The ``jobs`` scenario's lines for the bench's table."""
    return [
        "jobs (a long recording as a job; measurements, no targets):",
        f"  {extra['audio_s'] / 60:.1f} min of audio ({extra['clips']} clips):"
        f" {extra['wall_s']:.0f} s from submit to done, {extra['s_per_audio_hour']:.0f} s"
        f" per audio hour (the clips sent whole: {extra['whole_s_per_audio_hour']:.0f} s)",
        f"  WER {extra['wer']:.1%} as a job, {extra['whole_wer']:.1%} with each clip sent whole;"
        f" {extra['segments']} segments",
    ]
