"""The bench's consumers scenario: its figures, its one check, its webhook receiver."""

from __future__ import annotations

import time
import urllib.request

import numpy as np

from orac_node.bench.consumers import (
    Delivery,
    Retry,
    receiving,
    summarize_consumers,
)
from orac_node.bench.corpus import Clip
from orac_node.bench.report import format_consumers
from orac_node.bench.streams import StreamRecord
from orac_node.consumers.webhooks.signing import EVENT_ID_HEADER, SIGNATURE_HEADER, sign
from orac_node.wire import Final, TranscriptionEvent
from tests.factories import final


def _clip(name: str, reference: str | None) -> Clip:
    return Clip(name, np.zeros(16_000, dtype=np.float32), reference)


def _final(session: str, text: str) -> Final:
    return final(session=session, text=text, rejected=None if text else "no_speech")


def _record(session: str, clip: Clip, text: str | None, final_at: float) -> StreamRecord:
    record = StreamRecord("consumers", "bench-hooks", session, clip)
    if text is not None:
        record.final, record.final_at = _final(session, text), final_at
    return record


def _delivery(session: str, at: float, *, ok: bool = True) -> Delivery:
    return Delivery(at, f"bench-node:bench-hooks:{session}", session, ok)


def test_everything_answered_and_delivered_once_passes_the_check() -> None:
    a, b, silent = _clip("c/a.wav", "Turn on the lights."), _clip("c/b.wav", None), _clip("x", None)
    records = [
        _record("s1", a, "Turn on the lights.", 10.0),
        _record("s2", b, "Play the radio", 20.0),
        _record("s3", silent, "", 30.0),  # rejected: no webhook expected
    ]
    retries = [
        Retry(a, "Turn on the lights.", "Turn on the light", 110.0, 100.0),
        Retry(b, "Play the radio", "Play the radio.", 205.0, 200.0),
        Retry(silent, "", "", 52.0, 50.0),
    ]
    extra = summarize_consumers(
        describe_ms=[1.0, 2.0, 3.0],
        describe_errors=0,
        records=records,
        retries=retries,
        deliveries=[_delivery("s2", 20.004), _delivery("s1", 10.002)],
    )
    r, w = extra["retranscribe"], extra["webhooks"]
    assert extra["describe"] == {
        "requests": 3,
        "answered": 3,
        "round_trip_ms": {"p50": 2.0, "p95": 2.9},
    }
    assert (r["requests"], r["answered"], r["texts_differ"], r["words_differ"]) == (3, 3, 2, 1)
    assert r["overhead_ms"]["p50"] == 5.0
    assert r["scored"] == 1  # the clip with a reference
    assert r["wer_finals"] == 0.0 and r["wer_retranscribed"] == 0.25  # "light" for "lights"
    assert (w["expected"], w["delivered"], w["duplicates"], w["unexpected"]) == (2, 2, 0, 0)
    assert w["lag_ms"]["p50"] == 3.0  # 2 and 4 ms after the collector saw the finals
    assert extra["check"] == {
        "ok": True,
        "description": "every request answered, every webhook delivered once, signature valid",
        "failures": [],
    }
    text = "\n".join(format_consumers(extra))
    assert "2/2 delivered" in text and text.splitlines()[-1].startswith("PASS")


def test_a_lost_answer_a_duplicate_post_or_a_bad_signature_fails_the_check() -> None:
    a, b = _clip("c/a.wav", "Yes."), _clip("c/b.wav", "No.")
    records = [_record("s1", a, "Yes.", 10.0), _record("s2", b, "No.", 20.0)]
    extra = summarize_consumers(
        describe_ms=[1.0],
        describe_errors=1,
        records=[*records, _record("s3", b, None, 0.0)],  # a stream without a final
        retries=[
            Retry(a, "Yes.", "Yes.", 110.0, 100.0),
            Retry(b, "No.", None, 60_000.0, None, "no answer"),
        ],
        deliveries=[
            _delivery("s1", 10.001),
            _delivery("s1", 10.5),  # a second POST of the same event
            _delivery("s2", 20.001, ok=False),
        ],
    )
    w = extra["webhooks"]
    assert (w["delivered"], w["posts"], w["duplicates"], w["bad_signatures"]) == (1, 3, 1, 1)
    assert w["lag_ms"]["p50"] == 1.0  # the first POST of s1 only
    assert extra["retranscribe"]["errors"] == ["no answer"]
    assert not extra["check"]["ok"]
    assert extra["check"]["failures"] == [
        "1 stream(s) without a final",
        "1 describe(s) failed",
        "1/2 retranscribes answered",
        "1/2 webhooks delivered",
        "1 duplicate and 0 unexpected POST(s)",
        "1 bad signature(s)",
    ]
    assert "\n".join(format_consumers(extra)).splitlines()[-1].startswith("MISS")


def test_nothing_measured_is_null_not_nan() -> None:
    extra = summarize_consumers(
        describe_ms=[], describe_errors=0, records=[], retries=[], deliveries=[]
    )
    assert extra["retranscribe"]["round_trip_ms"] == {"p50": None, "p95": None}
    assert extra["retranscribe"]["wer_finals"] is None
    assert extra["webhooks"]["lag_ms"] == {"p50": None, "p95": None}
    assert "p50 - ms" in "\n".join(format_consumers(extra))


def test_receiver_times_each_post_and_checks_its_signature() -> None:
    secret = "s3cret"
    event = TranscriptionEvent.from_final(_final("s1", "Turn on the lights."))
    body = event.encode()
    with receiving(secret) as receiver:
        for key in (secret, "wrong"):
            request = urllib.request.Request(
                receiver.url,
                data=body,
                headers={
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign(key, body, int(time.time())),
                    EVENT_ID_HEADER: event.id,
                },
            )
            before = time.monotonic()
            with urllib.request.urlopen(request, timeout=5) as answer:
                assert answer.status == 200
            assert before <= receiver.deliveries()[-1].at <= time.monotonic()
        got = receiver.deliveries()
    assert [(d.event_id, d.session, d.signature_ok) for d in got] == [
        (event.id, "s1", True),
        (event.id, "s1", False),
    ]
