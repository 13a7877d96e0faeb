"""Prometheus metrics of one node, served over HTTP when ``metrics.enabled``.

Two kinds, so that nothing is defined and then forgotten (the service this
node replaces had metrics it never updated):

- Distributions are observed where they happen, from the messages the node
  publishes: :meth:`NodeMetrics.observe_final` and
  :meth:`NodeMetrics.observe_partial` (latencies, decode and queue times,
  finals by reason, gaps).
- Counts and levels the node keeps anyway (messages by kind, drops by cause,
  errors by code, open sessions, queue depth, spool size, reconnects) are read
  from the node at scrape time by :class:`_LiveCollector`, so they cannot
  drift from what the node itself counts and cost nothing per message.

Labels are never device names or sessions: those are sender-chosen, and a
label per value would let any client grow the node's memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from orac_node.contract import Final, Partial

if TYPE_CHECKING:
    from orac_node.node import Node

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0)
"""End-of-speech -> final: speculative finals land in the first buckets, a decode
waiting behind others in the middle, 1.5 s is the "feels instant" limit."""
DECODE_BUCKETS_S = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
"""tiny.en decodes take 0.15-0.5 s on 2 cores; a 30 s window ~2.5 s."""
LAG_BUCKETS_S = (0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0)
"""Partial lag target: p95 under 1 s."""
MESSAGE_KINDS = ("chunk", "raw", "file")


class NodeMetrics:
    """The node's registry: observed distributions plus live counts."""

    def __init__(self, node: Node) -> None:
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
        self.model_load = Gauge(
            "orac_node_model_load_seconds", "Loading and warming the model(s).", registry=r
        )
        r.register(_LiveCollector(node))

    def observe_final(self, final: Final) -> None:
        """Record a published final."""
        self.finals.labels(final.reason).inc()
        self.final_latency.observe(final.latency_ms / 1000)
        if final.decode_ms:
            self.decode.labels("final").observe(final.decode_ms / 1000)
            self.queue_wait.observe(final.queue_ms / 1000)
        if final.gaps:
            self.gaps.inc(final.gaps)

    def observe_partial(self, partial: Partial) -> None:
        """Record a published partial."""
        self.decode.labels("partial").observe(partial.decode_ms / 1000)
        self.partial_lag.observe(partial.lag_ms / 1000)

    def serve(self, host: str, port: int) -> None:
        """Expose ``/metrics`` on host:port (a daemon thread of prometheus_client)."""
        start_http_server(port, addr=host, registry=self.registry)


class _LiveCollector(Collector):
    """Counts the node keeps anyway, read at scrape time (from the HTTP thread).

    Only ints and a copy of dicts are read, which the GIL keeps consistent.
    """

    def __init__(self, node: Node) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        node = self._node
        received = CounterMetricFamily(
            "orac_node_messages_received", "Audio messages received, by kind.", labels=["kind"]
        )
        for kind, count in sorted(dict(node.received).items()):
            received.add_metric([kind], count)
        yield received
        dropped = CounterMetricFamily(
            "orac_node_messages_dropped",
            "Messages dropped, by cause (late: after the session's final; rate_limited:"
            " over a device's limits; queue_full / outbox_full: the node fell behind).",
            labels=["cause"],
        )
        dropped.add_metric(["late"], node.intake.late_chunks)
        dropped.add_metric(["rate_limited"], node.intake.throttled)
        dropped.add_metric(["queue_full"], node.bus.incoming_dropped)
        dropped.add_metric(["outbox_full"], node.bus.outbox_dropped)
        yield dropped
        errors = CounterMetricFamily(
            "orac_node_errors", "Error reports sent to devices, by code.", labels=["code"]
        )
        for code, count in sorted(dict(node.errors).items()):
            errors.add_metric([code], count)
        yield errors
        cache = CounterMetricFamily(
            "orac_node_cache_lookups", "Response cache lookups, by result.", labels=["result"]
        )
        cache.add_metric(["hit"], node.cache_hits)
        cache.add_metric(["miss"], node.cache_misses)
        yield cache
        yield CounterMetricFamily(
            "orac_node_broker_connects", "Connections made to the broker.", value=node.bus.connects
        )
        yield GaugeMetricFamily(
            "orac_node_sessions_active", "Open sessions.", value=len(node.intake.utterances)
        )
        yield GaugeMetricFamily(
            "orac_node_queue_depth", "Decode jobs waiting for a worker.", value=node.queue_depth
        )
        spool = node.spool
        yield GaugeMetricFamily(
            "orac_node_spool_bytes",
            "Audio held in the spool.",
            value=spool.size_bytes if spool else 0,
        )
        yield from _consumer_metrics(node)


def _consumer_metrics(node: Node) -> Iterator[Metric]:
    """Webhooks, requests, context and the topics registry."""
    webhooks = node.webhooks
    deliveries = CounterMetricFamily(
        "orac_node_webhook_deliveries",
        "Webhook outcomes (delivered: a 2xx; failed: an attempt that will be retried or"
        " dead-lettered; dead: given up, kept as a dead letter; lost: could not be written"
        " to the outbox).",
        labels=["result"],
    )
    deliveries.add_metric(["delivered"], webhooks.delivered)
    deliveries.add_metric(["failed"], webhooks.failed_attempts)
    deliveries.add_metric(["dead"], webhooks.dead)
    deliveries.add_metric(["lost"], webhooks.lost)
    yield deliveries
    yield GaugeMetricFamily(
        "orac_node_webhook_outbox", "Webhook deliveries waiting (on disk).", value=webhooks.queued
    )
    requests = CounterMetricFamily(
        "orac_node_requests",
        "Requests answered, by method and outcome (ok or the error code).",
        labels=["method", "outcome"],
    )
    for (method, outcome), count in sorted(dict(node.requests.handled).items()):
        requests.add_metric([method, outcome], count)
    yield requests
    yield GaugeMetricFamily(
        "orac_node_recent_sessions",
        "Finished sessions held for retranscribe.",
        value=len(node.recent),
    )
    yield CounterMetricFamily(
        "orac_node_context_updates",
        "Context messages applied (refused ones are in orac_node_config_refused).",
        value=node.context.updates,
    )
    refused = CounterMetricFamily(
        "orac_node_config_refused",
        "Invalid context, topic config or heartbeat messages refused.",
        labels=["kind"],
    )
    refused.add_metric(["context"], node.context_refused)
    refused.add_metric(["registry"], node.registry.invalid)
    yield refused
