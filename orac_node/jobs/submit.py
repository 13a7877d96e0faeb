"""Submitting a recording as a job: from a file on disk (the CLI) or bytes (a request)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from orac_node.audio import Samples
from orac_node.audio.files import decode_file_bytes_async, stream_audio_file
from orac_node.jobs.store import JobStore
from orac_node.wire import JobRequest


async def submit_file(
    store: JobStore,
    path: Path,
    *,
    max_audio_s: float,
    language: str | None = None,
    prompt: str | None = None,
) -> str:
    """Queue a file of any length: decoded and stored a block at a time."""
    return await store.submit(
        stream_audio_file(path),
        name=path.name,
        language=language,
        prompt=prompt,
        max_audio_s=max_audio_s,
    )


async def submit_request(store: JobStore, request: JobRequest, *, max_audio_s: float) -> str:
    """Queue the file a ``submit_job`` request carried (it fits one MQTT message)."""
    samples = await decode_file_bytes_async(request.audio, max_s=max_audio_s + 1)

    async def whole() -> AsyncIterator[Samples]:
        yield samples

    return await store.submit(
        whole(),
        name=request.name,
        language=request.language,
        prompt=request.prompt,
        max_audio_s=max_audio_s,
    )
