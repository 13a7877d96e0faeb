"""The Wyoming peer client against a real Wyoming server built from ``wyoming``'s own classes.

The server is ``wyoming.server.AsyncTcpServer`` on a free loopback port with a
recording handler; no speech model or faster-whisper is involved.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import pytest
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import AsrModel, AsrProgram, Attribution, Describe, Info
from wyoming.server import AsyncEventHandler, AsyncTcpServer

from orac_node.bench.wyoming_peer import PeerError, wyoming_describe, wyoming_transcribe
from orac_node.errors import OracNodeError
from orac_node.ops.localbroker import free_port

REPLY_DELAY_S = 0.05
TEXT = "turn on the kitchen lights"


@dataclass
class Script:
    """What the fake peer answers, and what it saw."""

    text: str = TEXT
    delay_s: float = REPLY_DELAY_S
    reply: str = "transcript"  # "transcript", "error", "silence" (never answers), "hangup"
    events: list[Event] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # ends "silence"


class RecordingHandler(AsyncEventHandler):
    """Records every event; after AudioStop sleeps, then answers as scripted."""

    def __init__(
        self, script: Script, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        super().__init__(reader, writer)
        self.script = script

    async def handle_event(self, event: Event) -> bool:
        self.script.events.append(event)
        if Describe.is_type(event.type):
            await self.write_event(_info().event())
            return True
        if not AudioStop.is_type(event.type):
            return True
        await asyncio.sleep(self.script.delay_s)
        if self.script.reply == "transcript":
            await self.write_event(Transcript(text=self.script.text).event())
        elif self.script.reply == "error":
            await self.write_event(Error(text="model exploded").event())
        elif self.script.reply == "silence":
            await self.script.release.wait()
        return False  # hang up, as wyoming-faster-whisper does after each transcript


def _info() -> Info:
    who = Attribution(name="tests", url="https://example.invalid")
    model = AsrModel(
        name="tiny.en",
        attribution=who,
        installed=True,
        description=None,
        version="1.2.1",
        languages=["en"],
    )
    program = AsrProgram(
        name="fake-whisper",
        attribution=who,
        installed=True,
        description=None,
        version="9.9",
        models=[model],
    )
    return Info(asr=[program])


@dataclass
class Peer:
    uri: str
    script: Script


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    script = Script()
    port = free_port()
    server = AsyncTcpServer("127.0.0.1", port)

    def factory(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> AsyncEventHandler:
        return RecordingHandler(script, reader, writer)

    await server.start(factory)
    try:
        yield Peer(f"tcp://127.0.0.1:{port}", script)
    finally:
        script.release.set()
        await server.stop()
        await asyncio.sleep(0.01)  # let handler tasks see their closed streams and end


def _tone(n: int) -> np.ndarray:
    t = np.arange(n, dtype=np.float32) / 16_000
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


async def test_transcribe_sends_the_protocol_and_times_the_reply(peer: Peer) -> None:
    samples = _tone(8_100)  # 25 full 20 ms chunks and a 100-sample tail
    result = await wyoming_transcribe(peer.uri, samples, chunk_ms=20, language="en")

    assert result.text == TEXT
    assert result.latency_ms >= REPLY_DELAY_S * 1000
    assert result.latency_ms < result.total_ms

    events = peer.script.events
    assert [e.type for e in events[:2]] == ["transcribe", "audio-start"]
    assert events[-1].type == "audio-stop"
    assert Transcribe.from_event(events[0]).language == "en"
    start = AudioStart.from_event(events[1])
    assert (start.rate, start.width, start.channels) == (16_000, 2, 1)

    chunks = [AudioChunk.from_event(e) for e in events[2:-1]]
    assert all(AudioChunk.is_type(e.type) for e in events[2:-1])
    assert len(chunks) == 26
    assert all((c.rate, c.width, c.channels) == (16_000, 2, 1) for c in chunks)
    assert all(c.samples == 320 for c in chunks[:-1])
    assert sum(c.samples for c in chunks) == samples.size
    assert [c.timestamp for c in chunks] == [20 * i for i in range(26)]

    pcm = np.frombuffer(b"".join(c.audio for c in chunks), dtype="<i2")
    np.testing.assert_allclose(pcm / 32767, samples, atol=1 / 32767)


async def test_transcribe_chunk_size_and_no_language(peer: Peer) -> None:
    peer.script.text = "  padded answer  "
    result = await wyoming_transcribe(peer.uri, _tone(16_000), chunk_ms=100, language=None)

    assert result.text == "padded answer"
    chunks = [AudioChunk.from_event(e) for e in peer.script.events if e.type == "audio-chunk"]
    assert [c.samples for c in chunks] == [1_600] * 10
    assert Transcribe.from_event(peer.script.events[0]).language is None


async def test_realtime_pacing_takes_the_clip_duration(peer: Peer) -> None:
    peer.script.delay_s = 0
    result = await wyoming_transcribe(peer.uri, _tone(4_000), realtime=True)  # 250 ms

    assert result.total_ms - result.latency_ms >= 200  # 13 chunks, the last sent at 240 ms


async def test_describe_names_program_and_model(peer: Peer) -> None:
    assert await wyoming_describe(peer.uri) == "fake-whisper 9.9 (model: tiny.en 1.2.1)"


async def test_no_transcript_in_time_raises(peer: Peer) -> None:
    peer.script.reply = "silence"
    with pytest.raises(PeerError, match="no transcript"):
        await wyoming_transcribe(peer.uri, _tone(1_600), timeout_s=0.2)


async def test_error_event_raises(peer: Peer) -> None:
    peer.script.reply = "error"
    with pytest.raises(PeerError, match="model exploded"):
        await wyoming_transcribe(peer.uri, _tone(1_600))


async def test_hangup_without_transcript_raises(peer: Peer) -> None:
    peer.script.reply = "hangup"
    with pytest.raises(PeerError, match="hung up"):
        await wyoming_transcribe(peer.uri, _tone(1_600))


async def test_unreachable_port_raises_quickly() -> None:
    started = time.perf_counter()
    with pytest.raises(OracNodeError, match="cannot connect") as info:
        await wyoming_transcribe(f"tcp://127.0.0.1:{free_port()}", _tone(1_600))
    assert isinstance(info.value, PeerError)
    assert time.perf_counter() - started < 1.0

    with pytest.raises(PeerError, match="cannot connect"):
        await wyoming_describe(f"tcp://127.0.0.1:{free_port()}")


async def test_bad_input_raises() -> None:
    with pytest.raises(PeerError, match="URI"):
        await wyoming_transcribe("http://127.0.0.1:1", _tone(10))
    with pytest.raises(PeerError, match="mono"):
        await wyoming_transcribe("tcp://127.0.0.1:1", np.zeros((2, 10), dtype=np.float32))
    with pytest.raises(PeerError, match="chunk_ms"):
        await wyoming_transcribe("tcp://127.0.0.1:1", _tone(10), chunk_ms=0)
