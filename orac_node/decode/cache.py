"""Response cache: the same audio decoded the same way is not decoded twice.

The key is a SHA-256 of the utterance as 16-bit PCM (the form satellites send
it in, half the bytes of the float buffer to hash) together with the model
and every decode option that changes the text (language, prompt, beam size,
window margin, temperature fallback). A hit returns the earlier decoding at
once; a re-sent recording, a retried file or a re-transcription request with
the same settings costs nothing.

Two backends behind one small interface:

- :class:`MemoryCache` (the embedded default): an LRU of ``max_entries`` with
  a TTL, inside the node process.
- :class:`RedisCache`: shared by every node on a Redis server (redis-py's
  asyncio client), entries expiring by Redis' own TTL.

A cache can only ever save work: a Redis that is down, slow or holds something
that is not one of our decodings is a miss, and the node decodes as usual
(logged, counted, never fatal). Every Redis call is bounded by
``cache.timeout_ms``, and after a failure Redis is left alone for
:data:`RETRY_AFTER_S`, so a black-holed server costs a final at most one timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from orac_node.audio import Samples, float_to_s16
from orac_node.config import CacheSection
from orac_node.decode.decoding import DecodeOptions, Decoding
from orac_node.errors import ContractError
from orac_node.wire.base import build

log = logging.getLogger(__name__)

KEY_VERSION = 1
"""Part of every key: bump it when the decoding changes for the same inputs."""
RETRY_AFTER_S = 5.0
"""After a Redis call failed or timed out, how long every lookup is a miss without
asking: one slow call per 5 s is all a black-holed server can cost the finals."""


def cache_key(samples: Samples, *, model: str, options: DecodeOptions) -> str:
    """The key of one decode: audio as s16 PCM, model and the text-changing options."""
    digest = hashlib.sha256(float_to_s16(samples))
    settings = [
        KEY_VERSION,
        model,
        options.language,
        options.prompt,
        options.beam_size,
        options.window_margin_s,
        options.temperature_fallback,
        options.timestamps,
        options.language_p,
    ]
    digest.update(json.dumps(settings).encode())
    return digest.hexdigest()


def encode_decoding(decoding: Decoding) -> bytes:
    """A decoding as JSON (what is stored)."""
    return json.dumps(dataclasses.asdict(decoding)).encode()


class ForeignEntryError(ValueError):
    """What the cache holds under a key is not a decoding this node stored."""


def decode_decoding(data: bytes | str) -> Decoding:
    """Back from :func:`encode_decoding`; a hit costs no decode time.

    Anything else (another program's value under our prefix, an older layout,
    a truncated write) raises :class:`ForeignEntryError`.
    """
    try:
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ForeignEntryError("not a JSON object")
        decoding = build(Decoding, raw)
    except (ValueError, RecursionError, ContractError) as exc:
        raise ForeignEntryError(str(exc)) from exc
    numbers = (decoding.confidence, decoding.decode_ms)
    if not (
        isinstance(decoding.text, str)
        and isinstance(decoding.language, str)
        and all(isinstance(n, int | float) and math.isfinite(n) for n in numbers)
        and isinstance(decoding.aborted, bool)
        and (
            decoding.language_p is None
            or (isinstance(decoding.language_p, int | float) and math.isfinite(decoding.language_p))
        )
    ):
        raise ForeignEntryError("fields of the wrong type")
    return dataclasses.replace(decoding, decode_ms=0.0)


class TranscriptCache(Protocol):
    """What the node needs of a cache."""

    async def get(self, key: str) -> Decoding | None:
        """The stored decoding, or None."""
        ...

    async def put(self, key: str, decoding: Decoding) -> None:
        """Store a decoding."""
        ...

    async def clear(self) -> int:
        """Remove every entry; return how many there were."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class MemoryCache:
    """LRU with a TTL, in the node process."""

    def __init__(
        self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max = max_entries
        self._ttl = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> Decoding | None:
        """The entry if present and fresh (it becomes the most recently used)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, data = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return decode_decoding(data)

    async def put(self, key: str, decoding: Decoding) -> None:
        """Store; the least recently used entry goes when full."""
        self._entries[key] = (self._clock() + self._ttl, encode_decoding(decoding))
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def clear(self) -> int:
        """Forget everything."""
        count = len(self._entries)
        self._entries.clear()
        return count

    async def close(self) -> None:
        """Nothing to release."""

    def __len__(self) -> int:
        return len(self._entries)


class RedisCache:
    """Entries in Redis under ``prefix``, expiring after ``ttl_s``; any failure is a miss."""

    def __init__(
        self,
        url: str,
        ttl_s: float,
        prefix: str = "orac-node:cache:",
        *,
        timeout_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Socket timeouts bound a server that accepts and never answers; asyncio's
        # timeout below bounds the call as a whole (connecting, pool waits, retries).
        self._redis = aioredis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._clock = clock
        self._resting_until = 0.0
        self.failures = 0
        self.foreign = 0

    async def get(self, key: str) -> Decoding | None:
        """The stored decoding; a miss when Redis cannot answer or holds something else."""
        if self._resting():
            return None
        try:
            async with asyncio.timeout(self._timeout_s):
                data = await self._redis.get(self._prefix + key)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return None
        if data is None:
            return None
        try:
            return decode_decoding(data)
        except ForeignEntryError as exc:
            self.foreign += 1
            if self.foreign in (1, 10, 100) or self.foreign % 1000 == 0:
                log.warning(
                    "response cache: not a decoding under %s (%d so far): %s",
                    self._prefix,
                    self.foreign,
                    exc,
                )
            return None

    async def put(self, key: str, decoding: Decoding) -> None:
        """Store with the TTL; skipped when Redis cannot be reached."""
        if self._resting():
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._redis.set(
                    self._prefix + key, encode_decoding(decoding), px=self._ttl_ms
                )
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)

    async def clear(self) -> int:
        """Delete every key under the prefix (SCAN, not KEYS: the server stays responsive)."""
        count = 0
        async for name in self._redis.scan_iter(match=self._prefix + "*", count=500):
            count += await self._redis.delete(name)
        return count

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()

    def _resting(self) -> bool:
        return self._clock() < self._resting_until

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self._resting_until = self._clock() + RETRY_AFTER_S
        if self.failures in (1, 10, 100) or self.failures % 1000 == 0:
            reason = str(exc) or type(exc).__name__
            log.warning(
                "response cache unavailable (%d failures; misses for %.0f s): %s",
                self.failures,
                RETRY_AFTER_S,
                reason,
            )


def make_cache(section: CacheSection) -> MemoryCache | RedisCache | None:
    """The cache the config asks for (None: off)."""
    if section.backend == "memory":
        return MemoryCache(section.max_entries, section.ttl_s)
    if section.backend == "redis":
        return RedisCache(section.redis_url, section.ttl_s, timeout_s=section.timeout_ms / 1000)
    return None
