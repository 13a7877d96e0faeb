"""Webhook delivery: each final with text POSTed to its topic's receivers, at least once.

The flow: :meth:`WebhookDelivery.submit` writes one outbox row per (event, receiver)
to SQLite before it returns, so a final handed to a webhook survives a receiver that
is down and a node that restarts. :meth:`WebhookDelivery.run` picks rows that are
due, checks the destination against ``webhooks.allow``, and POSTs the JSON body with
one pooled ``httpx.AsyncClient``. A 2xx deletes the row; a timeout, connection error,
408, 429 or 5xx reschedules it with capped, jittered exponential backoff; any other
answer, a refused destination, or ``max_attempts`` failures move it to the dead
letters. A receiver can therefore see an event twice (a 2xx lost on the way back):
``X-Orac-Event-Id`` is the same on every attempt, so receivers deduplicate on it.

Order: rows are tried oldest-due first, up to :data:`MAX_IN_FLIGHT_PER_ORIGIN` at a
time per receiver, and retries go back by their backoff, so a receiver can see
events out of order; each body carries its ``timestamp``. docs/WEBHOOKS.md is the
receiver's side: headers, :func:`verify`, retries and the allowlist.

SQLite runs on the event loop: every statement here is one small indexed write or
read, and with WAL and ``synchronous=NORMAL`` a commit does not wait for the disk
(an fsync happens only at checkpoints). A process crash loses nothing committed; a
power cut can lose what was committed since the last checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import random
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx

from orac_node import __version__
from orac_node.allowlist import Allowlist, IPAddress
from orac_node.config import WebhooksSection, WebhookTarget
from orac_node.contract import WEBHOOK_EVENT, TranscriptionEvent
from orac_node.errors import ConfigError
from orac_node.signing import (
    ATTEMPT_HEADER,
    EVENT_HEADER,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    sign,
)

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 16
"""POSTs at once, all receivers together: a few finals per second at most need far
fewer, and the bound keeps a flood of queued retries from opening hundreds of sockets."""
MAX_IN_FLIGHT_PER_ORIGIN = 4
"""POSTs at once to one receiver (scheme, host, port): a receiver that hangs until the
timeout holds at most 4 of the 16 slots, so the others keep delivering at full speed."""
DEAD_LETTERS_KEPT = 10_000
"""Newest dead letters kept (about 5 MB of bodies): enough to look back over a long
outage of a busy receiver, bounded so a receiver gone for good cannot fill the disk."""
RESPONSE_READ_LIMIT = 64 * 1024
"""Bytes of a response read: small answers are read whole so the connection can be
reused; a receiver that streams more gets its connection closed."""
ERROR_EXCERPT = 200
"""Characters of a refusing receiver's answer kept in the dead letter (not logged: a
receiver may echo the transcript back)."""
DB_NAME = "outbox.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, url TEXT NOT NULL,
    origin TEXT NOT NULL, secret TEXT, body BLOB NOT NULL, attempts INTEGER NOT NULL,
    created_at REAL NOT NULL, next_at REAL NOT NULL, last_error TEXT);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, url TEXT NOT NULL,
    attempts INTEGER NOT NULL, last_error TEXT NOT NULL, created_at REAL NOT NULL,
    dead_at REAL NOT NULL, body BLOB NOT NULL);
"""


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a receiver never accepted; kept for inspection, never retried."""

    event_id: str
    url: str
    attempts: int
    last_error: str
    created_at: float
    dead_at: float
    body: bytes


def backoff_delay(
    attempts: int,
    initial_s: float,
    max_s: float,
    *,
    retry_after_s: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds before the next attempt, after ``attempts`` failed ones (1, 2, ...).

    The ceiling doubles from ``initial_s`` up to ``max_s``; the delay is drawn between
    half the ceiling and the ceiling so receivers' retries after an outage spread out
    instead of arriving in one burst. A receiver's ``Retry-After`` is honoured up to
    ``max_s``: it lengthens the wait, never shortens it.
    """
    ceiling = min(max_s, initial_s * 2.0 ** max(0, attempts - 1))
    delay = ceiling * (0.5 + 0.5 * rand())
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, max_s))
    return delay


def parse_retry_after(value: str | None) -> float | None:
    """A numeric ``Retry-After`` in seconds; the HTTP-date form is ignored (None)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


def _origin(url: str) -> str | None:
    """``scheme://host:port`` of a URL, the unit of per-receiver concurrency; None if bad."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{parsed.scheme}://{parsed.host}:{port}"


def _shown(url: str) -> str:
    """A URL for logs: no query string or fragment, where receivers put tokens."""
    return url.split("?", 1)[0].split("#", 1)[0]


@dataclasses.dataclass(frozen=True, slots=True)
class _Row:
    id: int
    event_id: str
    url: str
    origin: str
    secret: str | None
    body: bytes
    attempts: int
    created_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class _Outcome:
    ok: bool = False
    retry: bool = False
    sent: bool = True  # False: refused before any byte went out (not an attempt)
    unreachable: bool = False  # no HTTP answer at all: the receiver looks down
    error: str = ""  # for logs
    detail: str = ""  # the receiver's answer, for the dead letter only
    retry_after_s: float | None = None


_ROW_COLUMNS = "id, event_id, url, origin, secret, body, attempts, created_at"


class WebhookDelivery:
    """The outbox of webhook deliveries and the loop that drains it (module docstring).

    Counters (read by the metrics collector): ``delivered`` events accepted with a
    2xx; ``failed_attempts`` POSTs that did not get one; ``retries`` attempts
    rescheduled; ``dead`` rows dead-lettered (refused, failed ``max_attempts`` times, or
    dropped as the oldest of a full outbox); ``lost`` rows that could not be written to
    the outbox at all (disk errors, logged).
    """

    def __init__(
        self,
        settings: WebhooksSection,
        state_dir: Path,
        *,
        user_agent: str = f"orac-node/{__version__}",
    ) -> None:
        self._settings = settings
        try:
            self._allow = Allowlist.parse(settings.allow)
        except ValueError as exc:
            raise ConfigError(f"webhooks.allow: {exc}") from None
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = state_dir / DB_NAME
        # The outbox holds receivers' secrets (retries after a restart must be signed):
        # readable by the node's user only. SQLite gives -wal/-shm the same mode.
        path.touch(mode=0o600, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._queued: int = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        # Redirects are not followed (a redirect could lead past the allowlist) and the
        # environment's proxy settings are ignored (the allowlist checks where a POST
        # really goes).
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout_s),
            limits=httpx.Limits(
                max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT
            ),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": user_agent},
        )
        self._wakeup = asyncio.Event()
        self._in_flight: dict[int, str] = {}  # row id -> origin
        self._down: set[str] = set()  # origins whose last attempt got no answer
        self._closed = False
        self.delivered = 0
        self.failed_attempts = 0
        self.retries = 0
        self.dead = 0
        self.lost = 0

    @property
    def queued(self) -> int:
        """Rows in the outbox (waiting or in flight)."""
        return self._queued

    def submit(self, event: TranscriptionEvent, targets: Sequence[WebhookTarget]) -> None:
        """Queue ``event`` for each target; the rows are on disk when this returns.

        Raises nothing for a target or the disk: a target whose URL cannot be used is
        dead-lettered at once, and an outbox that cannot be written is logged and
        counted in ``lost``, because webhooks must not stop the node publishing
        transcripts.
        """
        if not targets:
            return
        body, now = event.encode(), time.time()
        dead_before = self.dead
        try:
            with self._transaction():
                for target in targets:
                    origin = _origin(target.url)
                    if origin is None:
                        reason = "invalid webhook url"
                        letter = DeadLetter(event.id, str(target.url), 0, reason, now, now, body)
                        self._insert_dead(letter)
                        shown = _shown(str(target.url))
                        log.warning("webhook %s to %s dead-lettered: %s", event.id, shown, reason)
                        continue
                    self._db.execute(
                        "INSERT INTO outbox (event_id, url, origin, secret, body, attempts,"
                        " created_at, next_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
                        (event.id, target.url, origin, target.secret, body, now, now),
                    )
                    self._queued += 1
                self._trim(now)
        except sqlite3.Error:
            self._queued, self.dead = self._db_count(), dead_before
            self.lost += len(targets)
            log.exception("webhook outbox write failed: event %s lost", event.id)
            return
        self._wakeup.set()

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters, newest first."""
        rows = self._db.execute(
            "SELECT event_id, url, attempts, last_error, created_at, dead_at, body"
            " FROM dead_letters ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [DeadLetter(*row) for row in rows]

    async def run(self) -> None:
        """Deliver until cancelled, starting with rows an earlier process left behind.

        An outbox that can no longer be written (``sqlite3.Error``) ends it: retrying
        without recording attempts would POST the same rows in a tight loop.
        """
        async with asyncio.TaskGroup() as deliveries:
            while True:
                self._wakeup.clear()
                for row in self._due_rows():
                    self._in_flight[row.id] = row.origin
                    deliveries.create_task(self._deliver(row), name=f"webhook-{row.id}")
                delay = self._until_next_due()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), delay)

    async def close(self) -> None:
        """Close the HTTP client and the database (after ``run`` has been cancelled)."""
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()
        self._db.close()

    # -- the outbox -------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            # Also after a failed COMMIT (disk full), which can leave the transaction
            # open and every later BEGIN failing.
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise

    def _db_count(self) -> int:
        with contextlib.suppress(sqlite3.Error):
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        return self._queued

    def _trim(self, now: float) -> None:
        """Dead-letter the oldest rows beyond ``outbox_max`` (rows in flight excepted)."""
        excess = self._queued - self._settings.outbox_max
        if excess <= 0:
            return
        ids = tuple(self._in_flight)
        rows = self._db.execute(
            f"SELECT {_ROW_COLUMNS} FROM outbox WHERE id NOT IN ({_marks(ids)})"  # noqa: S608
            " ORDER BY id LIMIT ?",
            (*ids, excess),
        ).fetchall()
        for values in rows:
            row = _Row(*values)
            self._bury(row, f"outbox full ({self._settings.outbox_max} events)", row.attempts, now)

    def _bury(
        self, row: _Row, reason: str, attempts: int, now: float, *, logged: str | None = None
    ) -> None:
        """Move a row to the dead letters (inside the caller's transaction).

        ``logged`` replaces ``reason`` in the log line when the reason quotes the
        receiver's answer, which may echo the transcript.
        """
        self._db.execute("DELETE FROM outbox WHERE id = ?", (row.id,))
        self._queued -= 1
        self._insert_dead(
            DeadLetter(row.event_id, row.url, attempts, reason, row.created_at, now, row.body)
        )
        log.warning(
            "webhook %s to %s dead-lettered after %d attempts: %s",
            row.event_id,
            _shown(row.url),
            attempts,
            reason if logged is None else logged,
        )

    def _insert_dead(self, letter: DeadLetter) -> None:
        self._db.execute(
            "INSERT INTO dead_letters (event_id, url, attempts, last_error, created_at,"
            " dead_at, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
            dataclasses.astuple(letter),
        )
        self._db.execute(
            "DELETE FROM dead_letters WHERE id <= (SELECT MAX(id) FROM dead_letters) - ?",
            (DEAD_LETTERS_KEPT,),
        )
        self.dead += 1

    def _per_origin(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for origin in self._in_flight.values():
            counts[origin] = counts.get(origin, 0) + 1
        return counts

    def _due_rows(self) -> list[_Row]:
        """Rows to start now: due, not in flight, within both concurrency bounds."""
        chosen: list[_Row] = []
        free = MAX_IN_FLIGHT - len(self._in_flight)
        per_origin = self._per_origin()
        while free > 0:
            ids = (*self._in_flight, *(row.id for row in chosen))
            busy = tuple(o for o, n in per_origin.items() if n >= MAX_IN_FLIGHT_PER_ORIGIN)
            rows = self._db.execute(
                f"SELECT {_ROW_COLUMNS} FROM outbox WHERE next_at <= ?"  # noqa: S608
                f" AND id NOT IN ({_marks(ids)}) AND origin NOT IN ({_marks(busy)})"
                " ORDER BY next_at, id LIMIT ?",
                (time.time(), *ids, *busy, free),
            ).fetchall()
            added = 0
            for values in rows:
                row = _Row(*values)
                if per_origin.get(row.origin, 0) < MAX_IN_FLIGHT_PER_ORIGIN and free > 0:
                    chosen.append(row)
                    per_origin[row.origin] = per_origin.get(row.origin, 0) + 1
                    free -= 1
                    added += 1
            if added == 0:
                break
        return chosen

    def _until_next_due(self) -> float | None:
        """Seconds until a row not in flight is due; None: wait for a wake-up."""
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            return None  # due rows wait for a free slot: a finishing delivery wakes us
        ids = tuple(self._in_flight)
        busy = tuple(o for o, n in self._per_origin().items() if n >= MAX_IN_FLIGHT_PER_ORIGIN)
        (next_at,) = self._db.execute(
            f"SELECT MIN(next_at) FROM outbox WHERE id NOT IN ({_marks(ids)})"  # noqa: S608
            f" AND origin NOT IN ({_marks(busy)})",
            (*ids, *busy),
        ).fetchone()
        return None if next_at is None else max(0.0, next_at - time.time())

    # -- one attempt --------------------------------------------------------------------

    async def _deliver(self, row: _Row) -> None:
        try:
            outcome = await self._attempt(row)
            self._settle(row, outcome)
        finally:
            del self._in_flight[row.id]
            self._wakeup.set()

    async def _attempt(self, row: _Row) -> _Outcome:
        """POST one row once; every way it can end becomes an :class:`_Outcome`."""
        url = httpx.URL(row.url)
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: WEBHOOK_EVENT,
            EVENT_ID_HEADER: row.event_id,
            ATTEMPT_HEADER: str(row.attempts + 1),
        }
        if row.secret:
            headers[SIGNATURE_HEADER] = sign(row.secret, row.body, int(time.time()))
        timeout = self._settings.timeout_s
        try:
            # One deadline for resolving, connecting, sending and reading the answer:
            # httpx's own timeouts apply per phase, so a receiver that trickles bytes
            # could otherwise hold a slot for ever.
            async with asyncio.timeout(timeout):
                addresses = await _resolve(host, port)
                refusal = self._allow.refusal(host, addresses)
                if refusal is not None:
                    return _Outcome(sent=False, error=refusal)
                response, answer = await self._post(url, addresses, row.body, headers)
        except TimeoutError:
            return _Outcome(retry=True, unreachable=True, error=f"no answer in {timeout:g} s")
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
            return _Outcome(error=_describe(exc))
        except (httpx.TransportError, OSError) as exc:
            return _Outcome(retry=True, unreachable=True, error=_describe(exc))
        return _judge(response.status_code, response.headers.get("Retry-After"), answer)

    async def _post(
        self, url: httpx.URL, addresses: Sequence[IPAddress], body: bytes, headers: dict[str, str]
    ) -> tuple[httpx.Response, bytes]:
        """POST to the addresses just checked, in the resolver's order.

        Plain HTTP connects to a checked address, not to the name again: a second
        lookup could be pointed elsewhere by the name's owner (DNS rebinding). An
        address that refuses the connection (nothing sent yet) passes to the next, as
        any client falls back from IPv6 to IPv4. HTTPS connects by name: its
        certificate must match the name, which a rebound address cannot present.
        """
        targets = [url]
        if url.scheme == "http":
            headers = {**headers, "Host": url.netloc.decode("ascii")}
            targets = [url.copy_with(host=str(address)) for address in addresses]
        for index, target in enumerate(targets):
            try:
                request = self._client.stream("POST", target, content=body, headers=headers)
                async with request as response:
                    return response, await _read_limited(response)
            except httpx.ConnectError:
                if index == len(targets) - 1:
                    raise
        raise AssertionError("unreachable: the last target returns or raises")

    def _settle(self, row: _Row, outcome: _Outcome) -> None:
        """Record an attempt's outcome: delete, reschedule or dead-letter the row."""
        now = time.time()
        if outcome.ok:
            with self._transaction():
                self._db.execute("DELETE FROM outbox WHERE id = ?", (row.id,))
                if row.origin in self._down:
                    # The receiver is back: what waited out its outage goes now, not
                    # after each row's remaining backoff.
                    self._db.execute(
                        "UPDATE outbox SET next_at = ? WHERE origin = ? AND next_at > ?",
                        (now, row.origin, now),
                    )
            self._queued -= 1
            self.delivered += 1
            if row.origin in self._down:
                self._down.discard(row.origin)
                log.info("webhook receiver %s is answering again", row.origin)
            log.debug("webhook %s delivered to %s", row.event_id, _shown(row.url))
            return
        attempts = row.attempts + (1 if outcome.sent else 0)
        if outcome.sent:
            self.failed_attempts += 1
        if outcome.unreachable and row.origin not in self._down:
            self._down.add(row.origin)
            log.warning(
                "webhook receiver %s not answering (%s); retrying", row.origin, outcome.error
            )
        reason = f"{outcome.error}: {outcome.detail}" if outcome.detail else outcome.error
        if outcome.retry and attempts < self._settings.max_attempts:
            delay = backoff_delay(
                attempts,
                self._settings.backoff_initial_s,
                self._settings.backoff_max_s,
                retry_after_s=outcome.retry_after_s,
            )
            with self._transaction():
                self._db.execute(
                    "UPDATE outbox SET attempts = ?, next_at = ?, last_error = ? WHERE id = ?",
                    (attempts, now + delay, reason, row.id),
                )
            self.retries += 1
            log.debug(
                "webhook %s to %s: %s; attempt %d in %.2f s",
                row.event_id,
                _shown(row.url),
                outcome.error,
                attempts + 1,
                delay,
            )
            return
        with self._transaction():
            self._bury(row, reason, attempts, now, logged=outcome.error)


async def _resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in the resolver's order, without duplicates."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]))
        if address not in addresses:
            addresses.append(address)
    return addresses


async def _read_limited(response: httpx.Response) -> bytes:
    answer = b""
    async for chunk in response.aiter_raw():
        answer += chunk
        if len(answer) >= RESPONSE_READ_LIMIT:
            break
    return answer


def _judge(status: int, retry_after: str | None, answer: bytes) -> _Outcome:
    """What an HTTP status means for the row (module docstring)."""
    if 200 <= status < 300:
        return _Outcome(ok=True)
    detail = " ".join(answer[: ERROR_EXCERPT * 4].decode("utf-8", "replace").split())
    detail = detail[:ERROR_EXCERPT]
    if status in (408, 429) or status >= 500:
        return _Outcome(
            retry=True,
            error=f"HTTP {status}",
            detail=detail,
            retry_after_s=parse_retry_after(retry_after),
        )
    note = " (redirects are not followed)" if 300 <= status < 400 else ""
    return _Outcome(error=f"HTTP {status}{note}", detail=detail)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _marks(values: Sequence[object]) -> str:
    """SQL placeholders for ``NOT IN (...)``.

    For none, a value no id or origin equals: ``x NOT IN (NULL)`` would never be true.
    """
    return ", ".join("?" * len(values)) if values else "''"
