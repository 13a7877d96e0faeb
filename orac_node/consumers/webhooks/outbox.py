"""The webhook outbox: deliveries still owed, and dead letters, in SQLite.

One row per (event, receiver), written before :meth:`WebhookDelivery.submit`
returns, so a final handed to a webhook survives a receiver that is down and a
node that restarts. The delivery loop (delivery.py) claims due rows, and
settles each attempt here: delete, reschedule or bury.

SQLite runs on the event loop: every statement here is one small indexed write or
read, and with WAL and ``synchronous=NORMAL`` a commit does not wait for the disk
(an fsync happens only at checkpoints). A process crash loses nothing committed; a
power cut can lose what was committed since the last checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

log = logging.getLogger("orac_node.consumers.webhooks")

MAX_IN_FLIGHT = 16
"""POSTs at once, all receivers together: a few finals per second at most need far
fewer, and the bound keeps a flood of queued retries from opening hundreds of sockets."""
MAX_IN_FLIGHT_PER_ORIGIN = 4
"""POSTs at once to one receiver (scheme, host, port): a receiver that hangs until the
timeout holds at most 4 of the 16 slots, so the others keep delivering at full speed."""
DEAD_LETTERS_KEPT = 10_000
"""Newest dead letters kept (about 5 MB of bodies): enough to look back over a long
outage of a busy receiver, bounded so a receiver gone for good cannot fill the disk."""
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
_ROW_COLUMNS = "id, event_id, url, origin, secret, body, attempts, created_at"


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


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One delivery owed: an event's body for one receiver."""

    id: int
    event_id: str
    url: str
    origin: str
    secret: str | None
    body: bytes
    attempts: int
    created_at: float


def shown(url: str) -> str:
    """A URL for logs: no query string or fragment, where receivers put tokens."""
    return url.split("?", 1)[0].split("#", 1)[0]


class Outbox:
    """The rows owed and the dead letters of one node, with the rows in flight.

    ``queued`` counts rows in the outbox (waiting or in flight); ``dead`` counts
    rows dead-lettered since start (refused, failed too often, or the oldest of
    a full outbox).
    """

    def __init__(self, state_dir: Path, *, max_rows: int) -> None:
        self._max_rows = max_rows
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = state_dir / DB_NAME
        # The outbox holds receivers' secrets (retries after a restart must be signed):
        # readable by the node's user only. SQLite gives -wal/-shm the same mode.
        path.touch(mode=0o600, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self.queued: int = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        self.in_flight: dict[int, str] = {}  # row id -> origin
        self.dead = 0

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic change; rolled back (and re-raised) when anything in it fails."""
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

    def recount(self) -> None:
        """Re-read ``queued`` from the table (after a write failed half-way)."""
        with contextlib.suppress(sqlite3.Error):
            self.queued = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    # -- writing (inside a transaction) ---------------------------------------------

    def add(self, event_id: str, url: str, origin: str, secret: str | None, body: bytes) -> None:
        """A delivery owed from now on."""
        now = time.time()
        self._db.execute(
            "INSERT INTO outbox (event_id, url, origin, secret, body, attempts,"
            " created_at, next_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
            (event_id, url, origin, secret, body, now, now),
        )
        self.queued += 1

    def trim(self, now: float) -> None:
        """Dead-letter the oldest rows beyond the bound (rows in flight excepted)."""
        excess = self.queued - self._max_rows
        if excess <= 0:
            return
        ids = tuple(self.in_flight)
        rows = self._db.execute(
            f"SELECT {_ROW_COLUMNS} FROM outbox WHERE id NOT IN ({_marks(ids)})"  # noqa: S608
            " ORDER BY id LIMIT ?",
            (*ids, excess),
        ).fetchall()
        for values in rows:
            row = Row(*values)
            self.bury(row, f"outbox full ({self._max_rows} events)", row.attempts, now)

    def delete(self, row: Row) -> None:
        """The row was delivered."""
        self._db.execute("DELETE FROM outbox WHERE id = ?", (row.id,))
        self.queued -= 1

    def hurry(self, origin: str, now: float) -> None:
        """Every row of ``origin`` waiting out a backoff is due now (its receiver is back)."""
        self._db.execute(
            "UPDATE outbox SET next_at = ? WHERE origin = ? AND next_at > ?", (now, origin, now)
        )

    def reschedule(self, row: Row, attempts: int, next_at: float, reason: str) -> None:
        """Try the row again at ``next_at``."""
        self._db.execute(
            "UPDATE outbox SET attempts = ?, next_at = ?, last_error = ? WHERE id = ?",
            (attempts, next_at, reason, row.id),
        )

    def bury(
        self, row: Row, reason: str, attempts: int, now: float, *, logged: str | None = None
    ) -> None:
        """Move a row to the dead letters.

        ``logged`` replaces ``reason`` in the log line when the reason quotes the
        receiver's answer, which may echo the transcript.
        """
        self.delete(row)
        self.add_dead(
            DeadLetter(row.event_id, row.url, attempts, reason, row.created_at, now, row.body)
        )
        log.warning(
            "webhook %s to %s dead-lettered after %d attempts: %s",
            row.event_id,
            shown(row.url),
            attempts,
            reason if logged is None else logged,
        )

    def add_dead(self, letter: DeadLetter) -> None:
        """Keep a dead letter (the newest :data:`DEAD_LETTERS_KEPT` stay)."""
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

    # -- reading ----------------------------------------------------------------------

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters, newest first."""
        rows = self._db.execute(
            "SELECT event_id, url, attempts, last_error, created_at, dead_at, body"
            " FROM dead_letters ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [DeadLetter(*row) for row in rows]

    def _per_origin(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for origin in self.in_flight.values():
            counts[origin] = counts.get(origin, 0) + 1
        return counts

    def claim_due(self) -> list[Row]:
        """Rows to start now (due, not in flight, within both concurrency bounds), claimed."""
        chosen: list[Row] = []
        free = MAX_IN_FLIGHT - len(self.in_flight)
        per_origin = self._per_origin()
        while free > 0:
            ids = (*self.in_flight, *(row.id for row in chosen))
            busy = tuple(o for o, n in per_origin.items() if n >= MAX_IN_FLIGHT_PER_ORIGIN)
            rows = self._db.execute(
                f"SELECT {_ROW_COLUMNS} FROM outbox WHERE next_at <= ?"  # noqa: S608
                f" AND id NOT IN ({_marks(ids)}) AND origin NOT IN ({_marks(busy)})"
                " ORDER BY next_at, id LIMIT ?",
                (time.time(), *ids, *busy, free),
            ).fetchall()
            added = 0
            for values in rows:
                row = Row(*values)
                if per_origin.get(row.origin, 0) < MAX_IN_FLIGHT_PER_ORIGIN and free > 0:
                    chosen.append(row)
                    per_origin[row.origin] = per_origin.get(row.origin, 0) + 1
                    free -= 1
                    added += 1
            if added == 0:
                break
        for row in chosen:
            self.in_flight[row.id] = row.origin
        return chosen

    def release(self, row: Row) -> None:
        """The row's attempt is over (settled or not)."""
        del self.in_flight[row.id]

    def until_next_due(self) -> float | None:
        """Seconds until a row not in flight is due; None: wait for a wake-up."""
        if len(self.in_flight) >= MAX_IN_FLIGHT:
            return None  # due rows wait for a free slot: a finishing delivery wakes us
        ids = tuple(self.in_flight)
        busy = tuple(o for o, n in self._per_origin().items() if n >= MAX_IN_FLIGHT_PER_ORIGIN)
        (next_at,) = self._db.execute(
            f"SELECT MIN(next_at) FROM outbox WHERE id NOT IN ({_marks(ids)})"  # noqa: S608
            f" AND origin NOT IN ({_marks(busy)})",
            (*ids, *busy),
        ).fetchone()
        return None if next_at is None else max(0.0, next_at - time.time())


def _marks(values: Sequence[object]) -> str:
    """SQL placeholders for ``NOT IN (...)``.

    For none, a value no id or origin equals: ``x NOT IN (NULL)`` would never be true.
    """
    return ", ".join("?" * len(values)) if values else "''"
