"""sd_notify: real datagrams on a real AF_UNIX socket; pings come from the event loop."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from orac_node.ops.sdnotify import Notifier, watchdog_timeout_s

WAIT_S = 5.0
"""Generous bound for a datagram already sent to arrive (it is there at once)."""


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[socket.socket]:
    """What systemd would bind: a datagram socket at a path."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(WAIT_S)
        yield sock


def _pending(sock: socket.socket) -> list[bytes]:
    """Every datagram already queued on the socket, without waiting for more."""
    received = []
    sock.setblocking(False)
    try:
        while True:
            received.append(sock.recv(4096))
    except BlockingIOError:
        return received
    finally:
        sock.settimeout(WAIT_S)


def test_messages_reach_the_socket(listener: socket.socket) -> None:
    notifier = Notifier(listener.getsockname())
    assert notifier.enabled
    notifier.status("starting: 0 open session(s)")
    notifier.ready()
    notifier.stopping("draining\nsecond line")
    assert listener.recv(4096) == b"STATUS=starting: 0 open session(s)"
    assert listener.recv(4096) == b"READY=1"
    # One datagram; a newline inside STATUS would start a bogus field.
    assert listener.recv(4096) == b"STOPPING=1\nSTATUS=draining second line"


def test_abstract_namespace_address() -> None:
    name = f"orac-node-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(WAIT_S)
        Notifier.from_env({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(4096) == b"READY=1"


async def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = Notifier.from_env({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    notifier.ready()
    notifier.status("x")
    notifier.stopping("x")
    async with asyncio.timeout(WAIT_S):
        await notifier.watchdog()  # returns at once instead of pinging nobody


def test_a_vanished_socket_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    notifier.ready()
    notifier.ready()
    warnings = [r for r in caplog.records if "cannot notify systemd" in r.getMessage()]
    assert len(warnings) == 1  # once, not every ping


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}, 1.0),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_timeout_from_the_environment(
    environ: dict[str, str], expected: float | None
) -> None:
    assert watchdog_timeout_s(environ, os.getpid()) == expected


async def test_watchdog_pings_at_half_the_timeout_from_ready_on(listener: socket.socket) -> None:
    env = {"NOTIFY_SOCKET": listener.getsockname(), "WATCHDOG_USEC": "200000"}
    notifier = Notifier.from_env(env)
    assert notifier.watchdog_interval_s == pytest.approx(0.1)
    task = asyncio.create_task(notifier.watchdog())
    try:
        await asyncio.sleep(0.3)  # three intervals of start-up: no pings yet
        assert _pending(listener) == []
        notifier.ready()
        messages = [await asyncio.to_thread(listener.recv, 4096) for _ in range(4)]
    finally:
        task.cancel()
    assert messages == [b"READY=1"] + [b"WATCHDOG=1"] * 3


async def test_a_blocked_event_loop_sends_no_pings(listener: socket.socket) -> None:
    """The watchdog's whole point: while the loop is stuck, systemd hears nothing.

    A coroutine on the same loop blocks it (time.sleep) for 10 ping intervals.
    Datagrams land in the socket's queue the moment they are sent, so whatever
    is queued right after the block was sent during it: there must be nothing.
    A pinging thread would have queued about ten.
    """
    interval_s = 0.05
    notifier = Notifier(listener.getsockname(), watchdog_s=2 * interval_s)
    notifier.ready()
    task = asyncio.create_task(notifier.watchdog())
    try:
        await asyncio.sleep(5 * interval_s)
        assert _pending(listener), "no pings while the loop ran"
        time.sleep(10 * interval_s)  # noqa: ASYNC251 - the wedge under test
        assert _pending(listener) == []
        await asyncio.sleep(5 * interval_s)
        assert _pending(listener), "pings did not resume with the loop"
    finally:
        task.cancel()
