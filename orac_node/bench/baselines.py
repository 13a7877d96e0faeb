"""Direct pywhispercpp decodes of the benchmark clips, in the same run as the node.

Two baselines per clip: pywhispercpp with its default parameters (what a
simple integration gets: 30 s window), and the node's own engine and decode
parameters with no MQTT, VAD or scheduling around it. The node's latency is
reported as a ratio to both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from pywhispercpp.model import Model

from orac_node.bench.corpus import Clip
from orac_node.config import NodeConfig
from orac_node.decode.decoding import DecodeOptions
from orac_node.decode.engine import WhisperEngine


@dataclass(frozen=True)
class BaselineResult:
    """Direct decode time and text of one clip, both ways."""

    clip: str
    default_ms: float
    default_text: str
    node_ms: float
    node_text: str


def run_baselines(clips: list[Clip], model: Path, config: NodeConfig) -> list[BaselineResult]:
    """Decode every clip with default parameters and with the node's (blocking)."""
    threads = config.model.resolved_threads()
    default = Model(
        str(model), redirect_whispercpp_logs_to=None, n_threads=threads, print_progress=False
    )
    engine = WhisperEngine(model, threads=threads)
    options = DecodeOptions.final(config.decode)
    if clips:  # warm both up so the first clip is not an outlier
        default.transcribe(clips[0].samples)
        engine.decode(clips[0].samples, options)
    results = []
    for clip in clips:
        started = time.perf_counter()
        segments = default.transcribe(clip.samples)
        default_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        decoding = engine.decode(clip.samples, options)
        node_ms = (time.perf_counter() - started) * 1000
        results.append(
            BaselineResult(
                clip=clip.name,
                default_ms=round(default_ms, 1),
                default_text=" ".join(s.text for s in segments).strip(),
                node_ms=round(node_ms, 1),
                node_text=decoding.text,
            )
        )
    return results
