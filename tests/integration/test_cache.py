"""The shared response cache on a real redis-server, and a node that uses it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orac_node.decode.cache import RedisCache
from orac_node.decode.decoding import Decoding
from orac_node.ops.localbroker import free_port
from orac_node.ops.localredis import LocalRedis
from tests.conftest import AUDIO
from tests.integration.conftest import load
from tests.integration.harness import RunningNode, harness
from tests.integration.redisproc import running_redis

CACHE_TIMEOUT_S = 0.1
"""The cache's bound on one Redis call (cache.timeout_ms's default)."""
REDIS_PORT = free_port()
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"
NODE_CONFIG: dict[str, object] = {"cache": {"backend": "redis", "redis_url": REDIS_URL}}


@pytest.fixture(scope="module", autouse=True)
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The module's redis-server."""
    with running_redis(REDIS_PORT, tmp_path_factory.mktemp("redis")):
        yield REDIS_URL


async def test_redis_cache_stores_expires_and_clears() -> None:
    cache = RedisCache(REDIS_URL, ttl_s=0.5, prefix="test-a:")
    other = RedisCache(REDIS_URL, ttl_s=60, prefix="test-b:")
    decoding = Decoding(text="Pause the music.", language="en", confidence=0.8, decode_ms=120.0)
    try:
        assert await cache.get("k") is None
        await cache.put("k", decoding)
        await other.put("k", decoding)
        hit = await cache.get("k")
        assert hit is not None and hit.text == "Pause the music." and hit.decode_ms == 0.0
        await asyncio.sleep(0.6)  # Redis expires it by itself
        assert await cache.get("k") is None
        await cache.put("k2", decoding)
        assert await cache.clear() == 1
        assert await other.get("k") is not None  # another prefix is left alone
    finally:
        await other.clear()
        await cache.close()
        await other.close()


async def test_a_redis_that_is_down_is_a_miss_not_an_error() -> None:
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", ttl_s=60)
    decoding = Decoding(text="x", language="en", confidence=0.5, decode_ms=1.0)
    await cache.put("k", decoding)
    assert await cache.get("k") is None
    await cache.close()


async def test_the_same_audio_twice_is_decoded_once(
    node: RunningNode, device: str, tmp_path: Path
) -> None:
    samples = load(AUDIO / "commands" / "utt014.wav")  # "pause the music"
    async with harness(node.url) as h:
        first = await h.session(device, samples)
        second = await h.session(device, samples)
    assert first.final is not None and second.final is not None
    assert first.final.decode_ms > 0
    assert second.final.decode_ms == 0.0  # from the cache
    assert second.final.text == first.final.text and second.final.text
    assert second.final.session != first.final.session
    config = tmp_path / "cache.yaml"
    config.write_text(yaml.safe_dump(NODE_CONFIG))
    done = await _cache_clear(config)
    assert done.returncode == 0, done.stderr
    assert "removed 1 cached transcript(s)" in done.stdout
    again = await _cache_clear(config, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"removed": 0}


async def _cache_clear(config: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """``orac-node cache clear`` on ``config``, outside any ORAC_NODE_* of this shell."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "orac_node.cli", "cache", "clear", *flags, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("ORAC_NODE_")},
    )


# -- a Redis that is down, slow or holds garbage is a miss ------------------------------

GARBAGE = {
    "not JSON": b"\xff\xfe not json at all",
    "JSON, not an object": b"[1, 2, 3]",
    "another program's object": b'{"user": "alice", "visits": 3}',
    "a decoding missing fields": b'{"text": "hi", "words": []}',
    "fields of the wrong shape": b'{"text": "hi", "language": "en", "confidence": 0.5,'
    b' "decode_ms": 1.0, "words": [1, 2], "segments": "x", "aborted": false}',
}


@pytest.mark.parametrize("value", list(GARBAGE.values()), ids=list(GARBAGE))
async def test_a_foreign_or_malformed_entry_is_a_miss(value: bytes) -> None:
    import redis.asyncio as aioredis  # noqa: PLC0415 - the test writes behind the cache's back

    cache = RedisCache(REDIS_URL, ttl_s=60, prefix="garbage:")
    writer = aioredis.from_url(REDIS_URL)
    try:
        await writer.set("garbage:k", value)
        assert await cache.get("k") is None
        await writer.delete("garbage:k")
        await writer.rpush("garbage:k", b"a list, not a string")  # WRONGTYPE for GET
        assert await cache.get("k") is None
    finally:
        await writer.delete("garbage:k")
        await writer.aclose()
        await cache.close()


async def test_a_final_is_decoded_when_its_cache_entry_is_garbage(tmp_path: Path) -> None:
    """Through the pipeline: the entry under the final's own key is junk."""
    import redis.asyncio as aioredis  # noqa: PLC0415

    from orac_node.config import NodeConfig  # noqa: PLC0415
    from tests.unit.pipeline_rig import ScriptedEngine, running  # noqa: PLC0415

    cache = RedisCache(REDIS_URL, ttl_s=60, prefix="final:")
    writer = aioredis.from_url(REDIS_URL)
    engine = ScriptedEngine(text="Pause the music.")
    samples = load(AUDIO / "commands" / "utt014.wav")
    try:
        async with running(NodeConfig(), engine, tmp_path, cache=cache) as rig:
            await rig.stream("kitchen", "first", samples, end=True)
            await asyncio.gather(*rig.tasks)
            async with asyncio.timeout(5):  # stored in the background, after the final
                while not (keys := [key async for key in writer.scan_iter(match="final:*")]):
                    await asyncio.sleep(0.01)
            assert len(keys) == 1  # the first final's decode
            await writer.set(keys[0], b'{"not": "a decoding"}')
            await rig.stream("kitchen", "second", samples, end=True)
            await asyncio.gather(*rig.tasks)
        _, second = rig.finals()
        assert second.rejected is None, second
        assert second.text == "Pause the music." and second.decode_ms > 0  # decoded again
        assert sum(1 for job in engine.jobs if job.final) == 2
    finally:
        await writer.aclose()
        await cache.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """A redis-server of this test's own, so the test may pause or kill it."""
    with running_redis(free_port(), tmp_path) as server:
        yield server


async def test_a_paused_redis_is_a_miss_within_the_timeout(
    own_redis: LocalRedis,
) -> None:
    url = own_redis.url
    cache = RedisCache(url, ttl_s=60)
    decoding = Decoding(text="x", language="en", confidence=0.5, decode_ms=1.0)
    try:
        await cache.put("k", decoding)
        assert await cache.get("k") is not None  # connected and working
        os.kill(own_redis.pid, signal.SIGSTOP)  # black-holed: connections stay open, no answer
        started = time.monotonic()
        assert await cache.get("k") is None
        await cache.put("k2", decoding)
        assert await cache.get("k2") is None
        spent = time.monotonic() - started
        assert spent < 3 * CACHE_TIMEOUT_S + 0.5, f"three calls took {spent:.2f} s"
        os.kill(own_redis.pid, signal.SIGCONT)
    finally:
        await cache.close()


async def test_a_redis_stopped_while_in_use_is_a_miss(own_redis: LocalRedis) -> None:
    url = own_redis.url
    cache = RedisCache(url, ttl_s=60)
    decoding = Decoding(text="x", language="en", confidence=0.5, decode_ms=1.0)
    try:
        await cache.put("k", decoding)
        assert await cache.get("k") is not None
        own_redis.stop()
        assert await cache.get("k") is None
        await cache.put("k", decoding)
    finally:
        await cache.close()
