"""The console's web server and its bridge to the broker.

One aiohttp application: ``/`` is the page, ``/static/`` its script, styles
and vendored libraries, ``/ws`` the WebSocket every open page holds. Over it
the server sends a snapshot of the :class:`~orac_node.console.view.ConsoleView`
and then each event as the broker delivers it; the page sends talk commands
(JSON text) and its microphone's audio (binary).

The bridge is one MQTT connection, as the console's own broker user, that
subscribes to what the page shows and reconnects on its own: a broker restart
shows on the page as "broker: reconnecting" and then resumes with retained
statuses. Each press of the talk button opens its own connection as the same
user, through the SDK (:mod:`~orac_node.console.talk`).

Only pages from the console's own origin may open ``/ws`` (a page elsewhere on
the web could otherwise read a home's transcripts through the visitor's
browser), and with ``console.http_password`` only browsers that logged in.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
from aiohttp import WSMsgType, web

from orac_node.client import Client, connect
from orac_node.config import BrokerUrl, NodeConfig
from orac_node.console.talk import Talk, TalkError, talk_failed
from orac_node.console.view import ConsoleView, Event
from orac_node.errors import BrokerError, ClientError
from orac_node.mqtt.options import BrokerLogin
from orac_node.wire import (
    ERROR_FILTER,
    SATELLITE_STATUS_FILTER,
    STATUS_FILTER,
    TRANSCRIPT_FILTER,
    is_valid_name,
)

log = logging.getLogger(__name__)

SUBSCRIPTIONS = (STATUS_FILTER, SATELLITE_STATUS_FILTER, TRANSCRIPT_FILTER, ERROR_FILTER)
"""What the page shows: node statuses, satellite heartbeats, transcripts, error reports."""
RECONNECT_S = (0.5, 5.0)
"""The bridge's reconnect delay: first, and the cap it doubles up to."""
PAGE_QUEUE = 1000
"""Events waiting to be sent to one page. A page that falls this far behind (a
sleeping laptop's tab) is closed, and reloads with a fresh snapshot, rather than
holding the bridge or the server's memory."""
PING_S = 20.0
"""WebSocket heartbeat: a page whose connection died is noticed within it."""


def static_dir() -> Path:
    """The page's files, installed with the package."""
    return Path(str(resources.files("orac_node.console") / "static"))


def broker_login(config: NodeConfig) -> BrokerLogin:
    """The console's login: the node's broker, as the console's own user."""
    broker, console = config.broker, config.console
    parsed = broker.parsed
    # redacted() writes the URL with the user name and no password, which is this URL.
    url = BrokerUrl(parsed.host, parsed.port, parsed.tls, username=console.username).redacted()
    return BrokerLogin(
        url=url,
        password=console.password.get_secret_value() if console.password else None,
        ca_file=broker.ca_file,
        cert_file=broker.cert_file,
        key_file=broker.key_file,
    )


class _Page:
    """One open page: its WebSocket, its queue of events, its talk if it is talking."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[Event] = asyncio.Queue(PAGE_QUEUE)
        self.talk: Talk | None = None

    def offer(self, event: Event) -> bool:
        """Queue an event; False when the page is too far behind to keep."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True


class ConsoleServer:
    """Serves the console page and bridges the broker to it."""

    def __init__(self, config: NodeConfig) -> None:
        if not is_valid_name(config.console.username):
            raise ValueError(f"console.username {config.console.username!r} is not a device name")
        self._config = config
        self._login = broker_login(config)
        self._view = ConsoleView()
        self._pages: set[_Page] = set()
        self._talking: _Page | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.url = ""
        """Where the page is, once :meth:`start` has run."""
        self.listening = asyncio.Event()
        """Set once the page is served (at :attr:`url`)."""
        self.connected = asyncio.Event()
        """Set once the bridge is subscribed (tests and the demo wait for it)."""
        self.page_opened = asyncio.Event()
        """Set once a page has connected (the demo waits for the first)."""

    async def run(self) -> None:
        """Serve until cancelled."""
        await self.start()
        try:
            await self._bridge()
        finally:
            await self.stop()

    async def start(self) -> None:
        """Listen for browsers (the bridge runs in :meth:`run`)."""
        console = self._config.console
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._websocket)
        app.router.add_static("/static/", static_dir(), follow_symlinks=False)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        context = self._tls()
        site = web.TCPSite(self._runner, console.host, console.port, ssl_context=context)
        await site.start()
        port = self._runner.addresses[0][1]  # the port itself when console.port is 0
        wildcard = console.host in ("0.0.0.0", "::")  # noqa: S104 - only to name the URL
        host = "127.0.0.1" if wildcard else console.host
        self.url = f"{'https' if context else 'http'}://{host}:{port}/"
        self.listening.set()
        log.info("console: %s", self.url)
        if not console.loopback and console.http_password is None:
            log.warning("the console is open to the network without console.http_password")
        if not console.loopback and context is None:
            log.warning("without console.tls_cert, browsers elsewhere will not lend the microphone")

    async def stop(self) -> None:
        """Close every page and stop listening."""
        for page in list(self._pages):
            await page.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _tls(self) -> ssl.SSLContext | None:
        console = self._config.console
        if console.tls_cert is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(console.tls_cert, console.tls_key)
        return context

    # --- the bridge ---------------------------------------------------------------

    async def _bridge(self) -> None:
        delay = RECONNECT_S[0]
        while True:
            try:
                async with connect(self._login) as mqtt:
                    for topic in SUBSCRIPTIONS:
                        await mqtt.subscribe(topic, qos=1)
                    delay = RECONNECT_S[0]
                    self._broker(True)
                    async for message in mqtt.messages:
                        payload = message.payload
                        if isinstance(payload, bytes | bytearray):
                            now = time.time()
                            for event in self._view.apply(str(message.topic), payload, now):
                                self._broadcast(event)
            except (aiomqtt.MqttError, OSError, BrokerError, ClientError) as exc:
                if self.connected.is_set() or delay == RECONNECT_S[0]:
                    log.warning("console: no broker (%s); trying again", exc)
                self._broker(False)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_S[1])

    def _broker(self, up: bool) -> None:
        """Tell the pages each time the bridge connects, and once when it loses the broker."""
        if up or self.connected.is_set():
            self._broadcast({"kind": "broker", "connected": up})
        if up:
            self.connected.set()
        else:
            self.connected.clear()

    def _broadcast(self, event: Event) -> None:
        for page in list(self._pages):
            if not page.offer(event):
                log.info("console: a page fell %d events behind; closing it", PAGE_QUEUE)
                self._pages.discard(page)
                self._spawn(page.ws.close(), "console-close-page")

    # --- HTTP ---------------------------------------------------------------------

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """The login (with ``http_password``) and, for ``/ws``, the same-origin check."""
        secret = self._config.console.http_password
        if secret is not None and not _logged_in(request, secret.get_secret_value()):
            return web.Response(
                status=401,
                text="log in to the orac-node console",
                headers={"WWW-Authenticate": 'Basic realm="orac-node console", charset="UTF-8"'},
            )
        if request.path == "/ws" and not _same_origin(request):
            return web.Response(status=403, text="the console's WebSocket is for its own page")
        response = await handler(request)
        response.headers.setdefault("Cache-Control", "no-cache")
        return response

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(static_dir() / "index.html")

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=PING_S, max_msg_size=1 << 20)
        await ws.prepare(request)
        page = _Page(ws)
        page.offer(self._view.snapshot(time.time()))
        page.offer({"kind": "broker", "connected": self.connected.is_set(), "device": self._device})
        self._pages.add(page)
        self.page_opened.set()
        sender = asyncio.create_task(self._send(page), name="console-page")
        try:
            async for message in ws:
                if message.type == WSMsgType.BINARY:
                    self._audio(page, message.data)
                elif message.type == WSMsgType.TEXT:
                    self._command(page, message.data)
        finally:
            self._pages.discard(page)
            if page.talk is not None:
                page.talk.stop()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        return ws

    async def _send(self, page: _Page) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while True:
                await page.ws.send_str(json.dumps(await page.queue.get()))

    @property
    def _device(self) -> str:
        return self._config.console.username

    # --- talk ---------------------------------------------------------------------

    def _command(self, page: _Page, text: str) -> None:
        try:
            command: Any = json.loads(text)
            action = command["talk"] if isinstance(command, dict) else None
        except (ValueError, KeyError):
            action = None
        if action == "start":
            self._start_talk(page, command.get("rate"), command.get("language"))
        elif action == "stop" and page.talk is not None:
            page.talk.stop()
        else:
            page.offer(talk_failed(f"not a command: {text[:80]}"))

    def _start_talk(self, page: _Page, rate: object, language: object) -> None:
        if self._talking is not None:
            page.offer({"kind": "talk", "state": "busy", "error": "another page is talking"})
            return
        lang = language if isinstance(language, str) and language else None

        async def tell(event: Event) -> None:
            page.offer(event)

        client = Client(self._login, device=self._device)
        try:
            talk = Talk(client, tell, rate=rate if isinstance(rate, int) else 0, language=lang)
        except TalkError as exc:
            page.offer(talk_failed(str(exc)))
            return
        page.talk = talk
        self._talking = page

        async def run() -> None:
            try:
                async with client:
                    await talk.run()
            except (aiomqtt.MqttError, OSError, BrokerError, ClientError) as exc:
                log.warning("console talk %s: %s", talk.session, exc)
                await tell(talk_failed(str(exc), talk.session))
            finally:
                page.talk = None
                self._talking = None

        self._spawn(run(), f"console-talk-{talk.session}")

    def _spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        """Run ``work`` on its own, held until it ends (the loop keeps only weak references)."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _audio(self, page: _Page, data: bytes) -> None:
        if page.talk is None:
            return  # blocks still in flight after the final: nothing to add them to
        try:
            page.talk.feed(data)
        except TalkError as exc:
            page.talk.stop()
            page.offer(talk_failed(str(exc)))


def _logged_in(request: web.Request, password: str) -> bool:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return False
    try:
        _, _, given = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(given.encode(), password.encode())


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host
