"""The console's view of the home, from broker messages (pure logic, no broker).

tests/integration/test_console.py runs the page in Chromium against a real node.
"""

from __future__ import annotations

from orac_node.console.view import (
    ERRORS_PER_DEVICE,
    LATENCY_WINDOW_S,
    MAX_DEVICES,
    RECENT_FINALS,
    ConsoleView,
)
from orac_node.wire import ErrorReport, NodeStatus, SatelliteStatus
from tests.factories import final as make_final
from tests.factories import partial as make_partial

NOW = 1_800_000_000.0


def test_a_final_updates_the_live_list_the_satellite_and_the_latencies() -> None:
    view = ConsoleView()
    partial = make_partial(device="kitchen", session="s1", stable="turn on", unstable="the")
    events = view.apply("transcript/general", partial.encode(), NOW)
    assert [e["kind"] for e in events] == ["transcript", "satellite"]
    assert events[0]["stable"] == "turn on" and events[0]["unstable"] == "the"
    assert "words" not in events[0]  # the page has no use for them
    final = make_final(device="kitchen", session="s1", text="Turn on the lights.", latency_ms=321.0)
    events = view.apply("transcript/general", final.encode(), NOW + 1)
    assert events[0]["text"] == "Turn on the lights." and events[0]["latency_ms"] == 321.0
    assert events[1] == {
        "kind": "satellite",
        "device": "kitchen",
        "online": None,  # never sent a heartbeat
        "topics": [],
        "last_heard": final.ts,
        "last_text": "Turn on the lights.",
    }
    snapshot = view.snapshot(NOW + 2)
    assert snapshot["latencies"] == [321.0]
    assert [f["session"] for f in snapshot["finals"]] == ["s1"]  # partials are not kept


def test_a_rejected_final_is_shown_but_not_counted_as_heard_text_or_latency() -> None:
    view = ConsoleView()
    final = make_final(device="hall", text="", rejected="no_speech")
    events = view.apply("transcript/general", final.encode(), NOW)
    assert events[0]["rejected"] == "no_speech"
    assert events[1]["last_text"] is None
    assert view.snapshot(NOW)["latencies"] == []


def test_statuses_heartbeats_and_errors_are_kept_for_pages_opened_later() -> None:
    view = ConsoleView()
    status = NodeStatus("box", "ready", "0.1.0", "tiny.en", 2, 1, NOW, started=NOW - 60)
    view.apply("orac/node/box/status", status.encode(), NOW)
    heartbeat = SatelliteStatus("porch", "online", ["general"], NOW)
    view.apply("orac/satellite/porch/status", heartbeat.encode(), NOW)
    for i in range(ERRORS_PER_DEVICE + 2):
        report = ErrorReport("box", "porch", "bad_payload", f"broken {i}", NOW + i)
        view.apply("orac/device/porch/error", report.encode(), NOW)
    snapshot = view.snapshot(NOW)
    assert snapshot["nodes"][0]["started"] == NOW - 60 and snapshot["nodes"][0]["sessions"] == 2
    assert snapshot["satellites"][0]["online"] is True
    assert snapshot["satellites"][0]["topics"] == ["general"]
    messages = [e["message"] for e in snapshot["errors"]]
    assert messages == [f"broken {i}" for i in range(2, ERRORS_PER_DEVICE + 2)]  # the latest


def test_malformed_messages_are_skipped_and_counted() -> None:
    view = ConsoleView()
    assert view.apply("transcript/general", b"{not json", NOW) == []
    assert view.apply("orac/node/box/status", b'{"node": 1}', NOW) == []
    assert view.apply("orac/device/x/error", b"\xff\xfe", NOW) == []
    assert view.skipped == 3
    assert view.snapshot(NOW)["nodes"] == []


def test_what_is_kept_is_bounded() -> None:
    view = ConsoleView()
    for i in range(RECENT_FINALS + 10):
        final = make_final(device=f"dev{i}", session=f"s{i}", latency_ms=100.0)
        view.apply("transcript/general", final.encode(), NOW - LATENCY_WINDOW_S - 100 + i)
    snapshot = view.snapshot(NOW)
    assert len(snapshot["finals"]) == RECENT_FINALS
    assert snapshot["latencies"] == []  # all older than the hour
    for i in range(MAX_DEVICES + 5):
        view.apply("transcript/general", make_final(device=f"flood{i}").encode(), NOW)
    assert len(view.snapshot(NOW)["satellites"]) == MAX_DEVICES
    assert view.snapshot(NOW)["satellites"][-1]["device"] == f"flood{MAX_DEVICES + 4}"
