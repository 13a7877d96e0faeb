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
  asyncio client), entries expiring by Redis' own TTL. A Redis that is down
  makes the cache miss and the node decode as usual (logged, never fatal).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from orac_node.audio import Samples, float_to_s16
from orac_node.config import CacheSection
from orac_node.decode.decoding import DecodeOptions, Decoding
from orac_node.wire import Segment, Word

log = logging.getLogger(__name__)

KEY_VERSION = 1
"""Part of every key: bump it when the decoding changes for the same inputs."""


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
    ]
    digest.update(json.dumps(settings).encode())
    return digest.hexdigest()


def encode_decoding(decoding: Decoding) -> bytes:
    """A decoding as JSON (what is stored)."""
    return json.dumps(dataclasses.asdict(decoding)).encode()


def decode_decoding(data: bytes | str) -> Decoding:
    """Back from :func:`encode_decoding`; a hit costs no decode time."""
    raw = json.loads(data)
    raw["words"] = [Word(**w) for w in raw["words"]]
    raw["segments"] = [Segment(**s) for s in raw["segments"]]
    raw["decode_ms"] = 0.0
    return Decoding(**raw)


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
    """Entries in Redis under ``prefix``, expiring after ``ttl_s``."""

    def __init__(self, url: str, ttl_s: float, prefix: str = "orac-node:cache:") -> None:
        self._redis = aioredis.from_url(url)
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._prefix = prefix
        self._failures = 0

    async def get(self, key: str) -> Decoding | None:
        """The stored decoding; a miss when Redis cannot be reached."""
        try:
            data = await self._redis.get(self._prefix + key)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        return None if data is None else decode_decoding(data)

    async def put(self, key: str, decoding: Decoding) -> None:
        """Store with the TTL; skipped when Redis cannot be reached."""
        try:
            await self._redis.set(self._prefix + key, encode_decoding(decoding), px=self._ttl_ms)
        except (RedisError, OSError) as exc:
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

    def _failed(self, exc: BaseException) -> None:
        self._failures += 1
        if self._failures in (1, 10, 100) or self._failures % 1000 == 0:
            log.warning("response cache unavailable (%d failures): %s", self._failures, exc)


def make_cache(section: CacheSection) -> MemoryCache | RedisCache | None:
    """The cache the config asks for (None: off)."""
    if section.backend == "memory":
        return MemoryCache(section.max_entries, section.ttl_s)
    if section.backend == "redis":
        return RedisCache(section.redis_url, section.ttl_s)
    return None
