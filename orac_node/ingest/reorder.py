"""Putting a session's chunks back in ``seq`` order.

MQTT keeps order on one connection, but satellites that reconnect, retry or
publish from several tasks can deliver chunks late, twice or never. The
reorderer releases chunks strictly in order, drops duplicates, holds early
chunks in a bounded window and, when the window overflows (or the caller
flushes at the end), skips the hole and counts it as a gap. Pure logic.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Reorderer(Generic[T]):
    """Releases items in sequence order with a bounded reorder window."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.next_seq = 0
        self.duplicates = 0
        self.gaps = 0  # number of seq values never received
        self.reordered = 0  # items that arrived early and waited
        self._held: dict[int, T] = {}

    @property
    def has_holes(self) -> bool:
        """Whether items wait behind a missing one."""
        return bool(self._held)

    def push(self, seq: int, item: T) -> list[T]:
        """Add one item; return the items now releasable, in order."""
        if seq < self.next_seq or seq in self._held:
            self.duplicates += 1
            return []
        if seq == self.next_seq and not self._held:
            self.next_seq += 1
            return [item]
        self._held[seq] = item
        if seq != self.next_seq:
            self.reordered += 1
        released = self._release_ready()
        while len(self._held) > self.window:
            released.extend(self._skip_hole())
        return released

    def flush(self) -> list[T]:
        """Release everything held, counting every hole as a gap."""
        released = self._release_ready()
        while self._held:
            released.extend(self._skip_hole())
        return released

    def _release_ready(self) -> list[T]:
        released = []
        while self.next_seq in self._held:
            released.append(self._held.pop(self.next_seq))
            self.next_seq += 1
        return released

    def _skip_hole(self) -> list[T]:
        first = min(self._held)
        self.gaps += first - self.next_seq
        self.next_seq = first
        return self._release_ready()
