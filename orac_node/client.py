"""Talking to a node from Python: the client SDK, and the pieces it is built on.

Applications use :class:`Client` (asyncio) or :class:`SyncClient` (blocking)::

    async with Client("mqtt://broker.lan:1883", device="kitchen") as c:
        result = await c.transcribe("audio.wav", topic="general")
        async for t in c.stream("utterance.wav"):   # partials, then the final
            print(t.text)

A :class:`Client` holds one MQTT v5 connection and one reader task that hands
each incoming message to whoever waits for it: a request's response (matched
on its correlation data), a stream's transcripts, a transcript feed. Every
topic and payload comes from :mod:`orac_node.contract`, as in the node.

The CLI, the demo, the bench and the tests use the lower pieces directly:
:func:`connect`, :class:`Satellite`, :func:`transcripts`, :func:`wait_for_state`.

Errors, all :class:`~orac_node.errors.OracNodeError`::

    ClientError              misuse (not connected, no device) or a refused subscription
    ├── RequestError         a node answered the request with ok: false (.code, .message)
    ├── RequestTimeoutError  no answer in time; also a TimeoutError
    └── StreamError          the node refused a streamed session (.report: the ErrorReport)
    BrokerError              the broker cannot be reached, or the connection dropped
    ContractError            a node's answer does not follow the contract

On a broker set up as docs/SECURITY.md describes, a satellite logs in over TLS:
``Client("mqtts://kitchen@broker.lan:8883", password=..., ca_file=ca)``.
docs/CLIENT.md lists which broker permissions each call needs.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import math
import os
import threading
import time
import uuid
import wave
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
)
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar, cast

import aiomqtt
import numpy as np
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from orac_node.audio import Samples, decode_file_bytes, float_to_s16, load_audio_file
from orac_node.brokerurl import NO_DELAY, BrokerUrl, tls_parameters
from orac_node.contract import (
    CONTEXT_DEFAULT_TTL_S,
    CONTEXT_MAX_TTL_S,
    MAX_PROMPT_CHARS,
    REQUEST_ANY,
    SAMPLE_RATE,
    TRANSCRIPT_FILTER,
    AudioChunk,
    AudioFormat,
    AudioKind,
    Context,
    ErrorReport,
    Final,
    Method,
    NodeStatus,
    Partial,
    Response,
    RetranscribeRequest,
    SatelliteState,
    SatelliteStatus,
    TranscribeRequest,
    Transcription,
    audio_topic,
    context_topic,
    decode_transcript,
    error_topic,
    is_response_topic,
    is_valid_name,
    request_topic,
    response_topic,
    satellite_status_topic,
    status_topic,
    transcript_topic,
)
from orac_node.errors import BrokerError, ContractError, OracNodeError

__all__ = [
    "AudioSource",
    "Client",
    "ClientError",
    "FileSource",
    "RequestError",
    "RequestTimeoutError",
    "Satellite",
    "StreamError",
    "SyncClient",
    "TranscriptFeed",
    "connect",
    "format_transcript",
    "split_chunks",
    "stream_raw",
    "transcripts",
    "wait_for_state",
]

log = logging.getLogger("orac_node.client")

AudioSource = str | os.PathLike[str] | bytes | Samples | AsyncIterable[bytes] | Iterable[bytes]
"""What :meth:`Client.stream` takes: a file path, a file's bytes, float32 16 kHz
samples, or live s16le 16 kHz mono blocks (async, or blocking reads)."""
FileSource = str | os.PathLike[str] | bytes | Samples
"""What :meth:`Client.transcribe` takes: a file path, a file's bytes, or samples."""

INBOX_LIMIT = 1000
"""Messages held for one reader (a stream, a transcript feed) that is slow to take
them; beyond this the newest are dropped and logged. A session publishes a few
dozen transcripts, so only a feed nobody reads for a long while ever fills up,
and it should not hold the whole house's transcripts in memory."""
END_GRACE_S = 0.5
"""How long a stream that is over waits for its audio sender to publish the
``end`` chunk (the sender notices at its next chunk, 20-100 ms) before cancelling it."""


class ClientError(OracNodeError):
    """The client was misused, or the broker refused it something it needs."""


class RequestError(ClientError):
    """A node answered a request with ``ok: false``; ``code`` is machine-readable."""

    def __init__(self, response: Response) -> None:
        error = response.error
        self.code = error.code if error is not None else "unknown"
        self.message = error.message if error is not None else "no error given"
        self.response = response
        super().__init__(
            f"{response.method} failed on {response.node}: {self.code}: {self.message}"
        )


class RequestTimeoutError(ClientError, TimeoutError):
    """No answer in time: no node up, none allowed to answer, or the work took longer."""


class StreamError(ClientError):
    """The node refused a streamed session; ``report`` is what it published."""

    def __init__(self, report: ErrorReport) -> None:
        self.report = report
        self.code = report.code
        super().__init__(
            f"{report.node} refused session {report.session}: {report.code}: {report.message}"
        )


@asynccontextmanager
async def connect(
    url: str,
    *,
    client_id: str | None = None,
    password: str | None = None,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    will: aiomqtt.Will | None = None,
) -> AsyncIterator[aiomqtt.Client]:
    """An MQTT v5 client for ``mqtt://[user[:password]@]host:port`` or ``mqtts://...``.

    ``password`` is used when the URL names a user but no password (a password
    typed into a URL lands in shell history and ``ps``). ``mqtts://`` verifies
    the broker against ``ca_file`` (default: the system's trust store);
    ``cert_file``/``key_file`` add a client certificate. ``will`` is the Last
    Will the broker publishes if the connection dies. Connect failures become
    :class:`BrokerError`, whose message shows the URL without its password.
    """
    try:
        parsed = BrokerUrl.parse(url)
    except ValueError as exc:
        raise BrokerError(str(exc)) from None
    if not parsed.tls and (ca_file or cert_file or key_file):
        raise BrokerError("a CA or client certificate needs an mqtts:// url")
    client = aiomqtt.Client(
        parsed.host,
        parsed.port,
        identifier=client_id or f"orac-client-{uuid.uuid4().hex[:8]}",
        protocol=aiomqtt.ProtocolVersion.V5,
        username=parsed.username,
        password=parsed.password if parsed.password is not None else password,
        tls_params=tls_parameters(ca_file, cert_file, key_file) if parsed.tls else None,
        socket_options=NO_DELAY,
        will=will,
        logger=logging.getLogger("orac_node.mqtt"),
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


def _payload(message: aiomqtt.Message) -> bytes:
    payload = message.payload
    return payload if isinstance(payload, bytes) else str(payload).encode()


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
            yield decode_transcript(_payload(message))
        except (ContractError, ValueError):
            continue


async def wait_for_state(client: aiomqtt.Client, node_id: str, state: str) -> None:
    """Wait until the node's retained status says ``state`` (wrap in a timeout)."""
    await client.subscribe(status_topic(node_id), qos=1)
    async for message in client.messages:
        if (
            message.topic.matches(status_topic(node_id))
            and NodeStatus.decode(_payload(message)).state == state
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


# -- the SDK ------------------------------------------------------------------


def _check_name(what: str, name: str) -> str:
    if not is_valid_name(name):
        raise ValueError(f"{what} {name!r} must be one topic level of A-Z a-z 0-9 _ . -")
    return name


def _as_samples(array: Samples) -> Samples:
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.floating):
        raise TypeError(
            f"expected 1-D float samples at 16 kHz in [-1, 1], got {array.dtype} "
            f"with shape {array.shape}"
        )
    return array.astype(np.float32, copy=False)


def _wav_bytes(samples: Samples) -> bytes:
    """16 kHz mono s16le WAV of float samples, built in memory (what a file request carries)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(float_to_s16(_as_samples(samples)))
    return out.getvalue()


async def _file_bytes(source: FileSource) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, np.ndarray):
        return _wav_bytes(source)
    return await asyncio.to_thread(Path(source).read_bytes)


async def _blocking_reads(blocks: Iterable[bytes]) -> AsyncIterator[bytes]:
    """Blocks from a blocking iterator (a sound card read), each read in a thread."""
    iterator = iter(blocks)
    while (block := await asyncio.to_thread(next, iterator, None)) is not None:
        yield block


async def _stream_audio(source: AudioSource) -> Samples | AsyncIterable[bytes]:
    """Samples for a file, bytes or array (files decoded in a thread); blocks as they are."""
    if isinstance(source, str | os.PathLike):
        return await asyncio.to_thread(load_audio_file, Path(source))
    if isinstance(source, bytes):
        return await asyncio.to_thread(decode_file_bytes, source)
    if isinstance(source, np.ndarray):
        return _as_samples(source)
    if isinstance(source, AsyncIterable):
        return source
    if isinstance(source, Iterable):
        return _blocking_reads(source)
    raise TypeError(f"cannot stream a {type(source).__name__}")


class _Inbox:
    """Messages for one reader of a :class:`Client` (a stream, a transcript feed).

    Besides messages it carries ``None`` ("look again": the reader's situation
    changed) and exceptions (the connection or the reader's audio sender failed).
    """

    def __init__(self, filters: tuple[str, ...]) -> None:
        self.filters = filters
        self._queue: asyncio.Queue[aiomqtt.Message | BaseException | None] = asyncio.Queue(
            INBOX_LIMIT
        )
        self.dropped = 0

    def put(self, item: aiomqtt.Message | BaseException | None) -> None:
        if isinstance(item, BaseException) or item is None:
            if self._queue.full():
                self._queue.get_nowait()  # a failure or wake-up must get through
            self._queue.put_nowait(item)
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % INBOX_LIMIT == 0:
                log.warning(
                    "%d message(s) on %s dropped: nobody read them",
                    self.dropped,
                    ", ".join(self.filters),
                )

    async def get(self) -> aiomqtt.Message | None:
        item = await self._queue.get()
        if isinstance(item, BaseException):
            self._queue.put_nowait(item)  # every later get fails the same way
            raise item
        return item


def _failed(code: Any) -> bool:  # noqa: ANN401 - paho gives ReasonCode (v5) or int (v3)
    """Whether a SUBACK code refuses the subscription.

    Mosquitto grants every subscription and filters deliveries by its ACL, but
    other brokers refuse unreadable filters here, and then we say so at once.
    """
    return bool(getattr(code, "is_failure", False)) or (isinstance(code, int) and code >= 0x80)


class Client:
    """An asyncio client of orac-node: requests, streaming, transcripts, context.

    Use it as ``async with Client(url, ...) as c``; one connection serves any
    number of concurrent calls. ``device`` names this program as a satellite
    (needed by :meth:`stream`); with ``heartbeat`` it also publishes a retained
    :class:`~orac_node.contract.SatelliteStatus` ``online`` listing ``topics``,
    with ``offline`` as its Last Will and on a clean exit. ``timeout`` is the
    default wait for a request's answer and for a stream's final after its audio.
    The connection is not re-established when it drops: calls then raise
    :class:`BrokerError`; reconnect by entering a new ``Client`` (with backoff).
    """

    def __init__(
        self,
        url: str,
        *,
        device: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        client_id: str | None = None,
        topics: Iterable[str] = (),
        heartbeat: bool = True,
        timeout: float = 30.0,
    ) -> None:
        try:
            parsed = BrokerUrl.parse(url)
        except ValueError as exc:
            raise BrokerError(str(exc)) from None
        if device is not None:
            _check_name("device", device)
        self.topics = [_check_name("topic", t) for t in topics]
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        self.device = device
        self.timeout = timeout
        self._url = url
        self._where = parsed.redacted()
        self._password = password
        self._tls_files = (ca_file, cert_file, key_file)
        self.client_id = client_id or f"orac-client-{uuid.uuid4().hex[:8]}"
        self._heartbeat = heartbeat and device is not None
        # Responses come to the MQTT user name (the ACL's orac/response/<user>/#),
        # under a level of this instance's own so clients sharing a user name
        # are not sent each other's responses.
        self.owner = parsed.username or self.client_id
        self._reply_level = uuid.uuid4().hex[:12]
        self._response_filter = response_topic(self.owner, f"{self._reply_level}/#")
        self._mqtt: aiomqtt.Client | None = None
        self._stack: AsyncExitStack | None = None
        self._failure: BrokerError | None = None
        self._inboxes: list[_Inbox] = []
        self._pending: dict[bytes, asyncio.Future[Response]] = {}
        self._refs: dict[str, int] = {}  # subscribed filter -> readers using it
        self._filter_ids: dict[str, int] = {}
        self._id_filters: dict[int, str] = {}
        self._next_id = 1
        self._sub_lock = asyncio.Lock()
        self._responses_ready = False
        self._entered = False

    # -- connection ---------------------------------------------------------

    def _status(self, state: SatelliteState) -> SatelliteStatus:
        assert self.device is not None
        return SatelliteStatus(self.device, state, list(self.topics), time.time())

    async def __aenter__(self) -> Self:
        if self._entered:
            # Its subscriptions and waiters belong to the old connection.
            raise ClientError("a Client is entered once: make a new one to reconnect")
        self._entered = True
        will = None
        if self._heartbeat:
            offline = self._status("offline").encode()
            will = aiomqtt.Will(
                satellite_status_topic(self.device or ""), offline, qos=1, retain=True
            )
        ca_file, cert_file, key_file = self._tls_files
        async with AsyncExitStack() as stack:
            stack.callback(self._forget_connection)  # undone by pop_all once all went well
            self._mqtt = await stack.enter_async_context(
                connect(
                    self._url,
                    client_id=self.client_id,
                    password=self._password,
                    ca_file=ca_file,
                    cert_file=cert_file,
                    key_file=key_file,
                    will=will,
                )
            )
            stack.callback(self._close_waiters)
            reader = asyncio.create_task(self._read(), name=f"orac-client-{self.client_id}")
            stack.push_async_callback(_cancel, reader)
            if self._heartbeat:
                await self._publish(
                    satellite_status_topic(self.device or ""),
                    self._status("online").encode(),
                    retain=True,
                )
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        try:
            if self._heartbeat and self._failure is None:
                await self._publish(
                    satellite_status_topic(self.device or ""),
                    self._status("offline").encode(),
                    retain=True,
                )
        finally:
            await stack.aclose()

    def _forget_connection(self) -> None:
        self._mqtt = None

    def _connected(self) -> aiomqtt.Client:
        if self._failure is not None:
            raise self._failure
        if self._mqtt is None:
            raise ClientError("the client is not connected: use it in `async with Client(...)`")
        return self._mqtt

    def _close_waiters(self) -> None:
        closed = ClientError("the client was closed")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(closed)
        for inbox in self._inboxes:
            inbox.put(closed)

    async def _publish(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        try:
            await self._connected().publish(
                topic, payload, qos=1, retain=retain, properties=properties
            )
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"{self._where}: publishing on {topic} failed: {exc}") from exc

    # -- routing ------------------------------------------------------------

    async def _read(self) -> None:
        """Hand every incoming message to its readers, until the connection ends."""
        assert self._mqtt is not None
        try:
            async for message in self._mqtt.messages:
                try:
                    self._route(message)
                except Exception:  # one odd message must not stop every reader
                    log.exception("could not route a message on %s", message.topic)
        except aiomqtt.MqttError as exc:
            self._failure = BrokerError(f"{self._where}: connection lost: {exc}")
            log.warning("%s", self._failure)
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(self._failure)
            for inbox in self._inboxes:
                inbox.put(self._failure)

    def _route(self, message: aiomqtt.Message) -> None:
        # Mosquitto sends one copy of a message per matching subscription, each
        # with that subscription's identifier: a copy goes only to the readers of
        # that subscription, so overlapping readers (transcript/# and
        # transcript/general) each see a message once.
        ids = getattr(message.properties, "SubscriptionIdentifier", None)
        if ids:
            filters = {self._id_filters[i] for i in ids if i in self._id_filters}
        else:  # a broker that sends no identifiers: match on the topic
            filters = {f for f in self._refs if message.topic.matches(f)}
        if self._response_filter in filters:
            self._on_response(message)
        for inbox in self._inboxes:
            if filters.intersection(inbox.filters):
                inbox.put(message)

    def _on_response(self, message: aiomqtt.Message) -> None:
        correlation = getattr(message.properties, "CorrelationData", None)
        future = self._pending.get(bytes(correlation)) if correlation else None
        if future is None or future.done():
            log.debug("a response on %s that nobody waits for", message.topic)
            return
        try:
            future.set_result(Response.decode(_payload(message)))
        except ContractError as exc:
            future.set_exception(exc)

    async def _subscribe(self, topic_filter: str) -> None:
        async with self._sub_lock:
            if topic_filter in self._refs:
                self._refs[topic_filter] += 1
                return
            ident, self._next_id = self._next_id, self._next_id + 1
            properties = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]
            properties.SubscriptionIdentifier = ident
            self._id_filters[ident] = topic_filter  # before retained messages can arrive
            try:
                codes = await self._connected().subscribe(
                    topic_filter, qos=1, properties=properties
                )
            except aiomqtt.MqttError as exc:
                del self._id_filters[ident]
                raise BrokerError(f"{self._where}: subscribing to {topic_filter}: {exc}") from exc
            if any(_failed(code) for code in codes):
                del self._id_filters[ident]
                raise ClientError(
                    f"the broker refused a subscription to {topic_filter}: "
                    f"{codes[0]} (see docs/CLIENT.md for the permissions)"
                )
            self._refs[topic_filter] = 1
            self._filter_ids[topic_filter] = ident

    async def _unsubscribe(self, topic_filter: str) -> None:
        async with self._sub_lock:
            self._refs[topic_filter] -= 1
            if self._refs[topic_filter]:
                return
            del self._refs[topic_filter]
            ident = self._filter_ids.pop(topic_filter)
            if self._mqtt is not None and self._failure is None:
                try:
                    await self._mqtt.unsubscribe(topic_filter)
                except aiomqtt.MqttError as exc:
                    log.debug("unsubscribing from %s: %s", topic_filter, exc)
            self._id_filters.pop(ident, None)

    @asynccontextmanager
    async def _listen(self, *filters: str) -> AsyncIterator[_Inbox]:
        """An inbox for ``filters``, subscribed while the block runs."""
        inbox = _Inbox(filters)
        self._inboxes.append(inbox)
        subscribed: list[str] = []
        try:
            for topic_filter in filters:
                await self._subscribe(topic_filter)
                subscribed.append(topic_filter)
            yield inbox
        finally:
            self._inboxes.remove(inbox)
            for topic_filter in subscribed:
                await self._unsubscribe(topic_filter)

    @property
    def subscriptions(self) -> frozenset[str]:
        """The topic filters this client is subscribed to now."""
        return frozenset(self._refs)

    # -- requests -----------------------------------------------------------

    async def _request(
        self,
        method: Method,
        target: str,
        payload: bytes,
        timeout: float | None,  # noqa: ASYNC109 - the SDK's documented per-call timeout
    ) -> Response:
        """Publish one request and wait for its response (matched on correlation data)."""
        if not self._responses_ready:
            await self._subscribe(self._response_filter)  # kept for the client's lifetime
            self._responses_ready = True
        nonce = uuid.uuid4().hex
        reply_to = response_topic(self.owner, f"{self._reply_level}/{nonce}")
        if not is_response_topic(reply_to):
            raise ClientError(f"cannot be answered on {reply_to!r}: choose another client_id")
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ResponseTopic = reply_to
        properties.CorrelationData = nonce.encode()
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[nonce.encode()] = future
        wait = self.timeout if timeout is None else timeout
        try:
            await self._publish(request_topic(method, target), payload, properties=properties)
            async with asyncio.timeout(wait):
                response = await future
        except TimeoutError:
            raise RequestTimeoutError(
                f"no answer to {method.value} from {target!r} within {wait:g} s: is a node up, "
                f"and may this client publish {request_topic(method, target)} and read "
                f"{self._response_filter}?"
            ) from None
        finally:
            del self._pending[nonce.encode()]
        if not response.ok:
            raise RequestError(response)
        return response

    async def describe(
        self,
        node: str = REQUEST_ANY,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """What a node offers (models, languages, limits), as the node describes it."""
        response = await self._request(Method.DESCRIBE, node, b"{}", timeout)
        return response.result or {}

    async def transcribe(
        self,
        source: FileSource,
        *,
        topic: str | None = None,
        language: str | None = None,
        prompt: str | None = None,
        model: str | None = None,
        device: str | None = None,
        publish: bool = True,
        node: str = REQUEST_ANY,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Transcription:
        """Transcribe a whole recording on one node and return the result.

        ``source`` is a path (WAV, FLAC, MP3, OGG: the node decodes it), a
        file's bytes, or float32 16 kHz samples (sent as a WAV). With
        ``publish`` the final also goes out on ``transcript/<topic>`` for the
        topic's consumers. ``device`` defaults to this client's device, else
        ``request``. Raises :class:`RequestError` when the node refuses it.
        """
        request = TranscribeRequest(
            audio=await _file_bytes(source),
            device=device or self.device or "request",
            topic=topic,
            language=language,
            prompt=prompt,
            model=model,
            publish=publish,
        )
        response = await self._request(Method.TRANSCRIBE, node, request.encode(), timeout)
        return response.transcription()

    async def retranscribe(
        self,
        final_or_device: Final | str,
        session: str | None = None,
        *,
        node: str | None = None,
        model: str | None = None,
        prompt: str | None = None,
        language: str | None = None,
        beam_size: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Transcription:
        """Decode a recent session's audio again (a bigger model, a prompt, beam search).

        Pass the :class:`Final` (the request goes to ``final.node``, the only
        node holding the audio), or a device and session id (then give ``node``
        too when there is more than one node). A session the node no longer
        holds raises :class:`RequestError` with code ``not_found``.
        """
        if isinstance(final_or_device, Final):
            if session is not None:
                raise ValueError("give a Final, or a device and a session, not both")
            device, session = final_or_device.device, final_or_device.session
            target = node or final_or_device.node
        else:
            if session is None:
                raise ValueError("retranscribe needs the session id with a device name")
            device, target = final_or_device, node or REQUEST_ANY
        request = RetranscribeRequest(
            device=device,
            session=session,
            model=model,
            prompt=prompt,
            language=language,
            beam_size=beam_size,
        )
        response = await self._request(Method.RETRANSCRIBE, target, request.encode(), timeout)
        return response.transcription()

    # -- context ------------------------------------------------------------

    async def set_context(
        self,
        prompt: str,
        *,
        device: str | None = None,
        topic: str | None = None,
        ttl_s: float = CONTEXT_DEFAULT_TTL_S,
    ) -> None:
        """Give one device's (or topic's) next utterances a prompt for ``ttl_s`` seconds.

        Published retained, so a node started later has it, and with an MQTT
        message expiry of ``ttl_s`` (rounded up), so the broker forgets it when
        the node would stop using it. Setting it again replaces it.
        """
        where = self._context_topic(device, topic)
        if not 0 < ttl_s <= CONTEXT_MAX_TTL_S:
            raise ValueError(f"ttl_s must be in (0, {CONTEXT_MAX_TTL_S:g}]")
        if len(prompt) > 10 * MAX_PROMPT_CHARS:
            raise ValueError(f"prompt over {10 * MAX_PROMPT_CHARS} characters")
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.MessageExpiryInterval = math.ceil(ttl_s)
        context = Context(prompt=prompt, ttl_s=ttl_s, ts=time.time())
        await self._publish(where, context.encode(), retain=True, properties=properties)

    async def clear_context(self, *, device: str | None = None, topic: str | None = None) -> None:
        """Withdraw a context at once (an empty retained message clears it)."""
        await self._publish(self._context_topic(device, topic), b"", retain=True)

    @staticmethod
    def _context_topic(device: str | None, topic: str | None) -> str:
        if (device is None) == (topic is None):
            raise ValueError("give exactly one of device and topic")
        if device is not None:
            return context_topic(device=_check_name("device", device))
        return context_topic(topic=_check_name("topic", topic or ""))

    # -- transcripts and streaming -------------------------------------------

    def transcripts(self, topic: str | None = None) -> TranscriptFeed:
        """Partials and finals on ``transcript/<topic>`` (all topics when None), until closed.

        ``async for t in c.transcripts()`` subscribes at the first read;
        ``async with c.transcripts() as feed`` subscribes on entering, so what
        is published after that is not missed. Messages that do not parse are
        skipped (logged at debug level).
        """
        watch = transcript_topic(_check_name("topic", topic)) if topic else TRANSCRIPT_FILTER
        return TranscriptFeed(self, watch)

    async def stream(
        self,
        source: AudioSource,
        *,
        topic: str | None = None,
        language: str | None = None,
        session: str | None = None,
        realtime: bool = True,
        chunk_ms: int = 20,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> AsyncIterator[Partial | Final]:
        """Stream one utterance as this client's device; yield its partials, then its final.

        ``source``: a file path or a file's bytes (decoded here, ffmpeg for
        non-WAV), float32 16 kHz samples, or live s16le 16 kHz mono blocks
        (an async iterable, or a blocking iterable read in a thread), which
        stream until the node's endpoint says the utterance is over. Files and
        samples go out at capture speed when ``realtime`` (as a satellite
        would; partials need time to appear), else as fast as the node allows.
        Streaming stops (end=true) once the final arrives or when the caller
        stops iterating. An error report naming this session (too many
        sessions, a failed decode) raises :class:`StreamError`; other reports
        for the device are logged. No final within ``timeout`` seconds after
        the audio ran out raises :class:`RequestTimeoutError`.
        """
        device = self.device
        if device is None:
            raise ClientError("stream needs a device: Client(url, device='kitchen')")
        watch = transcript_topic(_check_name("topic", topic)) if topic else TRANSCRIPT_FILTER
        session = session or uuid.uuid4().hex[:16]
        audio = await _stream_audio(source)
        wait = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        async with self._listen(watch, error_topic(device)) as inbox:
            stop = asyncio.Event()
            sender = asyncio.create_task(
                self._send_audio(
                    audio,
                    session=session,
                    topic=topic,
                    lang=language,
                    chunk_ms=chunk_ms,
                    realtime=realtime,
                    stop=stop,
                ),
                name=f"orac-stream-{session}",
            )
            # Wake the loop below when the audio is out (its deadline starts) or failed.
            sender.add_done_callback(
                lambda task: None if task.cancelled() else inbox.put(task.exception())
            )
            try:
                deadline: float | None = None
                last_seq = 0
                while True:
                    if deadline is None and sender.done():
                        deadline = loop.time() + wait
                    try:
                        async with asyncio.timeout_at(deadline):
                            message = await inbox.get()
                    except TimeoutError:
                        raise RequestTimeoutError(
                            f"no final for session {session} within {wait:g} s of its audio: "
                            f"is a node up, and may this client read {watch}?"
                        ) from None
                    t = None if message is None else self._of_session(message, device, session)
                    if isinstance(t, Partial) and t.seq > last_seq:  # not a late duplicate
                        last_seq = t.seq
                        yield t
                    elif isinstance(t, Final):
                        yield t
                        return
            finally:
                stop.set()
                await _finish(sender)

    async def _send_audio(
        self,
        audio: Samples | AsyncIterable[bytes],
        *,
        session: str,
        topic: str | None,
        lang: str | None,
        chunk_ms: int,
        realtime: bool,
        stop: asyncio.Event,
    ) -> None:
        satellite = Satellite(self._connected(), self.device or "")
        try:
            if isinstance(audio, np.ndarray):
                await satellite.stream(
                    audio,
                    session=session,
                    topic=topic,
                    lang=lang,
                    chunk_ms=chunk_ms,
                    realtime=realtime,
                    stop=stop,
                )
            else:
                await satellite.stream_pcm(
                    audio, session=session, topic=topic, lang=lang, chunk_ms=chunk_ms, stop=stop
                )
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"{self._where}: streaming session {session}: {exc}") from exc

    @staticmethod
    def _of_session(message: aiomqtt.Message, device: str, session: str) -> Partial | Final | None:
        """The message as a transcript of this session (None: another's, or unreadable)."""
        payload = _payload(message)
        if message.topic.matches(error_topic(device)):
            try:
                report = ErrorReport.decode(payload)
            except ContractError as exc:
                log.debug("unreadable error report for %s: %s", device, exc)
                return None
            if report.session == session:
                raise StreamError(report)
            if report.session is None:
                log.warning("%s", format_transcript(report))
            return None
        try:
            t = decode_transcript(payload)
        except ContractError as exc:
            log.debug("skipping a transcript on %s: %s", message.topic, exc)
            return None
        return t if (t.device, t.session) == (device, session) else None


class TranscriptFeed:
    """Transcripts on one topic filter for a :class:`Client`, while it is open.

    Iterate it with ``async for`` (subscribed at the first read), inside
    ``async with`` when nothing published after entering may be missed.
    Leaving the loop or the block closes it (unsubscribes); it is read once.
    """

    def __init__(self, client: Client, topic_filter: str) -> None:
        self.topic_filter = topic_filter
        self._client = client
        self._stack = AsyncExitStack()
        self._inbox: _Inbox | None = None
        self._closed = False

    async def open(self) -> None:
        """Subscribe (once); later messages on the filter are kept for the reader."""
        if self._closed:
            raise ClientError("this transcript feed was closed")
        if self._inbox is None:
            self._inbox = await self._stack.enter_async_context(
                self._client._listen(self.topic_filter)
            )

    async def aclose(self) -> None:
        """Unsubscribe; a loop reading the feed ends."""
        self._closed = True
        if self._inbox is not None:
            self._inbox.put(None)  # wakes the reader, which sees the feed closed
        await self._stack.aclose()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[Partial | Final]:
        return self._read()

    async def _read(self) -> AsyncIterator[Partial | Final]:
        # A generator, so that leaving an `async for` early (break, an exception)
        # closes the feed too: asyncio closes an abandoned generator, not an object.
        try:
            await self.open()
            assert self._inbox is not None
            while True:
                message = await self._inbox.get()
                if message is None:
                    if self._closed:
                        return
                    continue
                try:
                    yield decode_transcript(_payload(message))
                except ContractError as exc:
                    log.debug("skipping a transcript on %s: %s", message.topic, exc)
        finally:
            await self.aclose()


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it (our own cancellation still propagates)."""
    task.cancel()
    await asyncio.wait({task})


async def _finish(sender: asyncio.Task[None]) -> None:
    """Let a stream's sender publish its end chunk, then make sure it is gone."""
    await asyncio.wait({sender}, timeout=END_GRACE_S)
    if not sender.done():
        await _cancel(sender)


# -- blocking wrapper -----------------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")
Y = TypeVar("Y")


def _blocking(
    method: Callable[Concatenate[Client, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[SyncClient, P], R]:
    @functools.wraps(method)
    def call(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._run(method(self.client, *args, **kwargs))

    return call


def _blocking_iter(
    method: Callable[Concatenate[Client, P], AsyncIterable[Y]],
) -> Callable[Concatenate[SyncClient, P], Iterator[Y]]:
    @functools.wraps(method)
    def call(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[Y]:
        return self._iterate(aiter(method(self.client, *args, **kwargs)))

    return call


_END = object()


async def _next_or_end(iterator: AsyncIterator[Y]) -> Y | object:
    try:
        return await anext(iterator)
    except StopAsyncIteration:
        return _END


class SyncClient:
    """:class:`Client` for scripts that do not use asyncio: the same calls, blocking.

    The client runs on its own event loop in a background thread; each call
    waits for its result, and :meth:`stream` and :meth:`transcripts` return
    plain iterators. Use it as ``with SyncClient(url, ...) as c``. The
    arguments are :class:`Client`'s.
    """

    def __init__(
        self,
        url: str,
        *,
        device: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        client_id: str | None = None,
        topics: Iterable[str] = (),
        heartbeat: bool = True,
        timeout: float = 30.0,
    ) -> None:
        self.client = Client(
            url,
            device=device,
            password=password,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            client_id=client_id,
            topics=topics,
            heartbeat=heartbeat,
            timeout=timeout,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        loop = asyncio.new_event_loop()
        # A daemon thread, so an interrupted script can always exit.
        thread = threading.Thread(target=loop.run_forever, name="orac-client", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._run(self.client.__aenter__())
        except BaseException:
            self._shut_down()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._run(self.client.__aexit__(exc_type, exc, tb))
        finally:
            self._shut_down()

    def _shut_down(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    def _run(self, coroutine: Coroutine[Any, Any, R]) -> R:
        loop = self._loop
        if loop is None:
            coroutine.close()
            raise ClientError("the client is not connected: use it in `with SyncClient(...)`")
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. Ctrl-C while waiting: stop the work too
            raise

    def _iterate(self, iterator: AsyncIterator[Y]) -> Iterator[Y]:
        try:
            while True:
                item = self._run(_next_or_end(iterator))
                if item is _END:
                    return
                yield cast(Y, item)
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None and self._loop is not None:
                self._run(close())

    @property
    def device(self) -> str | None:
        """The device name this client streams as (None: it does not stream)."""
        return self.client.device

    describe = _blocking(Client.describe)
    transcribe = _blocking(Client.transcribe)
    retranscribe = _blocking(Client.retranscribe)
    set_context = _blocking(Client.set_context)
    clear_context = _blocking(Client.clear_context)
    stream = _blocking_iter(Client.stream)
    transcripts = _blocking_iter(Client.transcripts)
