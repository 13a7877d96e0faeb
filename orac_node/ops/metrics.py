"""Prometheus metrics of one node, served over HTTP when ``metrics.enabled``.

Two kinds, so that nothing is defined and then forgotten (the service this
node replaces had metrics it never updated):

- Distributions are observed where they happen, from the messages the node
  publishes: :meth:`NodeMetrics.observe_final` and
  :meth:`NodeMetrics.observe_partial` (latencies, decode and queue times,
  finals by reason, gaps).
- Counts and levels the node keeps anyway (messages by kind, drops by cause,
  errors by code, open sessions, queue depth, spool size, reconnects) are read
  at scrape time by :class:`_LiveCollector`, as one :class:`Readings` the node
  assembles from its parts, so they cannot drift from what the node itself
  counts and cost nothing per message.

Labels are never device names or sessions: those are sender-chosen, and a
label per value would let any client grow the node's memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from orac_node.wire import Final, Partial

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0)
"""End-of-speech -> final: speculative finals land in the first buckets, a decode
waiting behind others in the middle, 1.5 s is the "feels instant" limit."""
DECODE_BUCKETS_S = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
"""tiny.en decodes take 0.15-0.5 s on 2 cores; a 30 s window ~2.5 s."""
LAG_BUCKETS_S = (0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0)
"""Partial lag target: p95 under 1 s."""
CONFIDENCE_BUCKETS = (0.15, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
"""Finals below 0.15 are withheld (gate.min_confidence); correct beam-5 finals of the
shared clips ran 0.20-0.97 (median 0.80), so the buckets are finest above 0.5."""
MESSAGE_KINDS = ("chunk", "raw", "file")


@dataclass(frozen=True, slots=True)
class Readings:
    """The counts and levels a node keeps, as read at one scrape."""

    received: Mapping[str, int]  # audio messages by kind
    dropped: Mapping[str, int]  # by cause: late, rate_limited, queue_full, outbox_full
    errors: Mapping[str, int]  # error reports sent, by code
    cache_hits: int
    cache_misses: int
    broker_connects: int
    sessions: int
    queued: int
    spool_bytes: int
    webhooks: Mapping[str, int]  # delivered, failed, dead, lost
    webhook_outbox: int
    requests: Mapping[tuple[str, str], int]  # (method, outcome)
    recent_sessions: int
    context_updates: int
    refused: Mapping[str, int]  # invalid context / registry messages
    lag_s: float = 0.0  # how long a message last waited before it was handled (ingest/load.py)
    session_cap: int | None = None  # the sessions the node lets in at once; None: max_sessions
    overloaded: bool = False  # new sessions are refused for want of room
    wyoming_connections: int = 0  # Wyoming clients connected now (homeassistant/)
    wyoming_replies: Mapping[str, int] = field(default_factory=dict)  # transcript, or error code


class NodeMetrics:
    """The node's registry: observed distributions plus live counts."""

    def __init__(self, read: Callable[[], Readings]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.final_latency = Histogram(
            "orac_node_final_latency_seconds",
            "Endpoint (end of speech) to final published.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.decode = Histogram(
            "orac_node_decode_seconds",
            "whisper.cpp decode time.",
            ["kind"],
            buckets=DECODE_BUCKETS_S,
            registry=r,
        )
        self.queue_wait = Histogram(
            "orac_node_queue_wait_seconds",
            "Time a final waited for a model worker.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.partial_lag = Histogram(
            "orac_node_partial_lag_seconds",
            "Audio received but not yet covered by the newest partial.",
            buckets=LAG_BUCKETS_S,
            registry=r,
        )
        self.finals = Counter(
            "orac_node_finals", "Finals published, by reason.", ["reason"], registry=r
        )
        self.gaps = Counter(
            "orac_node_chunk_gaps", "Chunks never received in finalized sessions.", registry=r
        )
        self.ab_finals = Counter(
            "orac_node_ab_finals",
            "Finals during an A/B test of the finals model, by variant, model and outcome"
            " (text, or the rejection reason).",
            ["variant", "model", "outcome"],
            registry=r,
        )
        self.ab_confidence = Histogram(
            "orac_node_ab_confidence",
            "Confidence of finals with text during an A/B test, by variant.",
            ["variant"],
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.model_load = Gauge(
            "orac_node_model_load_seconds", "Loading and warming the model(s).", registry=r
        )
        r.register(_LiveCollector(read))

    def observe_final(self, final: Final) -> None:
        """Record a published final."""
        self.finals.labels(final.reason).inc()
        self.final_latency.observe(final.latency_ms / 1000)
        if final.decode_ms:
            self.decode.labels("final").observe(final.decode_ms / 1000)
            self.queue_wait.observe(final.queue_ms / 1000)
        if final.gaps:
            self.gaps.inc(final.gaps)

    def observe_variant(self, final: Final, variant: str) -> None:
        """Record a final of an A/B test's ``variant``."""
        self.ab_finals.labels(variant, final.model, final.rejected or "text").inc()
        if final.rejected is None:
            self.ab_confidence.labels(variant).observe(final.confidence)

    def observe_partial(self, partial: Partial) -> None:
        """Record a published partial."""
        self.decode.labels("partial").observe(partial.decode_ms / 1000)
        self.partial_lag.observe(partial.lag_ms / 1000)

    def serve(self, host: str, port: int) -> None:
        """Expose ``/metrics`` on host:port (a daemon thread of prometheus_client)."""
        start_http_server(port, addr=host, registry=self.registry)


class _LiveCollector(Collector):
    """Counts the node keeps anyway, read at scrape time (from the HTTP thread).

    Only ints and copies of dicts are read, which the GIL keeps consistent.
    """

    def __init__(self, read: Callable[[], Readings]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        now = self._read()
        yield _labelled(
            "orac_node_messages_received", "Audio messages received, by kind.", "kind", now.received
        )
        yield _labelled(
            "orac_node_messages_dropped",
            "Messages dropped, by cause (late: after the session's final; rate_limited:"
            " over a device's limits; refused: of a session refused for room (overloaded,"
            " too_many_sessions); queue_full / outbox_full: the node fell behind).",
            "cause",
            now.dropped,
        )
        yield _labelled(
            "orac_node_errors", "Error reports sent to devices, by code.", "code", now.errors
        )
        yield _labelled(
            "orac_node_cache_lookups",
            "Response cache lookups, by result.",
            "result",
            {"hit": now.cache_hits, "miss": now.cache_misses},
        )
        yield CounterMetricFamily(
            "orac_node_broker_connects",
            "Connections made to the broker.",
            value=now.broker_connects,
        )
        yield GaugeMetricFamily("orac_node_sessions_active", "Open sessions.", value=now.sessions)
        yield GaugeMetricFamily(
            "orac_node_queue_depth", "Decode jobs waiting for a worker.", value=now.queued
        )
        yield GaugeMetricFamily(
            "orac_node_spool_bytes", "Audio held in the spool.", value=now.spool_bytes
        )
        yield GaugeMetricFamily(
            "orac_node_lag_seconds",
            "The longest a message waited before it was handled, in the last 50 ms tick"
            " (over ingest.overload_lag_ms for half a second: overloaded).",
            value=now.lag_s,
        )
        yield GaugeMetricFamily(
            "orac_node_session_cap",
            "Sessions the node lets in at once, as learned from its lag (-1: no cap below"
            " ingest.max_sessions).",
            value=-1 if now.session_cap is None else now.session_cap,
        )
        yield GaugeMetricFamily(
            "orac_node_overloaded",
            "1 while new sessions are refused for want of room (the status's overloaded).",
            value=int(now.overloaded),
        )
        yield from _consumer_metrics(now)
        yield GaugeMetricFamily(
            "orac_node_wyoming_connections",
            "Wyoming clients (Home Assistant) connected now.",
            value=now.wyoming_connections,
        )
        yield _labelled(
            "orac_node_wyoming_replies",
            "Answers to Wyoming utterances: transcript, or the error event's code.",
            "kind",
            now.wyoming_replies,
        )


def _labelled(name: str, documentation: str, label: str, counts: Mapping[str, int]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family


def _consumer_metrics(now: Readings) -> Iterator[Metric]:
    """Webhooks, requests, context and the topics registry."""
    yield _labelled(
        "orac_node_webhook_deliveries",
        "Webhook outcomes (delivered: a 2xx; failed: an attempt that will be retried or"
        " dead-lettered; dead: given up, kept as a dead letter; lost: could not be written"
        " to the outbox).",
        "result",
        now.webhooks,
    )
    yield GaugeMetricFamily(
        "orac_node_webhook_outbox",
        "Webhook deliveries waiting (on disk).",
        value=now.webhook_outbox,
    )
    requests = CounterMetricFamily(
        "orac_node_requests",
        "Requests answered, by method and outcome (ok or the error code).",
        labels=["method", "outcome"],
    )
    for (method, outcome), count in sorted(now.requests.items()):
        requests.add_metric([method, outcome], count)
    yield requests
    yield GaugeMetricFamily(
        "orac_node_recent_sessions",
        "Finished sessions held for retranscribe.",
        value=now.recent_sessions,
    )
    yield CounterMetricFamily(
        "orac_node_context_updates",
        "Context messages applied (refused ones are in orac_node_config_refused).",
        value=now.context_updates,
    )
    yield _labelled(
        "orac_node_config_refused",
        "Invalid context, topic config or heartbeat messages refused.",
        "kind",
        now.refused,
    )
