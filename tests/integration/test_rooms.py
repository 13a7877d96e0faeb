"""Room groups on the real node: satellites hearing the same words give one final.

Real node, broker and tiny.en, real recorded speech: the same clip streamed by
two (three) satellites of one room group at different levels, as the
satellites nearer to and further from a speaker hear it.
"""

from __future__ import annotations

import asyncio

import numpy as np

from orac_node.client import connect
from orac_node.ops import rooms
from orac_node.ops.topics import OK
from orac_node.wire import DUPLICATE, Final
from tests.conftest import AUDIO
from tests.integration.conftest import load
from tests.integration.harness import Harness, RunningNode, harness

NODE_CONFIG: dict[str, object] = {
    "registry": {
        "room_groups": {
            # A generous wait: on a loaded 2-core CI box three finals can queue for
            # seconds, and this module tests who wins, not the default wait.
            "lounge": {"devices": ["lounge-a", "lounge-b", "lounge-c"], "wait_ms": 8000}
        }
    }
}

GO_FORWARD = load(AUDIO / "speech" / "ps_goforward.wav")  # "go forward ten meters"
DIGITS = load(AUDIO / "speech" / "ps_tidigits_dhd_2934z.wav")  # "two nine three four zero"
NEAR, FAR = 1.0, 0.25  # the far satellite hears the speaker 12 dB quieter


async def _together(
    h: Harness, sessions: dict[str, np.ndarray], realtime: bool
) -> dict[str, Final]:
    """Stream one session per device at once; their finals by device."""
    results = await asyncio.gather(
        *(h.session(device, audio, realtime=realtime) for device, audio in sessions.items())
    )
    finals = {device: r.final for device, r in zip(sessions, results, strict=True)}
    assert all(final is not None for final in finals.values())
    return {device: final for device, final in finals.items() if final is not None}


async def test_the_louder_satellite_wins_every_time(node: RunningNode) -> None:
    async with harness(node.url) as h:
        # three rounds; the near satellite changes, so the winner is not "the first device"
        for near in ("lounge-b", "lounge-a", "lounge-b"):
            far = "lounge-a" if near == "lounge-b" else "lounge-b"
            finals = await _together(
                h, {far: GO_FORWARD * FAR, near: GO_FORWARD * NEAR}, realtime=True
            )
            won, lost = finals[near], finals[far]
            assert won.rejected is None and "forward" in won.text.lower(), won
            assert lost.rejected == DUPLICATE and lost.reason == DUPLICATE, lost
            assert lost.duplicate_of == won.session and lost.text == ""
            assert won.level_db is not None and lost.level_db is not None
            assert won.level_db - lost.level_db > 10  # what decided it, as measured


async def test_different_words_at_once_are_both_published(node: RunningNode) -> None:
    async with harness(node.url) as h:
        finals = await _together(
            h, {"lounge-a": GO_FORWARD, "lounge-b": DIGITS * FAR}, realtime=True
        )
    assert finals["lounge-a"].rejected is None and "forward" in finals["lounge-a"].text.lower()
    assert finals["lounge-b"].rejected is None
    assert "nine" in finals["lounge-b"].text.lower() or "9" in finals["lounge-b"].text


async def test_three_satellites_sent_at_once_the_nearest_wins(node: RunningNode) -> None:
    levels = {"lounge-a": 0.3, "lounge-b": 0.1, "lounge-c": 0.9}
    async with harness(node.url) as h:
        finals = await _together(
            h, {device: GO_FORWARD * gain for device, gain in levels.items()}, realtime=False
        )
    winner = finals["lounge-c"]
    assert winner.rejected is None and "forward" in winner.text.lower()
    for device in ("lounge-a", "lounge-b"):
        assert finals[device].rejected == DUPLICATE
        assert finals[device].duplicate_of == winner.session


async def test_a_satellite_outside_the_group_is_not_arbitrated(node: RunningNode) -> None:
    async with harness(node.url) as h:
        finals = await _together(
            h, {"lounge-a": GO_FORWARD, "hallway": GO_FORWARD * FAR}, realtime=True
        )
    assert finals["lounge-a"].rejected is None
    assert finals["hallway"].rejected is None  # the same words, but in another room


async def test_a_retained_room_group_set_from_the_cli_applies_at_once(
    node: RunningNode,
) -> None:
    async with connect(node.url) as mqtt:
        outcome = await rooms.set_room(
            mqtt, "porch", ["porch-1", "porch-2"], window_ms=None, wait_ms=8000, timeout_s=5
        )
        assert outcome.code == OK, outcome.text
        listed = await rooms.list_rooms(mqtt, 1.0)
        assert listed.data["rooms"]["porch"]["devices"] == ["porch-1", "porch-2"]
    try:
        async with harness(node.url) as h:
            finals = await _together(
                h, {"porch-1": GO_FORWARD * FAR, "porch-2": GO_FORWARD}, realtime=False
            )
        assert finals["porch-2"].rejected is None
        assert finals["porch-1"].duplicate_of == finals["porch-2"].session
    finally:
        async with connect(node.url) as mqtt:
            removed = await rooms.remove_room(mqtt, "porch", 5)
        assert removed.code == OK, removed.text
