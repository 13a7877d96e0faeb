"""The ``consumers`` scenario: what ORAC Core's interfaces cost on the bench's node.

Core reaches a node three ways besides reading transcripts, and each has a cost
a satellite never sees:

- ``describe`` requests (MQTT v5 request/response through :class:`Client`): the
  round trip of the request machinery itself, with no decode behind it.
- ``retranscribe`` (Core's confidence retry): the round trip against the
  decode time the node reports, so the difference is what the request path
  adds on top of the decode. Beam 5, so the response cache (off on the bench
  node anyway) could not answer it from the streamed final's decode.
- Webhooks: a retained topic config (the live topics registry) points the
  scenario's own topic at a receiver in this process; lag is the receiver's
  arrival time minus the moment the bench's collector saw the same final on
  MQTT, both on this process's monotonic clock.

The clips are streamed first (as fast as the node takes them, a short gap after
each final) and retranscribed afterwards, so webhook lag measures delivery, not
a beam-5 decode competing for the same cores. There are no targets for these:
they are measurements, plus one check that every request was answered and
every webhook delivered once with a valid signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiomqtt
import numpy as np

from orac_node.bench.corpus import Clip
from orac_node.bench.scoring import wer
from orac_node.bench.streams import Collector, StreamRecord, stream_clip
from orac_node.client import Client
from orac_node.consumers.webhooks.signing import EVENT_ID_HEADER, SIGNATURE_HEADER, verify
from orac_node.errors import ContractError, OracNodeError
from orac_node.ops.localbroker import free_port
from orac_node.wire import TopicConfig, TranscriptionEvent, WebhookTarget, topic_config_topic

log = logging.getLogger(__name__)

DESCRIBES = 20
BEAM_SIZE = 5
"""Not the node's greedy default, so the retranscription is a decode of its own."""
DEVICE = "bench-hooks"
GAP_S = 0.3
"""Pause after each final, as in ``single``: the webhook goes out on a quiet bus."""
CONFIG_SETTLE_S = 0.5
"""Time for the node's registry to take the retained topic config."""
DELIVERY_WAIT_S = 15.0
"""Longest wait for the webhooks after the last final (a retry backs off 0.2 s)."""
REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Delivery:
    """One POST the receiver got."""

    at: float  # time.monotonic() once the body was read
    event_id: str
    session: str | None  # None: the body is not a TranscriptionEvent
    signature_ok: bool


@dataclass(frozen=True)
class Retry:
    """One ``retranscribe`` of a streamed final."""

    clip: Clip
    final_text: str
    text: str | None  # None: no (successful) answer
    round_trip_ms: float
    decode_ms: float | None
    error: str | None = None


class HookReceiver:
    """A webhook receiver on 127.0.0.1 that records each POST's arrival and checks it.

    The standard library's threading server in a thread of its own, so an
    arrival is timed when it happens rather than when the bench's event loop
    gets to it. HTTP/1.0: every answer closes its connection, so ``close``
    does not wait on idle keep-alive connections.
    """

    def __init__(self, secret: str) -> None:
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                at = time.monotonic()
                try:
                    session: str | None = TranscriptionEvent.decode(body).session
                except ContractError:
                    session = None
                signed = verify(secret, self.headers.get(SIGNATURE_HEADER, ""), body)
                with receiver._lock:
                    receiver._deliveries.append(
                        Delivery(at, self.headers.get(EVENT_ID_HEADER, ""), session, signed)
                    )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002, ANN401
                """Quiet: the bench reports deliveries, not access lines."""

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        # A short poll so close() (shutdown waits for the loop to look) takes milliseconds.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="bench-hooks",
            daemon=True,
        )
        self._thread.start()

    def deliveries(self) -> list[Delivery]:
        """What arrived so far."""
        with self._lock:
            return list(self._deliveries)

    def close(self) -> None:
        """Stop serving and join the handler threads."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@contextlib.contextmanager
def receiving(secret: str) -> Iterator[HookReceiver]:
    """A :class:`HookReceiver` for the duration of the block."""
    receiver = HookReceiver(secret)
    try:
        yield receiver
    finally:
        receiver.close()


def _pcts(values: list[float]) -> dict[str, float | None]:
    """p50 and p95 in ms, rounded; None without values (JSON null, not NaN)."""
    if not values:
        return {"p50": None, "p95": None}
    return {f"p{q}": round(float(np.percentile(values, q)), 1) for q in (50, 95)}


def summarize_consumers(
    *,
    describe_ms: list[float],  # the answered ones
    describe_errors: int,
    records: list[StreamRecord],
    retries: list[Retry],
    deliveries: list[Delivery],
) -> dict[str, Any]:
    """The scenario's figures and its one check, from what was measured.

    A webhook is expected for every final with text (the node sends none for a
    rejected one); it counts as delivered when a POST for its session arrived
    with a valid signature. Lag is taken from the first POST of each session.
    """
    from whisper_normalizer.english import EnglishTextNormalizer  # noqa: PLC0415 - bench-only

    norm = EnglishTextNormalizer()
    answered = [r for r in retries if r.text is not None and r.decode_ms is not None]
    round_trips = [r.round_trip_ms for r in answered]
    decodes = [r.decode_ms for r in answered if r.decode_ms is not None]
    overheads = [r.round_trip_ms - r.decode_ms for r in answered if r.decode_ms is not None]
    scored = [r for r in answered if r.clip.reference is not None]
    refs = [r.clip.reference or "" for r in scored]

    finals = {r.session: r for r in records if r.final is not None and r.final.text}
    first: dict[str, Delivery] = {}
    for d in sorted(deliveries, key=lambda d: d.at):
        if d.session in finals and d.signature_ok:
            first.setdefault(d.session, d)
    lags = [(d.at - finals[s].final_at) * 1000 for s, d in first.items()]
    unexpected = sum(1 for d in deliveries if d.session not in finals)
    bad_signatures = sum(1 for d in deliveries if not d.signature_ok)
    duplicates = len(deliveries) - len({d.event_id for d in deliveries})

    streamed_finals = sum(1 for r in records if r.final is not None)
    failures = []
    if streamed_finals != len(records):
        failures.append(f"{len(records) - streamed_finals} stream(s) without a final")
    if describe_errors:
        failures.append(f"{describe_errors} describe(s) failed")
    if len(answered) != streamed_finals:
        failures.append(f"{len(answered)}/{streamed_finals} retranscribes answered")
    if len(first) != len(finals):
        failures.append(f"{len(first)}/{len(finals)} webhooks delivered")
    if duplicates or unexpected:
        failures.append(f"{duplicates} duplicate and {unexpected} unexpected POST(s)")
    if bad_signatures:
        failures.append(f"{bad_signatures} bad signature(s)")
    return {
        "describe": {
            "requests": len(describe_ms) + describe_errors,
            "answered": len(describe_ms),
            "round_trip_ms": _pcts(describe_ms),
        },
        "retranscribe": {
            "requests": len(retries),
            "answered": len(answered),
            "errors": [r.error for r in retries if r.error],
            "beam_size": BEAM_SIZE,
            "round_trip_ms": _pcts(round_trips),
            "decode_ms": _pcts(decodes),
            "overhead_ms": _pcts(overheads),
            "texts_differ": sum(1 for r in answered if r.text != r.final_text),
            # Differences that survive WER's normalization (not just case or punctuation).
            "words_differ": sum(1 for r in answered if norm(r.text or "") != norm(r.final_text)),
            "scored": len(scored),
            "wer_finals": wer(refs, [r.final_text for r in scored]) if scored else None,
            "wer_retranscribed": wer(refs, [r.text or "" for r in scored]) if scored else None,
        },
        "retranscriptions": [
            {
                "clip": r.clip.name,
                "final": r.final_text,
                "text": r.text,
                "round_trip_ms": round(r.round_trip_ms, 1),
                "decode_ms": r.decode_ms,
            }
            for r in retries
        ],
        "webhooks": {
            "expected": len(finals),
            "delivered": len(first),
            "posts": len(deliveries),
            "duplicates": duplicates,
            "unexpected": unexpected,
            "bad_signatures": bad_signatures,
            "lag_ms": _pcts(lags),
        },
        "check": {
            "ok": not failures,
            "description": "every request answered, every webhook delivered once, signature valid",
            "failures": failures,
        },
    }


async def _describes(client: Client) -> tuple[list[float], int]:
    """Round trips of :data:`DESCRIBES` describes to ``any``, after one that is not timed.

    The first request of a client also subscribes to its response topic: a
    once-per-client cost, not the interface's.
    """
    await client.describe(timeout=REQUEST_TIMEOUT_S)
    times: list[float] = []
    errors = 0
    for _ in range(DESCRIBES):
        started = time.perf_counter()
        try:
            await client.describe(timeout=REQUEST_TIMEOUT_S)
        except OracNodeError as exc:
            log.warning("describe failed: %s", exc)
            errors += 1
            continue
        times.append((time.perf_counter() - started) * 1000)
    return times, errors


async def _retranscribe(client: Client, record: StreamRecord) -> Retry:
    assert record.final is not None
    started = time.perf_counter()
    try:
        answer = await client.retranscribe(
            record.final, beam_size=BEAM_SIZE, timeout=REQUEST_TIMEOUT_S
        )
    except OracNodeError as exc:
        log.warning("retranscribe of %s failed: %s", record.clip.name, exc)
        ms = (time.perf_counter() - started) * 1000
        return Retry(record.clip, record.final.text, None, ms, None, str(exc))
    ms = (time.perf_counter() - started) * 1000
    log.info(
        "%-12s %-10s %-28s %6.0f ms (decode %.0f ms)  %s",
        "retranscribe",
        DEVICE,
        record.clip.name,
        ms,
        answer.decode_ms,
        answer.text or f"({answer.rejected})",
    )
    return Retry(record.clip, record.final.text, answer.text, ms, answer.decode_ms)


async def _await_deliveries(receiver: HookReceiver, records: list[StreamRecord]) -> None:
    """Until a POST arrived for every final with text, or :data:`DELIVERY_WAIT_S`."""
    wanted = {r.session for r in records if r.final is not None and r.final.text}
    deadline = time.monotonic() + DELIVERY_WAIT_S
    while time.monotonic() < deadline:
        if wanted <= {d.session for d in receiver.deliveries()}:
            return
        await asyncio.sleep(0.05)
    log.warning("webhooks: not every final was delivered within %.0f s", DELIVERY_WAIT_S)


async def run_consumers(
    url: str, mqtt: aiomqtt.Client, collector: Collector, clips: list[Clip]
) -> tuple[list[StreamRecord], dict[str, Any]]:
    """Describe, stream with a webhook, retranscribe; the streams, and the figures for ``extra``."""
    topic = f"bench-hooks-{uuid.uuid4().hex[:8]}"
    secret = secrets.token_hex(16)
    config_topic = topic_config_topic(topic)
    records: list[StreamRecord] = []
    retries: list[Retry] = []
    async with Client(url, timeout=REQUEST_TIMEOUT_S) as client:
        describe_ms, describe_errors = await _describes(client)
        with receiving(secret) as receiver:
            config = TopicConfig(webhooks=[WebhookTarget(url=receiver.url, secret=secret)])
            await mqtt.publish(config_topic, config.model_dump_json().encode(), qos=1, retain=True)
            try:
                await asyncio.sleep(CONFIG_SETTLE_S)
                for clip in clips:
                    records.append(
                        await stream_clip(
                            mqtt,
                            collector,
                            clip,
                            scenario="consumers",
                            device=DEVICE,
                            realtime=False,
                            topic=topic,
                        )
                    )
                    await asyncio.sleep(GAP_S)
                await _await_deliveries(receiver, records)
                for record in records:
                    if record.final is not None:
                        retries.append(await _retranscribe(client, record))
                await asyncio.sleep(GAP_S)  # a duplicate POST would have come by now
                deliveries = receiver.deliveries()
            finally:
                await mqtt.publish(config_topic, b"", qos=1, retain=True)
    extra = summarize_consumers(
        describe_ms=describe_ms,
        describe_errors=describe_errors,
        records=records,
        retries=retries,
        deliveries=deliveries,
    )
    extra["topic"] = topic
    log.info(
        "consumers: describe p50 %s ms; retranscribe p50 %s ms (decode %s ms); webhooks %d/%d,"
        " lag p50 %s ms",
        extra["describe"]["round_trip_ms"]["p50"],
        extra["retranscribe"]["round_trip_ms"]["p50"],
        extra["retranscribe"]["decode_ms"]["p50"],
        extra["webhooks"]["delivered"],
        extra["webhooks"]["expected"],
        extra["webhooks"]["lag_ms"]["p50"],
    )
    return records, extra
