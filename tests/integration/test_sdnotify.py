"""A real node under a stand-in for systemd's notify socket: READY, WATCHDOG, STOPPING.

The test binds the AF_UNIX datagram socket systemd would, starts the real
entry point with ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` pointing at it, and
reads what arrives, as systemd would.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from orac_node.client import connect
from orac_node.ops.localbroker import LocalBroker
from orac_node.wire import ErrorCode, ErrorReport, error_topic
from tests.conftest import MODEL
from tests.integration.harness import RunningNode, start_node

WATCHDOG_USEC = 1_000_000
"""1 s: pings every 0.5 s, so a few seconds show many of them."""
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


class NotifySocket:
    """The receiving end of sd_notify(3): every datagram, with its arrival time.

    On ``READY=1`` it also copies the node's log at that instant, so the test
    can say what the node had done by the time it declared itself ready.
    """

    def __init__(self, path: Path, log_path: Path) -> None:
        self.path = path
        self._log_path = log_path
        self.messages: list[tuple[float, bytes]] = []
        self.log_at_ready = ""
        self._arrived = asyncio.Condition()

    @asynccontextmanager
    async def listening(self) -> AsyncIterator[NotifySocket]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(self.path))
            sock.setblocking(False)
            task = asyncio.create_task(self._receive(sock))
            try:
                yield self
            finally:
                task.cancel()

    async def _receive(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(sock, 4096)
            if data == b"READY=1":
                self.log_at_ready = self._log_path.read_text(errors="replace")
            async with self._arrived:
                self.messages.append((time.monotonic(), data))
                self._arrived.notify_all()

    async def wait_for(self, prefix: bytes, timeout: float) -> float:
        """Arrival time of the first message starting with ``prefix``."""

        def first() -> float | None:
            return next((t for t, m in self.messages if m.startswith(prefix)), None)

        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: first() is not None)
        arrived = first()
        assert arrived is not None
        return arrived

    def texts(self) -> list[bytes]:
        """Every message but the watchdog pings, in arrival order."""
        return [m for _, m in self.messages if m != b"WATCHDOG=1"]


async def test_node_reports_ready_pings_the_watchdog_and_says_stopping(
    broker: LocalBroker, tmp_path: Path
) -> None:
    node_id = "test-sdnotify"
    device = f"dev-{uuid.uuid4().hex[:8]}"
    workdir = tmp_path / "node"
    notify = NotifySocket(tmp_path / "notify", workdir / "node.log")
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    async with notify.listening():
        async with connect(broker.url) as mqtt:
            await mqtt.subscribe(error_topic(device), qos=1)
            starting = asyncio.create_task(
                asyncio.to_thread(start_node, broker.url, workdir, MODEL, node_id, {}, env=env)
            )
            ready = asyncio.create_task(notify.wait_for(b"READY=1", START_TIMEOUT_S))
            await asyncio.wait((starting, ready), return_when=asyncio.FIRST_COMPLETED)
            if starting.done() and starting.exception() is not None:
                ready.cancel()
                await starting  # the node died: raise with its log
            await ready

            # READY=1 came after the model loaded and after the node declared itself
            # ready, which it does only once the broker acknowledged its subscriptions...
            assert "model ready in" in notify.log_at_ready
            assert f"node {node_id} is ready" in notify.log_at_ready
            # ...so audio sent the moment READY=1 arrives is already heard and answered.
            await mqtt.publish(f"audio/{device}/chunk", b"\xc1 not msgpack", qos=1)
            async with asyncio.timeout(10):
                message = await anext(aiter(mqtt.messages))
            assert isinstance(message.payload, bytes)
            assert ErrorReport.decode(message.payload).code == ErrorCode.BAD_PAYLOAD

            # The retained "ready" status is on the broker too (start_node waits for it).
            node: RunningNode = await starting

        try:
            texts = notify.texts()
            assert texts[0].startswith(b"STATUS=starting")
            assert texts.count(b"READY=1") == 1
            assert any(t.startswith(b"STATUS=ready") for t in texts[: texts.index(b"READY=1")])

            watch_from = time.monotonic()
            await asyncio.sleep(2.5)
            pings = [t for t, m in notify.messages if m == b"WATCHDOG=1" and t >= watch_from]
            assert len(pings) >= 3, f"{len(pings)} watchdog pings in 2.5 s at a 0.5 s interval"

            node.process.send_signal(signal.SIGTERM)
            stopping_at = await notify.wait_for(b"STOPPING=1", STOP_TIMEOUT_S)
            assert await asyncio.to_thread(node.stop) == 0
            offline = [m for t, m in notify.messages if t >= stopping_at]
            assert any(m.startswith(b"STATUS=offline") for m in offline), offline
        finally:
            node.stop(signal.SIGKILL)
