"""The Wyoming STT server inside the node: Home Assistant connects here like to any STT server.

Each connection is a client of one device (named after its Transcribe's
``name``, else the client's address); each ``audio-start`` .. ``audio-stop``
is a :class:`~orac_node.homeassistant.dialog.Dialog`. The wire codec is the
``wyoming`` library's (events are JSON lines with optional binary payloads).

What a client gets wrong is answered with a Wyoming ``error`` event and the
connection stays usable: an event with bad fields, audio in a format the node
does not take, a language no model here decodes. A line that is not JSON at
all is where the library stops reading, so that connection closes; nothing
else is affected. The server starts once the node is ``ready`` and stops
taking connections when it drains; utterances under way are given the
drain's time to finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler

from orac_node.config import NodeConfig
from orac_node.decode.modelpool import ModelPool
from orac_node.homeassistant.advertise import Advertisement
from orac_node.homeassistant.dialog import Dialog, vocabulary
from orac_node.homeassistant.info import node_info
from orac_node.mqtt.listeners import Listeners
from orac_node.pipeline import Pipeline
from orac_node.wire import MAX_RATE, MIN_RATE, AudioFormat, ErrorCode, is_valid_name

log = logging.getLogger(__name__)

SAMPLE_WIDTH = AudioFormat.S16LE.sample_width
"""Bytes per sample the node takes from Wyoming clients (Home Assistant always sends 16-bit)."""
MAX_CHANNELS = 8
"""More channels than any microphone array Home Assistant streams from."""
BAD_EVENT = "bad_event"
"""Wyoming error code for an event the node cannot use (missing or wrong fields, bad order)."""


class WyomingServer:
    """Listens on ``wyoming.uri`` and turns connections into node sessions."""

    def __init__(
        self,
        config: NodeConfig,
        pipeline: Pipeline,
        listeners: Listeners,
        pool: ModelPool,
    ) -> None:
        self.config = config.wyoming
        self._pipeline = pipeline
        self._listeners = listeners
        self._pool = pool
        self._node_id = config.node.id
        self._server: asyncio.Server | None = None
        self._connections: set[WyomingConnection] = set()
        self._advertising: asyncio.Task[Advertisement | None] | None = None
        self.replies: Counter[str] = Counter()  # transcripts and error events sent, by kind

    async def start(self) -> None:
        """Listen; advertise in the background (a tcp:// URI with zeroconf on).

        Registering takes about 1.2 s (mDNS probes the name three times before
        claiming it): the node is ready and serving meanwhile.
        """
        uri = urlparse(self.config.uri)
        if uri.scheme == "unix":
            self._server = await asyncio.start_unix_server(self._connected, Path(uri.path))
        else:
            host, port = uri.hostname or "", uri.port or 0
            self._server = await asyncio.start_server(self._connected, host, port)
        log.info("Wyoming server listening on %s", self.config.uri)
        if uri.scheme == "tcp" and self.config.zeroconf:
            name = self.config.zeroconf_name or f"orac-node-{self._node_id}"
            advertisement = Advertisement(name, uri.hostname or "", self.port)
            self._advertising = asyncio.create_task(_advertise(advertisement), name="zeroconf")

    @property
    def port(self) -> int:
        """The TCP port listened on (the URI's, or the one the system chose for port 0)."""
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def stop_listening(self) -> None:
        """Take no new connections (drain); the open ones go on."""
        advertising, self._advertising = self._advertising, None
        if advertising is not None and (advertisement := await advertising) is not None:
            await advertisement.close()
        if self._server is not None:
            self._server.close()

    async def close(self) -> None:
        """Close every connection (their open utterances end and are finalized)."""
        await self.stop_listening()
        await asyncio.gather(*(c.stop() for c in list(self._connections)))
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._connections)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = WyomingConnection(reader, writer, self)
        self._connections.add(connection)
        try:
            await connection.run()
        except ConnectionError:
            pass  # the client went away; run() already closed what it had open
        finally:
            self._connections.discard(connection)

    # -- what connections need --------------------------------------------------------

    def device_for(self, transcribe: Transcribe | None, client: str) -> str:
        """A connection's device: its Transcribe's name if valid, else prefix-address."""
        if transcribe is not None and transcribe.name and is_valid_name(transcribe.name):
            return transcribe.name
        address = "".join(c if c.isalnum() or c in "._-" else "-" for c in client)
        return f"{self.config.device_prefix}-{address}"[:64]

    def dialog(
        self,
        connection: WyomingConnection,
        transcribe: Transcribe | None,
        device: str,
        start: AudioStart,
    ) -> Dialog:
        """A new utterance of ``connection``, as its latest Transcribe asked."""
        language = transcribe.language if transcribe is not None else None
        return Dialog(
            self._pipeline,
            self._listeners,
            connection.write_event,
            device=device,
            language=language or None,
            rate=start.rate,
            channels=start.channels,
            prompt=vocabulary(transcribe),
        )

    def info(self) -> Event:
        """The ``info`` answer to ``describe``."""
        return node_info(self._pool).event()


class WyomingConnection(AsyncEventHandler):
    """One client: its events in order, its utterances one at a time."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: WyomingServer
    ) -> None:
        super().__init__(reader, writer)
        self._server = server
        peer = writer.get_extra_info("peername")
        self.client = str(peer[0]) if isinstance(peer, tuple) and peer else "local"
        self._transcribe: Transcribe | None = None
        self._dialog: Dialog | None = None
        self._refused_format = False  # audio-start refused: its chunks are dropped until stop
        self._write_lock = asyncio.Lock()  # partials and answers come from two tasks

    async def write_event(self, event: Event) -> None:
        """Send one event whole; a client that is gone is not an error here."""
        if Transcript.is_type(event.type):
            self._server.replies["transcript"] += 1
        elif Error.is_type(event.type):
            self._server.replies[str(event.data.get("code") or "error")] += 1
        async with self._write_lock:
            try:
                await super().write_event(event)
            except (ConnectionError, RuntimeError):
                log.debug("Wyoming client %s gone before %s", self.client, event.type)

    async def handle_event(self, event: Event) -> bool:
        """Answer one event; a bad one gets an ``error`` and the connection goes on."""
        try:
            await self._handle(event)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("bad Wyoming %s event from %s: %s", event.type, self.client, exc)
            await self.write_event(Error(f"bad {event.type} event: {exc!r}", BAD_EVENT).event())
        return True

    async def _handle(self, event: Event) -> None:
        if Describe.is_type(event.type):
            await self.write_event(self._server.info())
        elif Ping.is_type(event.type):
            await self.write_event(Pong(text=Ping.from_event(event).text).event())
        elif Transcribe.is_type(event.type):
            self._transcribe = Transcribe.from_event(event)
        elif AudioStart.is_type(event.type):
            await self._start(AudioStart.from_event(event))
        elif AudioChunk.is_type(event.type):
            await self._chunk(AudioChunk.from_event(event))
        elif AudioStop.is_type(event.type):
            await self._stop()
        else:
            log.debug("ignoring Wyoming %s event from %s", event.type, self.client)

    async def _start(self, start: AudioStart) -> None:
        if self._dialog is not None:  # a new utterance without audio-stop: the old one ends
            await self._dialog.close()
            self._dialog = None
        if (why := _format_problem(start.rate, start.width, start.channels)) is not None:
            self._refused_format = True
            await self.write_event(Error(why, ErrorCode.UNSUPPORTED_FORMAT).event())
            return
        self._refused_format = False
        transcribe = self._transcribe
        device = self._server.device_for(transcribe, self.client)
        self._dialog = self._server.dialog(self, transcribe, device, start)

    async def _chunk(self, chunk: AudioChunk) -> None:
        if self._refused_format:
            return  # told at audio-start
        if self._dialog is None:  # audio without audio-start: start with the chunk's format
            await self._start(AudioStart(chunk.rate, chunk.width, chunk.channels))
            if self._dialog is None:
                return
        await self._dialog.feed(chunk.audio)

    async def _stop(self) -> None:
        dialog, self._dialog = self._dialog, None
        self._transcribe = None  # Home Assistant sends one before each utterance
        if self._refused_format:
            self._refused_format = False
            return  # told at audio-start
        if dialog is None:
            await self.write_event(Error("audio-stop without audio-start", BAD_EVENT).event())
            return
        await dialog.finish()

    async def disconnect(self) -> None:
        """The client closed the connection (or vanished): an open utterance ends now."""
        dialog, self._dialog = self._dialog, None
        if dialog is not None:
            await dialog.close()


async def _advertise(advertisement: Advertisement) -> Advertisement | None:
    """Register ``advertisement``; None if this network cannot carry it."""
    try:
        await advertisement.start()
    except OSError as exc:  # no multicast here: serving matters more than being found
        log.warning("zeroconf advertisement failed (%s); add the server by address", exc)
        return None
    return advertisement


def _format_problem(rate: int, width: int, channels: int) -> str | None:
    """Why audio in this format is not taken (None: it is)."""
    if width != SAMPLE_WIDTH:
        return f"audio width {width} bytes: the node takes 16-bit audio (width 2)"
    if not MIN_RATE <= rate <= MAX_RATE:
        return f"rate {rate} Hz outside {MIN_RATE}-{MAX_RATE}"
    if not 1 <= channels <= MAX_CHANNELS:
        return f"{channels} channels: 1 to {MAX_CHANNELS} are taken"
    return None
