"""The node's Wyoming STT server, driven the way Home Assistant drives it.

Home Assistant's STT entity opens a connection per utterance and sends
``transcribe`` (language), ``audio-start``, ``audio-chunk``s (16 kHz, 16-bit,
mono, 1024 samples each), ``audio-stop``, then reads until a ``transcript``.
Everything here runs against the real node process, the real model and the
real Mosquitto; the client is the ``wyoming`` library's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import pytest
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event, Eventable
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong
from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

from orac_node.audio import Samples, float_to_s16
from orac_node.homeassistant.advertise import SERVICE_TYPE
from orac_node.ops.localbroker import LocalBroker, free_port
from orac_node.wire import SAMPLE_RATE, Final
from tests.conftest import AUDIO
from tests.integration.accuracy import normalize, word_error_rate
from tests.integration.conftest import load, load_refs
from tests.integration.harness import RunningNode, harness
from tests.integration.scrape import scrape

PORT = free_port()
METRICS_PORT = free_port()
SERVICE_NAME = f"orac-node-test-{uuid.uuid4().hex[:8]}"
NODE_CONFIG = {
    "wyoming": {"uri": f"tcp://127.0.0.1:{PORT}", "zeroconf_name": SERVICE_NAME},
    # a shorter longest utterance, so that the long stream crosses it several times
    "endpoint": {"max_duration_s": 20},
    # the ten-minute stream is sent as fast as the socket takes it: ~100x real time, where
    # a device's default limit (3x, docs/HOME_ASSISTANT.md) would refuse its next session
    "ingest": {"device_audio_s_per_s": 0},
    "metrics": {"enabled": True, "port": METRICS_PORT},
}
CHUNK_SAMPLES = 1024  # what Home Assistant's Wyoming STT sends
HA_START = AudioStart(rate=SAMPLE_RATE, width=2, channels=1)


@dataclass
class Heard:
    """Every event a client read, with when it arrived."""

    events: list[tuple[float, Event]] = field(default_factory=list)
    audio_stopped: float = 0.0

    def of(self, kind: type[Eventable]) -> list[Event]:
        return [e for _, e in self.events if kind.is_type(e.type)]

    @property
    def text(self) -> str:
        (transcript,) = self.of(Transcript)
        return str(Transcript.from_event(transcript).text)

    @property
    def types(self) -> list[str]:
        return [e.type for _, e in self.events]


@contextlib.asynccontextmanager
async def client() -> AsyncIterator[AsyncTcpClient]:
    async with AsyncTcpClient("127.0.0.1", PORT) as connection:
        yield connection


async def utterance(
    connection: AsyncTcpClient,
    samples: Samples,
    *,
    language: str | None = "en",
    name: str | None = None,
    realtime: bool = False,
    stop: bool = True,
    names: list[str] | None = None,
    terms: list[str] | None = None,
) -> Heard:
    """Home Assistant's sequence for one utterance; events read as they come."""
    heard = Heard()
    done = asyncio.Event()

    async def read() -> None:
        while True:
            event = await connection.read_event()
            if event is None:
                done.set()
                return
            heard.events.append((time.monotonic(), event))
            if TranscriptStop.is_type(event.type) or Error.is_type(event.type):
                done.set()

    reader = asyncio.create_task(read())
    try:
        transcribe = Transcribe(
            name=name, language=language, transcript_names=names, transcript_terms=terms
        )
        await connection.write_event(transcribe.event())
        await connection.write_event(HA_START.event())
        pcm = float_to_s16(samples)
        started = time.monotonic()
        for i, offset in enumerate(range(0, len(pcm), CHUNK_SAMPLES * 2)):
            chunk = AudioChunk(
                rate=SAMPLE_RATE,
                width=2,
                channels=1,
                audio=pcm[offset : offset + CHUNK_SAMPLES * 2],
            )
            await connection.write_event(chunk.event())
            if realtime:
                ahead = started + (i + 1) * CHUNK_SAMPLES / SAMPLE_RATE - time.monotonic()
                await asyncio.sleep(max(0.0, ahead))
        if not stop:
            return heard
        await connection.write_event(AudioStop().event())
        heard.audio_stopped = time.monotonic()
        async with asyncio.timeout(60):
            await done.wait()
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return heard


def test_describe_lists_the_model_and_streaming(node: RunningNode) -> None:
    async def run() -> Info:
        async with client() as connection:
            await connection.write_event(Describe().event())
            event = await asyncio.wait_for(connection.read_event(), 10)
            assert event is not None and Info.is_type(event.type)
            await connection.write_event(Ping(text="hi").event())
            pong = await asyncio.wait_for(connection.read_event(), 10)
            assert pong is not None and Pong.from_event(pong).text == "hi"
            return Info.from_event(event)

    info = asyncio.run(run())
    (program,) = info.asr
    assert program.name == "orac-node" and program.installed
    assert program.supports_transcript_streaming is True
    (model,) = program.models
    assert model.name == "tiny.en" and model.languages == ["en"] and model.installed


def test_home_assistants_sequence_gets_partials_then_the_transcript(node: RunningNode) -> None:
    """jfk.wav streamed in real time: transcript-chunks while it plays, then the final."""
    samples = load(AUDIO / "speech/jfk.wav")

    async def run() -> tuple[Heard, list[Final]]:
        async with harness(node.url) as h, client() as connection:
            heard = await utterance(connection, samples, realtime=True)
            # the same session also went out on MQTT, as any satellite's does
            finals = [r.final for r in h.results.values() if r.final is not None]
            deadline = time.monotonic() + 10
            while not finals and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                finals = [r.final for r in h.results.values() if r.final is not None]
            return heard, finals

    heard, finals = asyncio.run(run())
    types = heard.types
    assert types[0] == "transcript-start"
    assert types[-2:] == ["transcript", "transcript-stop"]
    chunks = [TranscriptChunk.from_event(e).text for e in heard.of(TranscriptChunk)]
    assert len(chunks) >= 3, types
    chunk_times = [t for t, e in heard.events if TranscriptChunk.is_type(e.type)]
    assert chunk_times[0] < heard.audio_stopped - 3  # partials came while the user spoke
    text = normalize(heard.text)
    assert "ask not what your country can do for you" in text
    streamed = normalize("".join(chunks)).split()
    assert len(set(streamed) - set(text.split())) <= 2  # the stable words are the final's words
    (final,) = finals
    assert final.device == "wyoming-127.0.0.1" and final.session.startswith("wy-")
    assert normalize(final.text) == text


def test_many_connections_at_once_each_get_their_own_transcript(node: RunningNode) -> None:
    clips = load_refs("commands")[:6]

    async def one(samples: Samples, n: int) -> str:
        async with client() as connection:
            heard = await utterance(connection, samples, name=f"kitchen-{n}")
            return heard.text

    async def run() -> list[str]:
        return await asyncio.gather(*(one(load(path), n) for n, (path, _) in enumerate(clips)))

    texts = asyncio.run(run())
    assert word_error_rate([ref for _, ref in clips], texts) < 0.35


def test_a_client_that_vanishes_mid_utterance_leaves_the_others_alone(node: RunningNode) -> None:
    (path, _), (other, other_ref) = load_refs("commands")[1:3]

    async def run() -> tuple[str, Final | None]:
        async with harness(node.url) as h:
            device = f"gone-{uuid.uuid4().hex[:6]}"
            async with client() as connection:
                half = load(path)[: SAMPLE_RATE * 2]
                await utterance(connection, half, name=device, stop=False)
            # the next client is served as usual
            async with client() as connection:
                text = (await utterance(connection, load(other))).text
            deadline = time.monotonic() + 15
            gone = None
            while gone is None and time.monotonic() < deadline:
                finals = [r.final for r in h.results.values() if r.final is not None]
                gone = next((f for f in finals if f.device == device), None)
                await asyncio.sleep(0.1)
            return text, gone

    text, gone = asyncio.run(run())
    assert word_error_rate([other_ref], [text]) < 0.35
    assert gone is not None, "the vanished client's session got no final"
    assert gone.incomplete is True


def test_bad_events_get_error_events_and_the_connection_goes_on(node: RunningNode) -> None:
    path, ref = load_refs("commands")[0]

    async def expect_error(connection: AsyncTcpClient, event: Event) -> Error:
        await connection.write_event(event)
        reply = await asyncio.wait_for(connection.read_event(), 10)
        assert reply is not None and Error.is_type(reply.type), reply
        return Error.from_event(reply)

    async def run() -> tuple[list[Error], str, str]:
        async with client() as connection:
            errors = [
                await expect_error(connection, Event("audio-chunk", {"width": 2}, b"\x00" * 64)),
                await expect_error(connection, AudioStop().event()),
                await expect_error(connection, AudioStart(rate=16000, width=4, channels=1).event()),
            ]
            # chunks of a refused audio-start are dropped quietly, its audio-stop too
            await connection.write_event(AudioChunk(16000, 4, 1, b"\x00" * 4096).event())
            await connection.write_event(AudioStop().event())
            errors.append(await _language_refused(connection))
            text = (await utterance(connection, load(path))).text
        # a line that is not JSON: that connection is closed, the next one is served
        reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
        writer.write(b"\xff\xfe not json at all\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        async with client() as connection:
            again = (await utterance(connection, load(path))).text
        return errors, text, again

    errors, text, again = asyncio.run(run())
    assert [e.code for e in errors] == [
        "bad_event",
        "bad_event",
        "unsupported_format",
        "unsupported_language",
    ]
    assert "English-only" in errors[3].text or "en" in errors[3].text
    assert word_error_rate([ref, ref], [text, again]) < 0.35


async def _language_refused(connection: AsyncTcpClient) -> Error:
    """German to an English-only model: an error, and nothing else for this utterance."""
    heard = await utterance(connection, load(AUDIO / "commands/utt000.wav"), language="de")
    (error,) = heard.of(Error)
    assert not heard.of(Transcript)
    return Error.from_event(error)


def test_a_ten_minute_stream_is_transcribed_whole(node: RunningNode) -> None:
    """Ten minutes in one utterance: cut into sessions at max_duration_s, finals joined."""
    first, last = load(AUDIO / "commands/utt000.wav"), load(AUDIO / "commands/utt002.wav")
    silence = np.zeros(SAMPLE_RATE * 600 - first.size - last.size, dtype=np.float32)
    rng = np.random.default_rng(7)
    silence += rng.normal(0, 0.002, silence.size).astype(np.float32)  # a quiet room
    stream = np.concatenate([first, silence, last])

    async def run() -> Heard:
        async with client() as connection:
            return await utterance(connection, stream)

    heard = asyncio.run(run())
    text = normalize(heard.text)
    assert text.startswith("turn on the kitchen light"), text
    assert text.endswith("timer for 10 minutes"), text


def test_the_server_is_advertised_for_home_assistant_to_find(node: RunningNode) -> None:
    async def run() -> tuple[int, list[str]]:
        found = asyncio.Event()

        def seen(
            zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
        ) -> None:
            if name.startswith(SERVICE_NAME) and state_change is ServiceStateChange.Added:
                found.set()

        zc = AsyncZeroconf(ip_version=IPVersion.V4Only)
        browser = AsyncServiceBrowser(zc.zeroconf, SERVICE_TYPE, handlers=[seen])
        try:
            await asyncio.wait_for(found.wait(), 15)
            info = await zc.async_get_service_info(SERVICE_TYPE, f"{SERVICE_NAME}.{SERVICE_TYPE}")
            assert info is not None
            return int(info.port or 0), info.parsed_addresses()
        finally:
            await browser.async_cancel()
            await zc.async_close()

    port, addresses = asyncio.run(run())
    assert port == PORT and addresses == ["127.0.0.1"]


@pytest.fixture(scope="module", autouse=True)
def _broker_is_shared(broker: LocalBroker) -> None:
    """The module's node runs on the session's broker (conftest), like every other."""


def test_metrics_count_the_answers_to_wyoming_clients(node: RunningNode) -> None:
    """One transcript and one error event more on the page; no connection left open."""

    def replies() -> dict[str, float]:
        return {
            dict(labels)["kind"]: value
            for (name, labels), value in scrape(METRICS_PORT).items()
            if name == "orac_node_wyoming_replies_total"
        }

    async def run() -> None:
        async with client() as connection:
            await utterance(connection, load(AUDIO / "commands/utt004.wav"))
            await connection.write_event(AudioStop().event())  # nothing started: bad_event
            assert await asyncio.wait_for(connection.read_event(), 10) is not None

    before = replies()
    asyncio.run(run())
    after = replies()
    for kind in ("transcript", "bad_event"):
        assert after[kind] - before.get(kind, 0) == 1, (kind, before, after)
    page: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the server notices the close a moment later
        page = scrape(METRICS_PORT)
        if page[("orac_node_wyoming_connections", ())] == 0:
            break
        time.sleep(0.05)
    assert page[("orac_node_wyoming_connections", ())] == 0


async def test_transcript_names_and_terms_are_the_finals_vocabulary(node: RunningNode) -> None:
    # tiny.en hears "Play the baby in the bedroom." in this recording of "play the radio
    # in the bedroom"; the names Home Assistant sends for its entities and areas fix it.
    radio = load(AUDIO / "commands" / "utt003.wav")
    async with client() as connection:
        plain = await utterance(connection, radio, name="ha-vocabulary")
        assert "radio" not in plain.text.lower(), plain.text
        told = await utterance(
            connection,
            radio,
            name="ha-vocabulary",
            names=["Bedroom", "Kitchen"],
            terms=["radio", "television"],
        )
    assert "radio" in told.text.lower(), told.text
