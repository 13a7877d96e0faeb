"""Shared body of the accuracy tests: stream a folder, decode it offline, compare."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from orac_node.config import NodeConfig
from orac_node.decode.engine import WhisperEngine
from orac_node.decode.offline import transcribe
from tests.conftest import MODEL
from tests.integration.accuracy import word_error_rate
from tests.integration.conftest import load, load_refs
from tests.integration.harness import RunningNode, harness

ALLOWED_EXTRA_WER = 0.005
"""Streaming may be at most 0.5 points worse than offline (issue 2)."""


@dataclass
class Comparison:
    streaming_wer: float
    offline_wer: float
    latencies_ms: list[float]
    client_latencies_ms: list[float]
    partial_counts: list[int]

    def report(self, label: str) -> str:
        return (
            f"{label}: WER streaming {self.streaming_wer:.1%} vs offline {self.offline_wer:.1%};"
            f" endpoint->final median {statistics.median(self.latencies_ms):.0f} ms"
            f" (client-side {statistics.median(self.client_latencies_ms):.0f} ms),"
            f" partials per utterance median {statistics.median(self.partial_counts)}"
        )


async def compare(
    node: RunningNode, device: str, folder: str, config: dict[str, Any], *, realtime: bool
) -> Comparison:
    rows = load_refs(folder)
    refs = [text for _, text in rows]
    streamed: list[str] = []
    latencies, client_latencies, partial_counts = [], [], []
    async with harness(node.url) as h:
        for path, _ in rows:
            result = await h.session(device, load(path), realtime=realtime)
            final = result.final
            assert final is not None
            assert final.rejected is None, f"{path.name} rejected: {final}"
            streamed.append(final.text)
            latencies.append(final.latency_ms)
            client_latencies.append((result.final_time - result.audio_done_time) * 1000)
            partial_counts.append(len(result.partials))
    engine = WhisperEngine(MODEL, threads=2)
    node_config = NodeConfig.model_validate(config)
    offline = [transcribe(engine, load(path), node_config).text for path, _ in rows]
    return Comparison(
        streaming_wer=word_error_rate(refs, streamed),
        offline_wer=word_error_rate(refs, offline),
        latencies_ms=latencies,
        client_latencies_ms=client_latencies,
        partial_counts=partial_counts,
    )
