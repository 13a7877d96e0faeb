"""The response cache's key and in-memory store (Redis: tests/integration/test_cache.py)."""

from __future__ import annotations

import numpy as np

from orac_node.decode.cache import MemoryCache, cache_key, decode_decoding, encode_decoding
from orac_node.decode.decoding import DecodeOptions, Decoding
from orac_node.wire import Segment, Word

AUDIO = np.sin(np.linspace(0, 300, 16_000)).astype(np.float32) * 0.3
DECODING = Decoding(
    text="Turn on the lights.",
    language="en",
    confidence=0.81,
    decode_ms=150.0,
    words=[Word("Turn", 0.1, 0.3, 0.9)],
    segments=[Segment(0.0, 1.0, "Turn on the lights.")],
)


def test_the_key_follows_audio_model_and_text_changing_options() -> None:
    base = cache_key(AUDIO, model="tiny.en", options=DecodeOptions())
    assert base == cache_key(AUDIO.copy(), model="tiny.en", options=DecodeOptions())
    others = {
        cache_key(AUDIO * 0.5, model="tiny.en", options=DecodeOptions()),
        cache_key(AUDIO, model="base.en", options=DecodeOptions()),
        cache_key(AUDIO, model="tiny.en", options=DecodeOptions(prompt="Set a timer.")),
        cache_key(AUDIO, model="tiny.en", options=DecodeOptions(language="de")),
        cache_key(AUDIO, model="tiny.en", options=DecodeOptions(beam_size=5)),
    }
    assert base not in others and len(others) == 5
    # threads do not change the text: same key
    assert base == cache_key(AUDIO, model="tiny.en", options=DecodeOptions(threads=1))


def test_a_stored_decoding_comes_back_whole_without_decode_time() -> None:
    back = decode_decoding(encode_decoding(DECODING))
    assert back.text == DECODING.text and back.words == DECODING.words
    assert back.segments == DECODING.segments and back.confidence == 0.81
    assert back.decode_ms == 0.0


async def test_memory_cache_is_an_lru_with_a_ttl() -> None:
    now = [0.0]
    cache = MemoryCache(max_entries=2, ttl_s=10.0, clock=lambda: now[0])
    await cache.put("a", DECODING)
    await cache.put("b", DECODING)
    assert await cache.get("a") is not None  # a is now the most recently used
    await cache.put("c", DECODING)
    assert await cache.get("b") is None and len(cache) == 2
    now[0] = 10.0
    assert await cache.get("a") is None  # expired
    assert await cache.clear() == 1
