"""Webhook delivery against real HTTP receivers on 127.0.0.1 and free ports.

Each receiver is the standard library's threading HTTP server in its own thread,
told per test how to answer (status, delay, Retry-After). Backoff and timeouts are
shrunk to tenths of a second so retries, dead letters and outages take a second or
two of wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from orac_node import __version__
from orac_node.config import WebhooksSection
from orac_node.consumers.webhooks import WebhookDelivery
from orac_node.consumers.webhooks.signing import verify
from orac_node.ops.localbroker import free_port
from orac_node.wire import TranscriptionEvent, WebhookTarget
from tests.integration.receivers import Request, receiving

SECRET = "receiver-secret"
TIMEOUT_S = 0.3


def settings(**overrides: Any) -> WebhooksSection:
    values: dict[str, Any] = {
        "timeout_s": TIMEOUT_S,
        "max_attempts": 3,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
        "allow": ["127.0.0.0/8"],
    }
    return WebhooksSection.model_validate({**values, **overrides})


@contextlib.asynccontextmanager
async def running(config: WebhooksSection, state_dir: Path) -> AsyncIterator[WebhookDelivery]:
    """A delivery with its loop running; cancelled and closed on exit."""
    delivery = WebhookDelivery(config, state_dir)
    task = asyncio.create_task(delivery.run(), name="webhooks")
    try:
        yield delivery
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await delivery.close()


async def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        await asyncio.sleep(0.02)


def event(n: int, *, text: str = "turn on the kitchen lights") -> TranscriptionEvent:
    return TranscriptionEvent(
        id=f"node-1:kitchen-sat:s{n}",
        event="transcription.complete",
        topic="kitchen",
        device="kitchen-sat",
        session=f"s{n}",
        text=text,
        confidence=0.93,
        language="en",
        timestamp=1_700_000_000.5 + n,
        node="node-1",
        model="tiny.en",
        audio_s=2.25,
    )


async def test_a_healthy_receiver_gets_each_event_once_and_signed(tmp_path: Path) -> None:
    sent = event(1, text="réglez le thermostat à 21 °C")
    with receiving() as receiver:
        async with running(settings(), tmp_path) as delivery:
            delivery.submit(
                sent,
                [
                    WebhookTarget(url=receiver.url("/signed?token=abc"), secret=SECRET),
                    WebhookTarget(url=receiver.url("/plain")),
                ],
            )
            await eventually(lambda: len(receiver.requests) == 2)
            await asyncio.sleep(0.3)  # nothing more arrives
            assert (delivery.delivered, delivery.queued, delivery.failed_attempts) == (2, 0, 0)
    by_path = {r.path: r for r in receiver.requests}
    assert set(by_path) == {"/signed?token=abc", "/plain"}
    signed = by_path["/signed?token=abc"]
    assert verify(SECRET, signed.headers["x-orac-signature"], signed.body)
    assert not verify("wrong", signed.headers["x-orac-signature"], signed.body)
    assert "x-orac-signature" not in by_path["/plain"].headers
    for request in receiver.requests:
        assert TranscriptionEvent.decode(request.body) == sent
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-orac-event"] == "transcription.complete"
        assert request.headers["x-orac-event-id"] == sent.id
        assert request.headers["x-orac-delivery-attempt"] == "1"
        assert request.headers["user-agent"] == f"orac-node/{__version__}"
        assert request.headers["host"] == f"127.0.0.1:{receiver.port}"


async def test_a_host_name_is_sent_as_host_while_the_checked_address_is_used(
    tmp_path: Path,
) -> None:
    with receiving() as receiver:
        async with running(settings(allow=["localhost"]), tmp_path) as delivery:
            url = f"http://localhost:{receiver.port}/hook"
            delivery.submit(event(1), [WebhookTarget(url=url)])
            await eventually(lambda: delivery.delivered == 1)
    assert receiver.requests[0].headers["host"] == f"localhost:{receiver.port}"


async def test_a_slow_receiver_is_retried_and_does_not_delay_a_healthy_one(
    tmp_path: Path,
) -> None:
    timeout_s = 0.6  # so that "not delayed" (< half of it) has a margin on a busy machine
    with receiving(delay_s=60) as slow, receiving() as healthy:
        async with running(settings(timeout_s=timeout_s), tmp_path) as delivery:
            # As many events as there are delivery slots: only the per-receiver bound
            # keeps slots free for the healthy receiver.
            for n in range(16):
                delivery.submit(event(n), [WebhookTarget(url=slow.url())])
            await eventually(lambda: len(slow.requests) >= 4)
            submitted = time.monotonic()
            delivery.submit(event(99), [WebhookTarget(url=healthy.url())])
            await eventually(lambda: len(healthy.requests) == 1)
            assert healthy.requests[0].at - submitted < timeout_s / 2
            assert delivery.delivered == 1
            await eventually(
                lambda: "2" in {r.headers["x-orac-delivery-attempt"] for r in slow.requests}
            )
            assert delivery.retries >= 1
    retried = [r for r in slow.requests if r.headers["x-orac-delivery-attempt"] == "2"]
    assert retried[0].headers["x-orac-event-id"] in {event(n).id for n in range(16)}


async def test_a_failing_receiver_gets_max_attempts_then_one_dead_letter(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="orac_node.consumers.webhooks")
    sent = event(1)
    with receiving(answer=lambda _r, _n: (500, {}, b"database down")) as receiver:
        async with running(settings(max_attempts=3), tmp_path) as delivery:
            delivery.submit(sent, [WebhookTarget(url=receiver.url(), secret=SECRET)])
            await eventually(lambda: delivery.dead == 1)
            await asyncio.sleep(0.4)  # no fourth attempt
            assert (delivery.failed_attempts, delivery.retries, delivery.queued) == (3, 2, 0)
            (letter,) = delivery.dead_letters()
    assert [r.headers["x-orac-delivery-attempt"] for r in receiver.requests] == ["1", "2", "3"]
    assert set(receiver.ids()) == {sent.id}
    assert all(verify(SECRET, r.headers["x-orac-signature"], r.body) for r in receiver.requests)
    assert (letter.event_id, letter.url, letter.attempts) == (sent.id, receiver.url(), 3)
    assert letter.last_error == "HTTP 500: database down"
    assert letter.body == sent.encode()
    assert letter.created_at <= letter.dead_at
    # The log says what happened without the secret, the body or the receiver's answer.
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert (
        f"webhook {sent.id} to {receiver.url()} dead-lettered after 3 attempts: HTTP 500" in logged
    )
    for line in (r.getMessage() for r in caplog.records):
        assert SECRET not in line and sent.text not in line and "database down" not in line


async def test_a_4xx_is_dead_lettered_after_one_attempt(tmp_path: Path) -> None:
    with receiving(answer=lambda _r, _n: (400, {}, b"missing field\n  text")) as receiver:
        async with running(settings(max_attempts=5), tmp_path) as delivery:
            delivery.submit(event(1), [WebhookTarget(url=receiver.url())])
            await eventually(lambda: delivery.dead == 1)
            await asyncio.sleep(0.3)
            (letter,) = delivery.dead_letters()
    assert len(receiver.requests) == 1
    assert (letter.attempts, letter.last_error) == (1, "HTTP 400: missing field text")


async def test_a_429_waits_for_retry_after(tmp_path: Path) -> None:
    def busy_once(_request: Request, n: int) -> tuple[int, dict[str, str], bytes]:
        return (429, {"Retry-After": "0.5"}, b"") if n == 0 else (200, {}, b"")

    with receiving(answer=busy_once) as receiver:
        async with running(settings(backoff_max_s=2.0), tmp_path) as delivery:
            delivery.submit(event(1), [WebhookTarget(url=receiver.url())])
            await eventually(lambda: delivery.delivered == 1)
    first, second = receiver.requests
    assert second.at - first.at >= 0.5
    assert second.headers["x-orac-delivery-attempt"] == "2"


async def test_a_receiver_down_then_up_gets_everything_once(tmp_path: Path) -> None:
    port = free_port()
    target = WebhookTarget(url=f"http://127.0.0.1:{port}/hook", secret=SECRET)
    async with running(settings(max_attempts=100), tmp_path) as delivery:
        for n in range(6):  # submitted over 1.5 s while nothing listens
            delivery.submit(event(n), [target])
            await asyncio.sleep(0.25)
        assert delivery.failed_attempts >= 6
        assert delivery.delivered == 0
        with receiving(port) as receiver:
            await eventually(lambda: delivery.delivered == 6)
            await asyncio.sleep(0.4)
        assert (delivery.queued, delivery.dead) == (0, 0)
    assert sorted(receiver.ids()) == sorted(event(n).id for n in range(6))


async def test_the_outbox_is_delivered_by_the_next_instance(tmp_path: Path) -> None:
    port = free_port()
    target = WebhookTarget(url=f"http://127.0.0.1:{port}/hook")
    async with running(settings(max_attempts=100), tmp_path) as first:
        for n in range(3):
            first.submit(event(n), [target])
        await eventually(lambda: first.failed_attempts >= 3)
    with receiving(port) as receiver:
        async with running(settings(max_attempts=100), tmp_path) as second:
            assert second.queued == 3
            await eventually(lambda: second.delivered == 3)
            await asyncio.sleep(0.3)
            assert second.queued == 0
    assert sorted(receiver.ids()) == [event(n).id for n in range(3)]
    attempts = [int(r.headers["x-orac-delivery-attempt"]) for r in receiver.requests]
    assert all(a >= 2 for a in attempts)  # the first instance's attempts were kept


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{port}/hook", "127.0.0.1 is 127.0.0.1 (loopback)"),
        ("http://[::1]:{port}/hook", "::1 is ::1 (loopback)"),
        ("http://169.254.169.254/latest", "169.254.169.254 is 169.254.169.254 (link-local)"),
    ],
)
async def test_without_an_allowlist_this_machine_is_refused(
    tmp_path: Path, url: str, reason: str
) -> None:
    with receiving() as receiver:
        async with running(settings(allow=[]), tmp_path) as delivery:
            delivery.submit(event(1), [WebhookTarget(url=url.format(port=receiver.port))])
            await eventually(lambda: delivery.dead == 1)
            (letter,) = delivery.dead_letters()
            assert delivery.failed_attempts == 0
    assert receiver.requests == []
    assert (letter.attempts, letter.last_error) == (0, f"destination not allowed: {reason}")


async def test_an_address_outside_the_allowlist_is_refused(tmp_path: Path) -> None:
    with receiving() as receiver:
        async with running(settings(allow=["10.0.0.0/8"]), tmp_path) as delivery:
            delivery.submit(event(1), [WebhookTarget(url=receiver.url())])
            await eventually(lambda: delivery.dead == 1)
            (letter,) = delivery.dead_letters()
    assert receiver.requests == []
    assert letter.last_error == (
        "destination not allowed: 127.0.0.1 (127.0.0.1) is not in webhooks.allow"
    )


async def test_a_huge_answer_is_not_read_whole(tmp_path: Path) -> None:
    with receiving(answer=lambda _r, _n: (200, {}, b"x" * 4_000_000)) as receiver:
        async with running(settings(), tmp_path) as delivery:
            delivery.submit(event(1), [WebhookTarget(url=receiver.url())])
            await eventually(lambda: delivery.delivered == 1)
    assert len(receiver.requests) == 1
