"""Room-group arbitration: which final wins, who waits, and for how long (pure logic).

The real node, broker and model do the same with real audio in
tests/integration/test_rooms.py; here the clock is the test's, so every wait
is exact.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from orac_node.audio import speech_level
from orac_node.ingest.session import UtteranceKey
from orac_node.pipeline.arbitration import (
    Arbiter,
    normalize,
    same_words,
    winner,
)
from orac_node.wire import DUPLICATE, Final, RoomGroup
from tests.factories import final as make_final

KITCHEN = RoomGroup(devices=["k1", "k2", "k3"], window_ms=1000, wait_ms=1500)


class Clock:
    """A clock the test moves; the arbiter's timers still run on the event loop."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _arbiter(clock: Clock, group: RoomGroup = KITCHEN) -> Arbiter:
    return Arbiter(
        lambda device: ("kitchen", group) if device in group.devices else None, clock=clock
    )


def _final(device: str, session: str, text: str, **fields: object) -> Final:
    defaults: dict[str, object] = {"level_db": -20.0, "snr_db": 40.0, "confidence": 0.9}
    return make_final(device=device, session=session, text=text, **(defaults | fields))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Turn on the kitchen lights.", "turn on the kitchen light"),
        ("Turn on the kitchen lights.", "Turn on kitchen lights"),
        ("Turn on the kitchen lights.", "Turn off the kitchen lights."),  # one misheard word
        # whisper repeating itself on one satellite (seen in the bench's rooms scenario)
        (
            "Can I have a 12-ounce iced mocha?",
            "Can I have a 12-ounce iced mocha? Can I have a 12-ounce iced mocha?",
        ),
        ("Open the curtains in the lounge.", "open the curtains in the lounge please"),
    ],
)
def test_the_same_words_heard_twice(a: str, b: str) -> None:
    assert same_words(a, b) and same_words(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Turn on the kitchen lights.", "Set a timer for ten minutes."),
        ("Turn on the lights.", "Turn off the radio."),
        ("turn on the kitchen lights", "turn on the porch light at sunset"),
        # two orders of one shape, which a letter-level ratio puts at 0.85 and 0.81
        (
            "Can I get a light roast single shot drip coffee?",
            "Can I get a light rose triple shot ice coffee?",
        ),
        (
            "I'd like a triple shot coffee with brown sugar.",
            "I'd like a drip coffee with brown sugar and milk.",
        ),
        ("Yes.", "Yes, set a timer for ten minutes."),  # too short to count as contained
        ("", ""),
    ],
)
def test_different_words(a: str, b: str) -> None:
    assert not same_words(a, b) and not same_words(b, a)


def test_normalize() -> None:
    assert normalize("Turn on the Kitchen-Lights!") == "turn on the kitchen lights"
    assert normalize("I'd like a 12-ounce mocha, please.") == "id like a 12 ounce mocha please"


def test_winner_prefers_snr_then_level_then_confidence() -> None:
    near = _final("k1", "a", "x", snr_db=45.0, level_db=-30.0, confidence=0.5)
    far = _final("k2", "b", "x", snr_db=35.0, level_db=-10.0, confidence=0.99)
    assert winner([far, near]) is near  # 10 dB further above the room's noise
    loud = _final("k1", "a", "x", snr_db=40.0, level_db=-18.0, confidence=0.5)
    quiet = _final("k2", "b", "x", snr_db=41.0, level_db=-25.0, confidence=0.99)
    assert winner([quiet, loud]) is loud  # SNRs equal within 3 dB: the louder
    sure = _final("k1", "a", "x", level_db=-20.5, confidence=0.95)
    unsure = _final("k2", "b", "x", level_db=-20.0, confidence=0.7)
    assert winner([unsure, sure]) is sure  # levels equal within 1 dB: the surer
    first, second = _final("k1", "a", "x"), _final("k2", "b", "x")
    assert winner([first, second]) is first  # all equal: the earlier session
    no_level = _final("k3", "c", "x", level_db=None, snr_db=None, confidence=1.0)
    assert winner([no_level, second]) is second


def test_the_same_clip_louder_wins_by_its_measured_level() -> None:
    rng = np.random.default_rng(7)
    speech = np.concatenate(
        [rng.normal(0, 0.001, 8000), rng.normal(0, 0.2, 16000), rng.normal(0, 0.001, 8000)]
    ).astype(np.float32)
    loud, quiet = speech_level(speech), speech_level(speech * 0.3)
    assert loud is not None and quiet is not None
    assert loud.level_db - quiet.level_db == pytest.approx(20 * np.log10(1 / 0.3), abs=0.2)
    assert loud.snr_db == pytest.approx(quiet.snr_db, abs=0.2)  # gain moves noise too
    near = _final("k1", "a", "x", level_db=quiet.level_db, snr_db=quiet.snr_db)
    far = _final("k2", "b", "x", level_db=loud.level_db, snr_db=loud.snr_db)
    assert winner([near, far]) is far
    assert speech_level(speech[:600]) is None  # under two 20 ms frames


async def test_a_lone_satellite_is_never_delayed() -> None:
    clock = Clock()
    arbiter = _arbiter(clock)
    arbiter.opened(UtteranceKey("k1", "a"), clock.now)
    mine = _final("k1", "a", "Turn on the lights.")
    assert await asyncio.wait_for(arbiter.settle(mine), 0.1) is mine
    assert arbiter.waited == 0
    # a device in no group, and a session the arbiter never saw, pass straight through
    other = _final("hall", "h", "Turn on the lights.")
    arbiter.opened(UtteranceKey("hall", "h"), clock.now)
    assert await asyncio.wait_for(arbiter.settle(other), 0.1) is other


async def test_same_words_on_two_satellites_one_wins_the_other_is_a_duplicate() -> None:
    clock = Clock()
    arbiter = _arbiter(clock)
    arbiter.opened(UtteranceKey("k1", "a"), 100.0)
    arbiter.opened(UtteranceKey("k2", "b"), 100.3)
    quiet = _final("k1", "a", "Turn on the kitchen lights.", level_db=-32.0, latency_ms=10.0)
    loud = _final("k2", "b", "Turn on the kitchen light.", level_db=-18.0, latency_ms=10.0)
    first = asyncio.create_task(arbiter.settle(quiet))
    await asyncio.sleep(0)
    assert not first.done()  # k2's session is open: k1's final waits for it
    clock.now += 0.2
    second = await asyncio.wait_for(arbiter.settle(loud), 0.1)
    lost = await asyncio.wait_for(first, 0.1)
    assert second.rejected is None and second.text == "Turn on the kitchen light."
    assert lost.rejected == DUPLICATE and lost.reason == DUPLICATE
    assert lost.duplicate_of == "b" and lost.text == "" and lost.words == []
    assert lost.latency_ms == pytest.approx(210.0)  # it waited 200 ms for the peer
    assert second.latency_ms == 10.0
    assert arbiter.duplicates == 1 and arbiter.waited == 1


async def test_different_words_at_once_are_both_published() -> None:
    clock = Clock()
    arbiter = _arbiter(clock)
    arbiter.opened(UtteranceKey("k1", "a"), 100.0)
    arbiter.opened(UtteranceKey("k2", "b"), 100.1)
    lights = asyncio.create_task(arbiter.settle(_final("k1", "a", "Turn on the lights.")))
    await asyncio.sleep(0)
    timer = await arbiter.settle(_final("k2", "b", "Set a timer for ten minutes."))
    assert timer.rejected is None
    assert (await lights).rejected is None
    assert arbiter.duplicates == 0


async def test_three_satellites_the_best_of_three_wins() -> None:
    clock = Clock()
    arbiter = _arbiter(clock)
    for device, at in (("k1", 100.0), ("k2", 100.2), ("k3", 100.4)):
        arbiter.opened(UtteranceKey(device, device), at)
    levels = {"k1": -30.0, "k2": -15.0, "k3": -24.0}
    tasks = [
        asyncio.create_task(arbiter.settle(_final(d, d, "What time is it?", level_db=level)))
        for d, level in levels.items()
    ]
    results = {f.device: f for f in await asyncio.wait_for(asyncio.gather(*tasks), 0.5)}
    assert results["k2"].rejected is None
    assert results["k1"].duplicate_of == "k2" and results["k3"].duplicate_of == "k2"


async def test_a_peer_that_never_ends_costs_at_most_the_wait() -> None:
    clock = Clock()
    group = RoomGroup(devices=["k1", "k2"], window_ms=1000, wait_ms=50)
    arbiter = _arbiter(clock, group)
    arbiter.opened(UtteranceKey("k1", "a"), 100.0)
    arbiter.opened(UtteranceKey("k2", "b"), 100.5)  # still talking (or its final is slow)
    pending = asyncio.create_task(arbiter.settle(_final("k1", "a", "Lights on.")))
    await asyncio.sleep(0.01)
    assert not pending.done()
    clock.now += 0.05
    published = await asyncio.wait_for(pending, 0.5)
    assert published.rejected is None
    # the peer's same words, later, lose to the final already published
    late = await arbiter.settle(_final("k2", "b", "Lights on", level_db=0.0, snr_db=90.0))
    assert late.rejected == DUPLICATE and late.duplicate_of == "a"


async def test_sessions_outside_the_window_or_of_one_device_are_not_peers() -> None:
    clock = Clock()
    arbiter = _arbiter(clock)
    arbiter.opened(UtteranceKey("k1", "a"), 100.0)
    arbiter.opened(UtteranceKey("k2", "b"), 101.5)  # 1.5 s later: a second command
    arbiter.opened(UtteranceKey("k1", "c"), 100.2)  # k1's own next session
    first = await asyncio.wait_for(arbiter.settle(_final("k1", "a", "Lights on.")), 0.1)
    assert first.rejected is None
    again = await asyncio.wait_for(arbiter.settle(_final("k2", "b", "Lights on.")), 0.1)
    assert again.rejected is None  # the same words, but asked again


async def test_a_rejected_peer_is_not_waited_for_nor_compared() -> None:
    clock = Clock()
    arbiter = _arbiter(clock)
    arbiter.opened(UtteranceKey("k1", "a"), 100.0)
    arbiter.opened(UtteranceKey("k2", "b"), 100.1)
    noise = make_final(device="k2", session="b", text="", rejected="no_speech")
    assert (await arbiter.settle(noise)).rejected == "no_speech"
    words = await asyncio.wait_for(arbiter.settle(_final("k1", "a", "Lights on.")), 0.1)
    assert words.rejected is None


async def test_the_wait_ends_when_its_timer_fires_even_if_the_clock_lags() -> None:
    clock = Clock()  # never moves: the event loop may run a timer before the clock's time
    group = RoomGroup(devices=["k1", "k2"], window_ms=1000, wait_ms=20)
    arbiter = _arbiter(clock, group)
    arbiter.opened(UtteranceKey("k1", "a"), 100.0)
    arbiter.opened(UtteranceKey("k2", "b"), 100.1)
    published = await asyncio.wait_for(arbiter.settle(_final("k1", "a", "Lights on.")), 1.0)
    assert published.rejected is None
