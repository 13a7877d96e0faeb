"""On-disk spool of in-flight sessions, so a killed node loses no utterance.

Every accepted chunk of an open session is appended, as the exact MQTT payload
it arrived in, to that session's spool file before the node acknowledges the
message to the broker (manual acks, bus.py). When the node starts, each file
left behind is read back and its payloads replayed through the normal intake
path; chunks the satellite sent while the node was down wait in the node's
persistent broker session and follow. When the session's final has been
acknowledged by the broker (PUBACK), the session is added to the *finished*
log and its file deleted, so a late or redelivered chunk of it can never open
a second session and publish a second final, even after a restart.

File format (one file per session, append-only)::

    record  := length:u32le  crc32:u32le  data[length]
    first record: JSON header {"v": 1, "device": ..., "session": ..., "topic": ...}
    then one record per chunk: the raw msgpack payload

A record cut short by a crash fails its length or CRC check and ends the file
there: everything before it is replayed.

Durability: writes go straight to the kernel (``os.write`` on an ``O_APPEND``
descriptor, no user-space buffer), so a killed or crashed *process* loses
nothing written. Against power loss, the files written to (session files and
the finished log) are ``fsync``-ed by :meth:`Spool.sync`, which the node runs
in a thread every ``spool.fsync_interval_ms`` (default 1 s; 0: as soon as
something was written), never on the event loop: a power cut can cost the
last second of in-flight audio, or replay a session finalized in that second
(a duplicate final, same ``session``).

The finished log is compacted by :meth:`Spool.sync` too, once it holds
:data:`COMPACT_AFTER` more lines than when last written: entries past their
TTL leave it, so it stays bounded however long the node runs.

The window the spool cannot close: between the broker's PUBACK of a final and
the finished-log entry written right after it (a few microseconds of Python),
a kill leaves the session to be replayed and finalized again; the duplicate
final carries the same ``session`` id, by which consumers can drop it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_RECORD = struct.Struct("<II")  # length, crc32
SUFFIX = ".spool"
FINISHED_LOG = "finished.log"
FORMAT_VERSION = 1
COMPACT_AFTER = 1000
"""The finished log is rewritten once this many lines were added since it was last
written (each ~80 bytes): a few hundred KB at most beyond the entries still needed,
and a rewrite every thousand finals, off the event loop."""


@dataclass(frozen=True, slots=True)
class SpooledSession:
    """A session found in the spool at start-up: what to replay."""

    device: str
    session: str
    topic: str
    payloads: list[bytes]
    path: Path


@dataclass
class _Open:
    fd: int
    path: Path
    dirty: bool = False


@dataclass
class Spool:
    """The spool directory of one node: per-session files and the finished log.

    ``fsync_each`` (spool.fsync_interval_ms 0) makes every write wake
    ``on_dirty`` so the node's sync thread flushes it at once; writes themselves
    never wait for the disk.
    """

    directory: Path
    max_bytes: int
    finished_ttl_s: float
    fsync_each: bool = False
    clock: Callable[[], float] = time.time
    on_dirty: Callable[[], None] | None = None
    _open: dict[tuple[str, str], _Open] = field(default_factory=dict)
    _bytes: int = 0
    _finished_fd: int = -1
    _finished_dirty: bool = False
    _entries: deque[tuple[float, str, str]] = field(default_factory=deque)
    _added: int = 0  # finished-log lines written since the file was last rewritten
    _lock: threading.Lock = field(default_factory=threading.Lock)
    refused: int = 0  # sessions not spooled because the spool was full

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._bytes = sum(p.stat().st_size for p in self.directory.glob(f"*{SUFFIX}"))

    # -- start-up -----------------------------------------------------------

    def finished(self) -> list[tuple[str, str]]:
        """Sessions finalized within ``finished_ttl_s``; compacts the log to them."""
        path = self.directory / FINISHED_LOG
        now = self.clock()
        if path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    at, device, session = json.loads(line)
                except (ValueError, TypeError):
                    continue  # a line cut short by a crash
                if now - float(at) < self.finished_ttl_s:
                    self._entries.append((float(at), str(device), str(session)))
        tmp = path.with_suffix(".tmp")
        _write_entries(tmp, self._entries)
        tmp.replace(path)
        self._finished_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return [(device, session) for _, device, session in self._entries]

    def recover(self) -> list[SpooledSession]:
        """Every session file left by an earlier process, oldest first, reopened for appending."""
        found = []
        for path in sorted(self.directory.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime):
            records, valid_bytes = _read_records(path)
            header = _header(records[0]) if records else None
            if header is None:
                log.warning("spool file %s has no valid header: removed", path.name)
                self._unlink(path)
                continue
            device, session, topic = header
            with contextlib.suppress(OSError):
                os.truncate(path, valid_bytes)  # drop a torn last record before appending
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            self._open[(device, session)] = _Open(fd, path)
            found.append(SpooledSession(device, session, topic, records[1:], path))
        return found

    def discard(self, device: str, session: str) -> None:
        """Forget a session without a final (refused when it was replayed): its file goes."""
        entry = self._open.pop((device, session), None)
        if entry is not None:
            os.close(entry.fd)
            self._unlink(entry.path)

    # -- while serving ------------------------------------------------------

    def append(self, device: str, session: str, topic: str, payload: bytes) -> bool:
        """Add one accepted chunk; opens the session's file on its first chunk.

        Returns False when the session is not spooled (spool full, or a disk
        error): the node still serves it, it only would not survive a kill.
        """
        key = (device, session)
        entry = self._open.get(key)
        try:
            if entry is None:
                if self._bytes + len(payload) > self.max_bytes:
                    self.refused += 1
                    if self.refused in (1, 10, 100) or self.refused % 1000 == 0:
                        log.warning(
                            "spool full (%d bytes): %d sessions not spooled",
                            self._bytes,
                            self.refused,
                        )
                    return False
                path = self.directory / _file_name(device, session)
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o600)
                entry = self._open[key] = _Open(fd, path)
                header = {"v": FORMAT_VERSION, "device": device, "session": session, "topic": topic}
                self._write(entry, json.dumps(header).encode())
            self._write(entry, payload)
        except OSError:
            log.exception("spool write for %s/%s failed", device, session)
            return False
        return True

    def _write(self, entry: _Open, data: bytes) -> None:
        record = _RECORD.pack(len(data), zlib.crc32(data)) + data
        os.write(entry.fd, record)
        entry.dirty = True
        self._bytes += len(record)
        self._wake()

    def _wake(self) -> None:
        if self.fsync_each and self.on_dirty is not None:
            self.on_dirty()

    def sync(self) -> None:
        """Flush what was written since the last call to disk, and compact the finished log.

        Blocking: the node runs it in a thread.
        """
        if self._finished_dirty and self._finished_fd >= 0:
            self._finished_dirty = False
            with contextlib.suppress(OSError):
                os.fsync(self._finished_fd)
        for entry in list(self._open.values()):
            if entry.dirty:
                entry.dirty = False
                with contextlib.suppress(OSError):  # closed meanwhile
                    os.fsync(entry.fd)
        if self._added >= COMPACT_AFTER:
            self._compact()

    def _compact(self) -> None:
        """Rewrite the finished log with the entries still within their TTL."""
        path = self.directory / FINISHED_LOG
        cutoff = self.clock() - self.finished_ttl_s
        with self._lock:
            while self._entries and self._entries[0][0] <= cutoff:
                self._entries.popleft()
            kept = list(self._entries)
            self._added = 0
        tmp = path.with_suffix(".tmp")
        _write_entries(tmp, kept, durable=True)
        with self._lock:
            # entries finished while the copy was written go after it
            newer = list(self._entries)[len(kept) :]
            with tmp.open("a", encoding="utf-8") as out:
                out.writelines(json.dumps(entry) + "\n" for entry in newer)
            tmp.replace(path)
            fd, self._finished_fd = self._finished_fd, os.open(path, os.O_WRONLY | os.O_APPEND)
            os.close(fd)

    def finish(self, device: str, session: str) -> None:
        """The session's final was acknowledged: remember it, drop its audio."""
        if self._finished_fd >= 0:
            entry = (round(self.clock(), 3), device, session)
            with self._lock:  # the sync thread may be swapping the file
                os.write(self._finished_fd, (json.dumps(entry) + "\n").encode())
                self._entries.append(entry)
                self._added += 1
            self._finished_dirty = True  # flushed by the next sync(), off the event loop
            self._wake()
        entry_open = self._open.pop((device, session), None)
        if entry_open is not None:
            os.close(entry_open.fd)
            self._unlink(entry_open.path)

    def close(self) -> None:
        """Close every descriptor (files stay for the next start)."""
        for entry in self._open.values():
            os.close(entry.fd)
        self._open.clear()
        if self._finished_fd >= 0:
            os.close(self._finished_fd)
            self._finished_fd = -1

    @property
    def open_sessions(self) -> int:
        """Sessions with a spool file."""
        return len(self._open)

    @property
    def size_bytes(self) -> int:
        """Bytes in session files."""
        return self._bytes

    def _unlink(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            size = path.stat().st_size
            path.unlink()
            self._bytes = max(0, self._bytes - size)


def _write_entries(
    path: Path, entries: Iterable[tuple[float, str, str]], *, durable: bool = False
) -> None:
    """Write finished-log entries to ``path``; ``durable``: also flushed to the disk."""
    with path.open("w", encoding="utf-8") as out:
        out.writelines(json.dumps(entry) + "\n" for entry in entries)
        if durable:
            out.flush()
            os.fsync(out.fileno())


def _file_name(device: str, session: str) -> str:
    """A safe file name for any device and session id (both are sender-chosen)."""
    digest = hashlib.sha256(f"{device}\0{session}".encode()).hexdigest()[:32]
    return f"{digest}{SUFFIX}"


def _read_records(path: Path) -> tuple[list[bytes], int]:
    """The file's intact records, and how many bytes they span."""
    data = path.read_bytes()
    records = []
    offset = 0
    while offset + _RECORD.size <= len(data):
        length, crc = _RECORD.unpack_from(data, offset)
        start = offset + _RECORD.size
        body = data[start : start + length]
        if len(body) < length or zlib.crc32(body) != crc:
            break
        records.append(body)
        offset = start + length
    return records, offset


def _header(record: bytes) -> tuple[str, str, str] | None:
    try:
        header = json.loads(record)
        if header.get("v") != FORMAT_VERSION:
            return None
        return str(header["device"]), str(header["session"]), str(header["topic"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
