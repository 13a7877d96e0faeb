"""Context from Core: expiry, clearing, bounds, and how a final's prompt is assembled."""

from __future__ import annotations

import pytest

from orac_node.consumers.context import ContextStore, build_prompt
from orac_node.errors import ContractError
from orac_node.wire import MAX_PROMPT_CHARS, Context, context_topic

KITCHEN = context_topic(device="kitchen")


def _context(prompt: str, ttl_s: float = 60) -> bytes:
    return Context(prompt=prompt, ttl_s=ttl_s).encode()


def test_context_applies_to_its_device_until_its_ttl() -> None:
    store = ContextStore(10)
    store.on_message(KITCHEN, _context("Set a timer.", ttl_s=5), now=100)
    assert store.get(device="kitchen", now=104.9) == "Set a timer."
    assert store.get(device="lounge", now=104.9) == ""
    assert store.get(device="kitchen", now=105) == ""


def test_the_mqtt_message_expiry_wins_when_sooner() -> None:
    store = ContextStore(10)
    store.on_message(KITCHEN, _context("x", ttl_s=300), now=0, expiry_s=2)
    assert store.get(device="kitchen", now=1.9) == "x"
    assert store.get(device="kitchen", now=2.0) == ""


def test_an_empty_payload_or_prompt_clears_and_topics_are_separate() -> None:
    store = ContextStore(10)
    store.on_message(KITCHEN, _context("a"), now=0)
    store.on_message(context_topic(topic="kitchen"), _context("b"), now=0)
    store.on_message(KITCHEN, b"", now=1)
    assert store.get(device="kitchen", now=1) == ""
    assert store.get(topic="kitchen", now=1) == "b"
    store.on_message(context_topic(topic="kitchen"), _context("  "), now=1)
    assert store.get(topic="kitchen", now=1) == ""


def test_the_store_is_bounded_oldest_first() -> None:
    store = ContextStore(2)
    for device in ("a", "b", "c"):
        store.on_message(context_topic(device=device), _context(device), now=0)
    assert len(store) == 2
    assert [store.get(device=d, now=0) for d in "abc"] == ["", "b", "c"]


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("orac/context/room/kitchen", _context("x")),
        (KITCHEN, b"not json"),
        (KITCHEN, b'{"prompt": 3}'),
        (KITCHEN, b'{"prompt": "x", "ttl_s": -1}'),
        (KITCHEN, b'{"prompt": "x", "ttl_s": 1e9}'),
        (KITCHEN, b'{"prompt": "x", "ttl_s": true}'),
        (KITCHEN, b'{"prompt": "x", "ts": true}'),
        (KITCHEN, ('{"prompt": "%s"}' % ("x" * 10 * MAX_PROMPT_CHARS + "x")).encode()),
    ],
)
def test_malformed_context_is_refused(topic: str, payload: bytes) -> None:
    with pytest.raises(ContractError):
        ContextStore(10).on_message(topic, payload, now=0)


def test_prompt_parts_join_in_order_and_keep_the_most_recent_end() -> None:
    assert (
        build_prompt("Rooms: den.", "", "  Set a timer. ", "Ten.")
        == "Rooms: den. Set a timer. Ten."
    )
    long = " ".join(f"word{i}" for i in range(400))
    prompt = build_prompt(long)
    assert len(prompt) <= MAX_PROMPT_CHARS
    assert prompt.endswith("word399") and prompt.startswith("word")  # cut at a word


def test_clearing_forgets_every_context() -> None:
    store = ContextStore(10)
    store.on_message(KITCHEN, _context("a"), now=0)
    store.clear()  # the broker lost the node's session: it re-sends what it holds
    assert len(store) == 0 and store.get(device="kitchen", now=0) == ""
