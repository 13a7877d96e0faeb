"""The low-level pieces: a broker connection, a satellite's audio, transcripts as they come.

The CLI, the demo, the bench and the tests use these directly, and
:class:`~orac_node.client.Client` is built on them: :func:`connect`,
:class:`Satellite`, :func:`stream_raw`, :func:`transcripts`,
:func:`wait_for_state`, :func:`format_transcript`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiomqtt

from orac_node.audio import Samples, float_to_s16
from orac_node.errors import BrokerError, ContractError
from orac_node.mqtt.options import NO_DELAY, BrokerLogin
from orac_node.wire import (
    SAMPLE_RATE,
    AudioChunk,
    AudioFormat,
    AudioKind,
    ErrorReport,
    Final,
    NodeStatus,
    Partial,
    audio_topic,
    decode_transcript,
    status_topic,
)


@asynccontextmanager
async def connect(
    broker: str | BrokerLogin,
    *,
    client_id: str | None = None,
    will: aiomqtt.Will | None = None,
) -> AsyncIterator[aiomqtt.Client]:
    """An MQTT v5 client for a broker URL or a :class:`BrokerLogin` (password, TLS files).

    ``will`` is the Last Will the broker publishes if the connection dies.
    Connect failures become :class:`BrokerError`, whose message shows the URL
    without its password.
    """
    login = BrokerLogin.of(broker)
    try:
        parsed = login.parsed()
    except ValueError as exc:
        raise BrokerError(str(exc)) from None
    client = aiomqtt.Client(
        parsed.host,
        parsed.port,
        identifier=client_id or f"orac-client-{uuid.uuid4().hex[:8]}",
        protocol=aiomqtt.ProtocolVersion.V5,
        username=parsed.username,
        password=login.secret(parsed),
        tls_params=login.tls() if parsed.tls else None,
        socket_options=NO_DELAY,
        will=will,
        logger=logging.getLogger("orac_node.paho"),
    )
    try:
        async with client:
            yield client
    except aiomqtt.MqttError as exc:
        raise BrokerError(f"{parsed.redacted()}: {exc}") from exc


def split_chunks(samples: Samples, chunk_ms: int) -> list[bytes]:
    """Cut float32 16 kHz audio into s16le chunks of ``chunk_ms``."""
    step = SAMPLE_RATE * chunk_ms // 1000
    pcm = float_to_s16(samples)
    return [pcm[i * 2 : (i + step) * 2] for i in range(0, samples.size, step)] or [b""]


class Satellite:
    """Streams audio for one device the way a Raspberry Pi satellite does."""

    def __init__(self, client: aiomqtt.Client, device: str) -> None:
        self._client = client
        self.device = device
        self._sending = asyncio.Lock()  # a resend goes out whole, between two live chunks
        self._kept: dict[str, list[tuple[bytes, bool]]] = {}  # session -> (pcm, end) by seq

    def keep(self, session: str) -> None:
        """Remember every chunk ``session`` sends from now on, for :meth:`resend`."""
        self._kept.setdefault(session, [])

    def forget(self, session: str) -> None:
        """The session's final came: its audio is no longer needed."""
        self._kept.pop(session, None)

    async def resend(
        self, session: str, *, topic: str | None, lang: str | None, qos: int = 1
    ) -> int:
        """Publish every chunk of a kept session again, from seq 0; return how many.

        For when the node decoding it died before its final (docs/FLEET.md): the
        node that takes over gets the whole utterance. Live chunks wait meanwhile,
        so the new node sees the session in order.
        """
        async with self._sending:
            chunks = list(self._kept.get(session, []))
            for seq, (pcm, end) in enumerate(chunks):
                await self._publish(session, seq, pcm, end=end, topic=topic, lang=lang, qos=qos)
        return len(chunks)

    async def _send(
        self,
        session: str,
        seq: int,
        pcm: bytes,
        *,
        end: bool,
        topic: str | None,
        lang: str | None,
        qos: int,
    ) -> None:
        async with self._sending:
            kept = self._kept.get(session)
            if kept is not None:
                kept.append((pcm, end))
            await self._publish(session, seq, pcm, end=end, topic=topic, lang=lang, qos=qos)

    async def _publish(
        self,
        session: str,
        seq: int,
        pcm: bytes,
        *,
        end: bool,
        topic: str | None,
        lang: str | None,
        qos: int,
    ) -> None:
        chunk = AudioChunk(
            session=session,
            seq=seq,
            rate=SAMPLE_RATE,
            channels=1,
            format=AudioFormat.S16LE,
            pcm=pcm,
            end=end,
            topic=topic,
            lang=lang,
            ts=time.time(),
        )
        await self._client.publish(audio_topic(self.device), chunk.encode(), qos=qos)

    async def stream(
        self,
        samples: Samples,
        *,
        session: str | None = None,
        topic: str | None = None,
        lang: str | None = None,
        chunk_ms: int = 20,
        realtime: bool = False,
        stop: asyncio.Event | None = None,
        qos: int = 1,
    ) -> str:
        """Publish ``samples`` as one session; return its id.

        ``realtime`` paces chunks at capture speed. ``stop`` ends streaming early
        (a real satellite stops when the node's final arrives), sending end=true.
        """
        session = session or uuid.uuid4().hex[:16]
        pieces = split_chunks(samples, chunk_ms)
        started = time.monotonic()
        for seq, pcm in enumerate(pieces):
            last = seq == len(pieces) - 1 or (stop is not None and stop.is_set())
            await self._send(session, seq, pcm, end=last, topic=topic, lang=lang, qos=qos)
            if last:
                break
            if realtime:
                delay = started + (seq + 1) * chunk_ms / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        return session

    async def stream_pcm(
        self,
        blocks: AsyncIterable[bytes],
        *,
        session: str | None = None,
        topic: str | None = None,
        lang: str | None = None,
        chunk_ms: int = 20,
        stop: asyncio.Event | None = None,
        qos: int = 1,
    ) -> str:
        """Publish live s16le 16 kHz mono blocks (a microphone) as one session; return its id.

        Blocks of any size are re-cut into ``chunk_ms`` chunks of whole samples:
        the node limits each device's messages per second, and a sound card
        handing out 5 ms blocks would otherwise send 200 a second. Streaming ends
        when the blocks run out or ``stop`` is set (checked as each block
        arrives), with an end=true chunk carrying what is left.
        """
        session = session or uuid.uuid4().hex[:16]
        size = SAMPLE_RATE * chunk_ms // 1000 * 2
        pending = bytearray()
        seq = 0
        async for block in blocks:
            pending += block
            while len(pending) >= size:
                await self._send(
                    session, seq, bytes(pending[:size]), end=False, topic=topic, lang=lang, qos=qos
                )
                del pending[:size]
                seq += 1
            if stop is not None and stop.is_set():
                break
        tail = bytes(pending[: len(pending) - len(pending) % 2])
        await self._send(session, seq, tail, end=True, topic=topic, lang=lang, qos=qos)
        return session

    async def say(
        self,
        samples: Samples,
        *,
        on_transcript: Callable[[Partial | Final], None],
        session: str | None = None,
        topic: str | None = None,
        chunk_ms: int = 20,
        realtime: bool = False,
        timeout: float = 60.0,  # noqa: ASYNC109 - a satellite waits this long, then gives up
    ) -> Final:
        """Stream one utterance and follow its transcripts until its final.

        The client must already be subscribed to the transcript topic. Like a
        real satellite, streaming stops (with end=true) once the final arrives.
        Raises TimeoutError when no final comes within ``timeout`` seconds.
        """
        session = session or uuid.uuid4().hex[:16]
        done = asyncio.Event()
        finals: list[Final] = []

        async def follow() -> None:
            async for t in transcripts(self._client):
                if t.session == session:
                    on_transcript(t)
                    if isinstance(t, Final):
                        finals.append(t)
                        done.set()
                        return

        follower = asyncio.create_task(follow())
        try:
            await self.stream(
                samples,
                session=session,
                topic=topic,
                chunk_ms=chunk_ms,
                realtime=realtime,
                stop=done,
            )
            async with asyncio.timeout(timeout):
                await done.wait()
        finally:
            follower.cancel()
        return finals[0]


def payload_bytes(message: aiomqtt.Message) -> bytes:
    """A message's payload as bytes (aiomqtt types it loosely; None is empty)."""
    payload = message.payload
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()


async def stream_raw(
    client: aiomqtt.Client, device: str, samples: Samples, chunk_ms: int, *, realtime: bool
) -> None:
    """Publish audio as bare s16le on ``audio/<device>/raw`` (no sessions, no end)."""
    started = time.monotonic()
    topic = audio_topic(device, AudioKind.RAW)
    for i, pcm in enumerate(split_chunks(samples, chunk_ms)):
        await client.publish(topic, pcm, qos=0)
        if realtime:
            delay = started + (i + 1) * chunk_ms / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)


async def transcripts(client: aiomqtt.Client) -> AsyncIterator[Partial | Final]:
    """Transcripts arriving on the client's subscriptions (others are skipped)."""
    async for message in client.messages:
        if not message.topic.matches("transcript/#"):
            continue
        try:
            yield decode_transcript(payload_bytes(message))
        except (ContractError, ValueError):
            continue


async def wait_for_state(client: aiomqtt.Client, node_id: str, state: str) -> None:
    """Wait until the node's retained status says ``state`` (wrap in a timeout)."""
    await client.subscribe(status_topic(node_id), qos=1)
    async for message in client.messages:
        if (
            message.topic.matches(status_topic(node_id))
            and NodeStatus.decode(payload_bytes(message)).state == state
        ):
            return


def format_transcript(t: Partial | Final | ErrorReport) -> str:
    """One readable line per message, for ``listen``, ``send`` and the demo."""
    if isinstance(t, ErrorReport):
        return f"ERROR    {t.device}: {t.code}: {t.message}"
    who = f"{t.device}/{t.session[:16]}"
    if isinstance(t, Partial):
        tail = f"[{t.unstable}]" if t.unstable else ""
        return f"partial  {who}: {' '.join(x for x in (t.stable, tail) if x)}"
    if t.rejected:
        return f"FINAL    {who}: (no text: {t.rejected}; {t.audio_s:.1f} s audio, {t.endpoint})"
    return (
        f"FINAL    {who}: {t.text}   "
        f"(conf {t.confidence:.2f}, {t.audio_s:.1f} s audio, {t.endpoint}, "
        f"{t.latency_ms:.0f} ms after endpoint)"
    )
