"""The shared response cache on a real redis-server, and a node that uses it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orac_node.decode.cache import RedisCache
from orac_node.decode.decoding import Decoding
from orac_node.ops.localbroker import free_port, port_in_use
from tests.conftest import AUDIO
from tests.integration.conftest import load
from tests.integration.harness import RunningNode, harness

REDIS_PORT = free_port()
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"
NODE_CONFIG: dict[str, object] = {"cache": {"backend": "redis", "redis_url": REDIS_URL}}


@pytest.fixture(scope="module", autouse=True)
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on a free loopback port, no persistence."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(REDIS_PORT),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not port_in_use(REDIS_PORT):
        assert process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.02)
    yield REDIS_URL
    process.terminate()
    process.wait(timeout=10)


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
