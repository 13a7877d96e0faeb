"""Prometheus metrics of a real node: traffic in, scrape, the counts match what was sent."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from orac_node.client import split_chunks
from orac_node.ingest.load import START_CAP
from orac_node.ops.localbroker import free_port
from orac_node.wire import Method, request_topic, response_topic
from tests.conftest import AUDIO
from tests.integration.conftest import load
from tests.integration.harness import RunningNode, harness
from tests.integration.receivers import receiving
from tests.integration.scrape import Samples, scrape

PORT = free_port()
HOOK_PORT = free_port()
NODE_CONFIG: dict[str, object] = {
    "metrics": {"enabled": True, "port": PORT},
    # a topic of its own: the shared broker holds other tests' retained topic configs
    "ingest": {"default_topic": "metrics-hooks"},
    "registry": {
        "topics": {"metrics-hooks": {"webhooks": [{"url": f"http://127.0.0.1:{HOOK_PORT}/hook"}]}}
    },
    "webhooks": {"allow": ["127.0.0.0/8"]},
}
CLIPS = [AUDIO / "commands" / "utt005.wav", AUDIO / "commands" / "utt019.wav"]


def _scrape() -> Samples:
    return scrape(PORT)


async def test_counts_match_the_traffic(node: RunningNode, device: str) -> None:
    before = _scrape()

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    chunks, partials = 0, 0
    reasons: Counter[str] = Counter()
    with receiving(HOOK_PORT) as receiver:
        async with harness(node.url) as h:
            for clip in CLIPS:  # in real time, so partials are published too
                samples = load(clip)
                chunks += len(split_chunks(samples, 20))
                result = await h.session(device, samples, realtime=True)
                assert result.final is not None
                reasons[result.final.reason] += 1
                partials += len(result.partials)
            for payload in (b"not msgpack", b"", b"\x81\xa3seq\xa1x"):
                await h.mqtt.publish(f"audio/{device}/chunk", payload, qos=1)
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ResponseTopic = response_topic("metrics-test", "1")
            await h.mqtt.publish(
                request_topic(Method.DESCRIBE), b"{}", qos=1, properties=properties
            )
            async with asyncio.timeout(10):
                while len(h.errors[device]) < 3 or len(receiver.requests) < 2:
                    await asyncio.sleep(0.05)
    after = _scrape()
    assert delta("orac_node_messages_received_total", kind="chunk") == chunks + 3
    for reason, count in reasons.items():
        assert delta("orac_node_finals_total", reason=reason) == count
    assert delta("orac_node_final_latency_seconds_count") == 2
    assert delta("orac_node_decode_seconds_count", kind="final") == 2
    assert delta("orac_node_errors_total", code="bad_payload") == 2  # not msgpack, empty
    assert delta("orac_node_errors_total", code="bad_field") == 1  # seq is a string
    assert delta("orac_node_messages_dropped_total", cause="queue_full") == 0
    assert after[("orac_node_sessions_active", ())] == 0
    # two satellites' worth of traffic: far from overload (ingest/load.py)
    assert after[("orac_node_overloaded", ())] == 0
    assert after[("orac_node_session_cap", ())] == START_CAP  # never used, never raised
    assert 0 <= after[("orac_node_lag_seconds", ())] < 0.25
    assert delta("orac_node_messages_dropped_total", cause="refused") == 0
    assert after[("orac_node_model_load_seconds", ())] > 0
    assert after[("orac_node_broker_connects_total", ())] >= 1
    assert partials > 0
    assert delta("orac_node_partial_lag_seconds_count") == partials
    assert delta("orac_node_decode_seconds_count", kind="partial") == partials
    # each final with text went to the topic's webhook, and is kept for retranscribe
    assert delta("orac_node_webhook_deliveries_total", result="delivered") == 2
    assert delta("orac_node_webhook_deliveries_total", result="dead") == 0
    assert after[("orac_node_webhook_outbox", ())] == 0
    assert delta("orac_node_recent_sessions") == 2
    assert delta("orac_node_requests_total", method="describe", outcome="ok") == 1


def test_orac_node_metrics_summarizes_the_same_page(node: RunningNode) -> None:
    page = _scrape()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "orac_node.cli",
            "metrics",
            "--json",
            "--url",
            f"http://127.0.0.1:{PORT}/metrics",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    finals = {dict(k[1])["reason"]: v for k, v in page.items() if k[0] == "orac_node_finals_total"}
    assert summary["finals"] == finals
    assert summary["sessions_active"] == page[("orac_node_sessions_active", ())]
    unreachable = subprocess.run(
        [
            sys.executable,
            "-m",
            "orac_node.cli",
            "metrics",
            "--url",
            f"http://127.0.0.1:{free_port()}/metrics",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unreachable.returncode == 2
