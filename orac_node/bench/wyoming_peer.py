"""A minimal client for any Wyoming ASR server, to time the peer against the node.

The peer is wyoming-faster-whisper, the speech-to-text server Home Assistant
users run. :func:`wyoming_transcribe` plays one clip to such a server the way
Home Assistant's Wyoming integration does (Transcribe, AudioStart, AudioChunk…,
AudioStop, then wait for Transcript) and reports the peer's "end of speech ->
final" latency: from the moment AudioStop has been written to the moment the
Transcript event is read. :func:`wyoming_describe` names the server's programs
and models for the report.

Built on the official ``wyoming`` package (the ``bench`` extra), so the framing
is exactly what the peer speaks; no model or faster-whisper is needed here.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info

from orac_node.audio import float_to_s16
from orac_node.errors import OracNodeError
from orac_node.wire import SAMPLE_RATE

SAMPLE_WIDTH = 2  # s16le, what every Wyoming ASR server accepts
CHANNELS = 1


class PeerError(OracNodeError):
    """A Wyoming server could not be reached, failed, or did not answer in time."""


@dataclass(frozen=True)
class PeerResult:
    """One clip's transcript from the peer, with its timings."""

    text: str
    latency_ms: float  # AudioStop written -> Transcript read: end of speech -> final
    total_ms: float  # connect -> Transcript read, the whole exchange


def _to_s16le(samples: npt.NDArray[np.float32]) -> bytes:
    """The clip's own 16-bit samples, exactly as a satellite sends them (audio/pcm.py).

    Scaled by 32767, every sample moved by up to a step: enough for the node's
    beam search to pick other words for a command than from the same audio
    over MQTT (WER 13.0 vs 11.1 % on the commands, one run).
    """
    if samples.ndim != 1:
        raise PeerError(f"expected mono samples (1-D array), got shape {samples.shape}")
    return float_to_s16(samples)


async def _connect(uri: str, connect_timeout_s: float) -> AsyncClient:
    try:
        client = AsyncClient.from_uri(uri, connect_timeout=connect_timeout_s)
    except ValueError as exc:
        raise PeerError(f"bad Wyoming URI {uri!r}: {exc}") from exc
    try:
        await client.connect()
    except (OSError, TimeoutError) as exc:
        raise PeerError(f"cannot connect to the Wyoming server at {uri}: {exc!r}") from exc
    return client


async def _disconnect(client: AsyncClient) -> None:
    # The server may already have closed its side (wyoming-faster-whisper hangs up
    # after each Transcript); a reset while closing is no error of ours.
    with contextlib.suppress(OSError):
        await client.disconnect()


async def _read_until(client: AsyncClient, uri: str, wanted: str) -> Event:
    """Next event of type ``wanted``, skipping others; an ``error`` event raises."""
    while True:
        event = await client.read_event()
        if event is None:
            raise PeerError(f"the Wyoming server at {uri} hung up before sending {wanted!r}")
        if event.type == wanted:
            return event
        if Error.is_type(event.type):
            error = Error.from_event(event)
            raise PeerError(f"the Wyoming server at {uri} answered an error: {error.text}")


async def wyoming_transcribe(
    uri: str,
    samples: npt.NDArray[np.float32],
    *,
    chunk_ms: int = 20,
    language: str | None = "en",
    realtime: bool = False,
    timeout_s: float = 60.0,
    connect_timeout_s: float = 5.0,
) -> PeerResult:
    """Transcribe one float32 mono 16 kHz clip on the Wyoming server at ``uri``.

    Audio goes out as s16le chunks of ``chunk_ms``, as fast as the socket takes
    them, or paced at real time with ``realtime`` (as a microphone would, so the
    server has read everything by the time AudioStop is sent). ``language=None``
    leaves the choice to the server. Raises :class:`PeerError` if the server
    cannot be reached, reports an error, hangs up, or sends no Transcript within
    ``timeout_s`` of AudioStop.
    """
    if chunk_ms <= 0:
        raise PeerError(f"chunk_ms must be positive, got {chunk_ms}")
    pcm = _to_s16le(samples)
    chunk_bytes = SAMPLE_RATE * chunk_ms // 1000 * SAMPLE_WIDTH * CHANNELS

    started = time.perf_counter()
    client = await _connect(uri, connect_timeout_s)
    try:
        try:
            await client.write_event(Transcribe(language=language).event())
            await client.write_event(
                AudioStart(rate=SAMPLE_RATE, width=SAMPLE_WIDTH, channels=CHANNELS).event()
            )
            sent_ms = 0
            audio_started = time.perf_counter()
            for offset in range(0, len(pcm), chunk_bytes):
                if realtime:
                    ahead_s = sent_ms / 1000 - (time.perf_counter() - audio_started)
                    if ahead_s > 0:
                        await asyncio.sleep(ahead_s)
                chunk = AudioChunk(
                    rate=SAMPLE_RATE,
                    width=SAMPLE_WIDTH,
                    channels=CHANNELS,
                    audio=pcm[offset : offset + chunk_bytes],
                    timestamp=sent_ms,
                )
                await client.write_event(chunk.event())
                sent_ms += chunk_ms
            await client.write_event(AudioStop(timestamp=sent_ms).event())
        except OSError as exc:
            raise PeerError(f"the Wyoming server at {uri} dropped the audio: {exc!r}") from exc
        stopped = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                event = await _read_until(client, uri, "transcript")
        except TimeoutError as exc:
            raise PeerError(
                f"no transcript from the Wyoming server at {uri} within {timeout_s} s"
            ) from exc
        except OSError as exc:
            raise PeerError(f"lost the Wyoming server at {uri}: {exc!r}") from exc
        done = time.perf_counter()
    finally:
        await _disconnect(client)

    return PeerResult(
        text=Transcript.from_event(event).text.strip(),
        latency_ms=(done - stopped) * 1000,
        total_ms=(done - started) * 1000,
    )


async def wyoming_describe(
    uri: str, *, timeout_s: float = 10.0, connect_timeout_s: float = 5.0
) -> str:
    """The server's ASR programs and their models, e.g. ``faster-whisper 3.8.1 (model: x)``.

    Sends Describe and reads Info; raises :class:`PeerError` like
    :func:`wyoming_transcribe`, and also when the server offers no ASR program.
    """
    client = await _connect(uri, connect_timeout_s)
    try:
        try:
            await client.write_event(Describe().event())
            async with asyncio.timeout(timeout_s):
                event = await _read_until(client, uri, "info")
        except TimeoutError as exc:
            raise PeerError(
                f"no info from the Wyoming server at {uri} within {timeout_s} s"
            ) from exc
        except OSError as exc:
            raise PeerError(f"lost the Wyoming server at {uri}: {exc!r}") from exc
    finally:
        await _disconnect(client)

    info = Info.from_event(event)
    if not info.asr:
        raise PeerError(f"the Wyoming server at {uri} offers no ASR program")
    programs: list[str] = []
    for program in info.asr:
        name = f"{program.name} {program.version}" if program.version else program.name
        models = ", ".join(
            f"{model.name} {model.version}" if model.version else model.name
            for model in program.models
        )
        programs.append(f"{name} (model: {models or 'none listed'})")
    return "; ".join(programs)


def display_name(server: str | None) -> str:
    """The peer as a reader knows it: ``faster-whisper 3.8.1``, without the model path.

    :func:`wyoming_describe` says ``faster-whisper 3.8.1 (model: /a/local/path)``;
    the path says nothing to someone reading the results. Empty when unknown.
    """
    return re.sub(r" \(model: .*\)$", "", server or "")
