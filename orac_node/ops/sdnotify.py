"""Telling systemd how the node is doing: readiness, status, stopping, watchdog pings.

This is the sd_notify(3) protocol: one datagram of newline-separated
``KEY=value`` lines (``READY=1``, ``STATUS=...``, ``STOPPING=1``,
``WATCHDOG=1``) sent to the AF_UNIX socket named in ``$NOTIFY_SOCKET``, where a
leading ``@`` means Linux's abstract namespace. The protocol is this small, so
it is spoken here with the standard library: the PyPI ``sdnotify`` package has
been unmaintained since 2017, and the ``systemd-python`` bindings need
libsystemd headers to build; neither buys anything over these few lines.

Without ``$NOTIFY_SOCKET`` (a shell, CI, any supervisor but systemd) every call
is a no-op, so the node behaves the same everywhere else.

The watchdog pings come from :meth:`Notifier.watchdog`, a task on the node's
own event loop, every half ``$WATCHDOG_USEC`` (sd_watchdog_enabled(3)'s
advice). That is the point of it: a thread would go on pinging while the loop
is wedged; a task stops with the loop, and systemd kills and restarts the node.
Pings begin with ``READY=1``: start-up is bounded by ``TimeoutStartSec``
instead, and may hold the loop longer than the watchdog allows (replaying a
large spool), which an early ping would turn into a kill-and-restart loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)

PINGS_PER_TIMEOUT = 2
"""Pings per watchdog timeout: every WATCHDOG_USEC / 2, as sd_watchdog_enabled(3)
recommends, so one late ping does not get the node killed."""


def watchdog_timeout_s(environ: Mapping[str, str], pid: int) -> float | None:
    """The watchdog timeout systemd set for this process, or ``None`` when there is none.

    ``$WATCHDOG_PID``, when set, names the process the watchdog is meant for; a
    child that inherited the variables (say, a wrapper's) must not ping for it.
    """
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner and owner != str(pid):
        return None
    return usec / 1_000_000


class Notifier:
    """The process's line to systemd; every method is a no-op without a socket."""

    def __init__(self, address: str | None = None, *, watchdog_s: float | None = None) -> None:
        # Python spells an abstract-namespace address with a leading NUL.
        self._address = "\0" + address[1:] if address and address[0] == "@" else address
        self.watchdog_interval_s = watchdog_s / PINGS_PER_TIMEOUT if watchdog_s else None
        self._warned = False
        self._ready = asyncio.Event()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd asked for through ``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC``."""
        env = os.environ if environ is None else environ
        return cls(
            env.get("NOTIFY_SOCKET") or None, watchdog_s=watchdog_timeout_s(env, os.getpid())
        )

    @property
    def enabled(self) -> bool:
        """Whether anyone is listening (``$NOTIFY_SOCKET`` was set)."""
        return self._address is not None

    def notify(self, *fields: str) -> None:
        """Send one datagram of ``KEY=value`` fields; failures are logged once, never raised.

        The socket is non-blocking: a full receive queue at systemd's end drops
        this message rather than stalling the event loop it is sent from.
        """
        if self._address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            if not self._warned:  # every 15 s for the life of the node would be noise
                self._warned = True
                log.warning("cannot notify systemd at %s: %s", self._address, exc)

    def ready(self) -> None:
        """Start-up is complete: systemd moves the unit to active and starts its watchdog."""
        self.notify("READY=1")
        self._ready.set()

    def status(self, text: str) -> None:
        """One line for ``systemctl status``."""
        self.notify(f"STATUS={' '.join(text.splitlines())}")

    def stopping(self, text: str) -> None:
        """Shutdown has begun (draining); the stop timeout now applies."""
        self.notify("STOPPING=1", f"STATUS={' '.join(text.splitlines())}")

    async def watchdog(self) -> None:
        """Ping systemd from this event loop from :meth:`ready` on, for as long as it runs.

        Returns at once when systemd asked for no watchdog.
        """
        if self._address is None or self.watchdog_interval_s is None:
            return
        await self._ready.wait()
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval_s)
