"""The asyncio client SDK: :class:`Client`'s requests, context, streaming and transcript feeds.

Its connection (heartbeat, subscriptions, routing each message) is
:class:`~orac_node.client.connection.Connection`, its base class.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

import aiomqtt
import numpy as np
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from orac_node.audio import Samples
from orac_node.client.connection import Connection, cancel
from orac_node.client.errors import RequestError, RequestTimeoutError, StreamError
from orac_node.client.feed import TranscriptFeed
from orac_node.client.inbox import Inbox
from orac_node.client.link import Satellite, format_transcript, payload_bytes
from orac_node.client.sources import (
    AudioSource,
    FileSource,
    check_name,
    file_bytes,
    stream_audio,
)
from orac_node.errors import BrokerError, ClientError, ContractError
from orac_node.wire import (
    CONTEXT_DEFAULT_TTL_S,
    CONTEXT_MAX_TTL_S,
    FINISHED,
    MAX_PROMPT_CHARS,
    REQUEST_ANY,
    ROOM_CODES,
    STATUS_FILTER,
    TRANSCRIPT_FILTER,
    Context,
    ErrorCode,
    ErrorReport,
    Final,
    JobEvent,
    JobRequest,
    Method,
    NodeStatus,
    Partial,
    Response,
    RetranscribeRequest,
    SessionClaim,
    TranscribeRequest,
    Transcription,
    claim_topic,
    context_topic,
    decode_transcript,
    error_topic,
    is_response_topic,
    job_topic,
    request_topic,
    response_topic,
    transcript_topic,
)

log = logging.getLogger("orac_node.client")

END_GRACE_S = 0.5
"""How long a stream that is over waits for its audio sender to publish the
``end`` chunk (the sender notices at its next chunk, 20-100 ms) before cancelling it."""


class Client(Connection):
    """An asyncio client of orac-node: requests, streaming, transcripts, context.

    Use it as ``async with Client(url, ...) as c``; one connection serves any
    number of concurrent calls. ``device`` names this program as a satellite
    (needed by :meth:`stream`); with ``heartbeat`` it also publishes a retained
    :class:`~orac_node.wire.SatelliteStatus` ``online`` listing ``topics``,
    with ``offline`` as its Last Will and on a clean exit. ``timeout`` is the
    default wait for a request's answer and for a stream's final after its audio.
    The connection is not re-established when it drops: calls then raise
    :class:`BrokerError`; reconnect by entering a new ``Client`` (with backoff).
    """

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
            audio=await file_bytes(source),
            device=device or self.device or "request",
            topic=topic,
            language=language,
            prompt=prompt,
            model=model,
            publish=publish,
        )
        response = await self._request(Method.TRANSCRIBE, node, request.encode(), timeout)
        return response.transcription()

    async def submit_job(
        self,
        source: FileSource,
        *,
        name: str = "request",
        language: str | None = None,
        prompt: str | None = None,
        node: str = REQUEST_ANY,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> str:
        """Queue a long recording as a job for whichever node takes it; its id.

        The file travels in one MQTT message (``ingest.max_file_bytes`` bounds
        it) to ``node`` (any node, by default; whichever node takes the job
        then decodes it); longer recordings go with ``orac-node transcribe
        --submit``. Follow it with :meth:`job_events`.
        """
        request = JobRequest(await file_bytes(source), name, language, prompt)
        response = await self._request(Method.SUBMIT_JOB, node, request.encode(), timeout)
        return str((response.result or {})["job"])

    async def job_events(self, job: str) -> AsyncIterator[JobEvent]:
        """A job's progress as nodes publish it, up to and including its end."""
        async with self._listen(job_topic(job)) as inbox:
            while True:
                message = await inbox.get()
                if message is None:
                    continue
                try:
                    event = JobEvent.decode(payload_bytes(message))
                except ContractError as exc:
                    log.debug("unreadable job event: %s", exc)
                    continue
                yield event
                if event.state in FINISHED:
                    return

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
            return context_topic(device=check_name("device", device))
        return context_topic(topic=check_name("topic", topic or ""))

    # -- transcripts and streaming -------------------------------------------

    def transcripts(self, topic: str | None = None) -> TranscriptFeed:
        """Partials and finals on ``transcript/<topic>`` (all topics when None), until closed.

        ``async for t in c.transcripts()`` subscribes at the first read;
        ``async with c.transcripts() as feed`` subscribes on entering, so what
        is published after that is not missed. Messages that do not parse are
        skipped (logged at debug level).
        """
        watch = transcript_topic(check_name("topic", topic)) if topic else TRANSCRIPT_FILTER
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
        sessions, a failed decode) raises :class:`StreamError`, unless another
        node takes a session refused for room (failover); other reports
        for the device are logged. No final within ``timeout`` seconds after
        the audio ran out raises :class:`RequestTimeoutError`.
        """
        device = self.device
        if device is None:
            raise ClientError("stream needs a device: Client(url, device='kitchen')")
        watch = transcript_topic(check_name("topic", topic)) if topic else TRANSCRIPT_FILTER
        session = session or uuid.uuid4().hex[:16]
        audio = await stream_audio(source)
        wait = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        satellite = Satellite(self._connected(), device)
        satellite.keep(session)  # until its final: resent if its node dies (docs/FLEET.md)
        failover = _Failover(session)
        async with contextlib.AsyncExitStack() as listening:
            inbox = await self._stream_inbox(listening, watch, device)
            stop = asyncio.Event()
            sender = asyncio.create_task(
                self._send_audio(
                    satellite,
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
                        async with asyncio.timeout_at(_earliest(deadline, failover.room_deadline)):
                            message = await inbox.get()
                    except TimeoutError:
                        if failover.refused is not None:  # no other node took the device
                            raise failover.refused from None
                        raise RequestTimeoutError(
                            f"no final for session {session} within {wait:g} s of its audio: "
                            f"is a node up, and may this client read {watch}?"
                        ) from None
                    if message is not None and (
                        failover.node_died(message) or failover.moved_on(message)
                    ):
                        await failover.resend(
                            satellite, topic=topic, lang=language, connected=self._connected
                        )
                        if deadline is not None:
                            deadline = loop.time() + wait  # the new node's turn
                        continue
                    t = self._heard(
                        message, device, session, failover=failover, stop=stop, now=loop.time()
                    )
                    if isinstance(t, Partial) and t.seq > last_seq:  # not a late duplicate
                        last_seq = t.seq
                        yield t
                    elif isinstance(t, Final):
                        yield t
                        return
            finally:
                stop.set()
                await _finish(sender)
                satellite.forget(session)

    async def _stream_inbox(
        self, stack: contextlib.AsyncExitStack, watch: str, device: str
    ) -> Inbox:
        """Transcripts and errors, and the claims and node statuses failover watches.

        A broker whose ACL refuses the latter two to this user streams without
        failover (docs/CLIENT.md lists the permissions).
        """
        base = (watch, error_topic(device))
        try:
            return await stack.enter_async_context(
                self._listen(*base, claim_topic(device), STATUS_FILTER)
            )
        except ClientError as exc:
            log.info("streaming without failover: %s", exc)
        return await stack.enter_async_context(self._listen(*base))

    async def _send_audio(
        self,
        satellite: Satellite,
        audio: Samples | AsyncIterable[bytes],
        *,
        session: str,
        topic: str | None,
        lang: str | None,
        chunk_ms: int,
        realtime: bool,
        stop: asyncio.Event,
    ) -> None:
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

    @classmethod
    def _heard(
        cls,
        message: aiomqtt.Message | None,
        device: str,
        session: str,
        *,
        failover: _Failover,
        stop: asyncio.Event,
        now: float,
    ) -> Partial | Final | None:
        """The message as this session's transcript; an error report either raises or waits.

        A refusal for room with another node up waits to be sent on (failover);
        ``late_audio`` means the node ended the session (its endpoint) while
        audio was still coming, as it does with a live microphone: its final is
        on the way, and can arrive after the report when the node is busy.
        """
        if message is None:
            return None
        try:
            return cls._of_session(message, device, session)
        except StreamError as exc:
            if exc.code in ROOM_CODES and failover.refused_for_room(exc, now):
                return None
            if exc.code != ErrorCode.LATE_AUDIO:
                raise
            stop.set()
            return None

    @staticmethod
    def _of_session(message: aiomqtt.Message, device: str, session: str) -> Partial | Final | None:
        """The message as a transcript of this session (None: another's, or unreadable)."""
        payload = payload_bytes(message)
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


FAILOVER_GRACE_S = 1.0
"""How long a claimant's ``offline`` must stand, with this client still connected,
before the session is sent again. Mosquitto publishes every client's Last Will
as it shuts down and closes the connections an instant later; a second is ample
to tell the two apart, and small beside the utterance's wait for a new node."""


ROOM_WAIT_S = 3.0
"""How long a session refused for room waits for the refusing node's status to say
``overloaded`` (the node republishes it within a second) and so for the fleet to
hand the device to another node, before the refusal is raised."""


def _earliest(*times: float | None) -> float | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


class _Failover:
    """Watches the claim on one streamed session and the nodes' statuses.

    When the node that claimed the session goes ``offline`` (its Last Will:
    killed, crashed, cut off) before the final, the stream sends the session
    again and another node takes it. When a node refuses the session for want
    of room (``overloaded``, ``too_many_sessions``) while another node is up
    with room, the stream waits for the refusing node's status to say
    ``overloaded`` (then the fleet routes the device elsewhere) and sends the
    session again for the new node (docs/FLEET.md).
    """

    MAX_RESENDS = 3
    """A session whose nodes keep dying is given up after this many resends (timeout)."""

    def __init__(self, session: str) -> None:
        self._session = session
        self._claimant: str | None = None
        self._offline: set[str] = set()
        self._ready: dict[str, bool] = {}  # nodes taking sessions -> their status's overloaded
        self.lost_node: str | None = None
        self.resends = 0
        self.refused: StreamError | None = None  # a refusal for room, waiting to be sent on
        self._refused_at = 0.0

    def node_died(self, message: aiomqtt.Message) -> bool:
        """Take in a claim or status; True when the session must be sent again now."""
        topic = message.topic.value
        if not topic.startswith(("orac/claim/", "orac/node/")):
            return False
        try:
            if topic.startswith("orac/claim/"):
                claim = SessionClaim.decode(payload_bytes(message))
                if claim.session == self._session and self._claimant is None:
                    self._claimant = claim.node  # the first claim is the one that counts
                    self._offline.discard(claim.node)  # it just claimed: up, whatever came before
            elif payload := payload_bytes(message):
                status = NodeStatus.decode(payload)
                if status.state == "offline":
                    self._offline.add(status.node)
                else:
                    self._offline.discard(status.node)
                if status.state == "ready":
                    self._ready[status.node] = status.overloaded
                else:
                    self._ready.pop(status.node, None)
        except ContractError as exc:
            log.debug("unreadable %s: %s", topic, exc)
            return False
        if self._claimant is None or self._claimant not in self._offline:
            return False
        if self.resends >= self.MAX_RESENDS:
            return False
        self.lost_node, self._claimant = self._claimant, None  # the next claim is the new node's
        self.resends += 1
        return True

    def refused_for_room(self, error: StreamError, now: float) -> bool:
        """A refusal for room: True while another node might take the session instead."""
        if self.resends >= self.MAX_RESENDS or not self._others_with_room(error.report.node):
            return False
        self.refused, self._refused_at = error, now
        return True

    @property
    def room_deadline(self) -> float | None:
        """When a refusal for room is given up on (None: none is waiting)."""
        return None if self.refused is None else self._refused_at + ROOM_WAIT_S

    def moved_on(self, message: aiomqtt.Message) -> bool:
        """A refusal is waiting, and the refusing node now says it is full: send it on."""
        if self.refused is None or not message.topic.value.startswith("orac/node/"):
            return False
        refuser = self.refused.report.node
        if not self._ready.get(refuser, False) or not self._others_with_room(refuser):
            return False
        self.lost_node, self._claimant, self.refused = refuser, None, None
        self.resends += 1
        return True

    def _others_with_room(self, refuser: str) -> bool:
        return any(not full for node, full in self._ready.items() if node != refuser)

    async def resend(
        self,
        satellite: Satellite,
        *,
        topic: str | None,
        lang: str | None,
        connected: Callable[[], object],
    ) -> None:
        """Send the whole session again, for the node that takes over.

        First :data:`FAILOVER_GRACE_S` passes and ``connected`` must not raise: a
        broker that stops sends every node's Last Will, then drops this
        connection too, and that is no death (the node keeps the session).
        """
        if self.lost_node not in self._ready:  # it died; a full node needs no grace
            await asyncio.sleep(FAILOVER_GRACE_S)
        connected()  # raises BrokerError if the broker went away
        sent = await satellite.resend(self._session, topic=topic, lang=lang)
        log.warning(
            "node %s %s before the final of %s: sent its %d chunk(s) again",
            self.lost_node,
            "had no room" if self.lost_node in self._ready else "stopped",
            self._session,
            sent,
        )


async def _finish(sender: asyncio.Task[None]) -> None:
    """Let a stream's sender publish its end chunk, then make sure it is gone."""
    await asyncio.wait({sender}, timeout=END_GRACE_S)
    if not sender.done():
        await cancel(sender)
