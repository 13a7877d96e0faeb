r"""Comparing pywhispercpp builds: the same clips, decoded in turn by each build.

A "build" is a Python interpreter whose environment has orac-node and some
pywhispercpp installed: the PyPI wheel (AVX2), a native source build
(``just native-setup``: AVX-512 here), a CUDA build. Each runs as a worker
process that decodes whatever the parent sends with the node's engine and
decode options, so the comparison measures the library and nothing else.
Clips go to the builds alternately, in swapped order on every other clip, so
drift on a shared machine hits all builds alike; results are ratios against
the first build.

    orac-node compare-builds --audio ../shared/audio/commands \
        --python .venv/bin/python --python .venv-native/bin/python
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import _pywhispercpp as pw
import numpy as np

from orac_node.bench.corpus import Clip
from orac_node.bench.scoring import wer
from orac_node.config import NodeConfig
from orac_node.decode.decoding import DecodeOptions
from orac_node.decode.engine import WhisperEngine

_HEADER = struct.Struct("<I")  # number of float32 samples that follow; 0 ends the worker


@dataclass
class BuildResult:
    """One build's decodes of all clips."""

    python: str
    system_info: str
    decode_ms: list[float] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def summary(self, clips: list[Clip], baseline: BuildResult | None) -> dict[str, Any]:
        """p50, total, WER and the ratio of total decode time to the baseline build's."""
        refs = [(c.reference, t) for c, t in zip(clips, self.texts, strict=True) if c.reference]
        total = sum(self.decode_ms)
        return {
            "python": self.python,
            "system_info": self.system_info,
            "decode_ms_p50": round(statistics.median(self.decode_ms), 1),
            "decode_ms_total": round(total, 1),
            "audio_s_per_s": round(sum(c.seconds for c in clips) / (total / 1000), 2),
            "wer": wer([r for r, _ in refs], [t for _, t in refs]),
            "ratio": round(total / sum(baseline.decode_ms), 3) if baseline else 1.0,
        }


class _Worker:
    """A decode worker in another interpreter, spoken to over its stdin/stdout."""

    def __init__(self, python: str, model: Path, config_json: str) -> None:
        self.python = python
        self._process = subprocess.Popen(
            [python, "-m", "orac_node.bench.builds", "--worker", str(model), config_json],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.system_info = str(self._reply()["system_info"])

    def _reply(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"decode worker {self.python} exited ({self._process.wait()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def decode(self, samples: np.ndarray) -> tuple[float, str]:
        """Decode in the worker; return its decode time (ms) and text."""
        assert self._process.stdin is not None
        data = np.ascontiguousarray(samples, dtype=np.float32)
        self._process.stdin.write(_HEADER.pack(data.size) + data.tobytes())
        self._process.stdin.flush()
        reply = self._reply()
        return float(reply["ms"]), str(reply["text"])

    def close(self) -> None:
        """Ask the worker to exit and wait for it."""
        if self._process.stdin is not None:
            self._process.stdin.write(_HEADER.pack(0))
            self._process.stdin.close()
        self._process.wait(timeout=30)
        if self._process.stdout is not None:
            self._process.stdout.close()


def compare_builds(
    pythons: list[str], clips: list[Clip], model: Path, config: NodeConfig
) -> list[BuildResult]:
    """Decode every clip with every build, alternating; blocking."""
    config_json = config.model_dump_json()
    workers: list[_Worker] = []
    try:
        workers.extend(_Worker(python, model, config_json) for python in pythons)
        results = [BuildResult(w.python, w.system_info) for w in workers]
        for worker in workers:  # first decodes allocate: keep them out of the figures
            worker.decode(clips[0].samples)
        for i, clip in enumerate(clips):
            order = list(zip(workers, results, strict=True))
            for worker, result in order if i % 2 == 0 else reversed(order):
                ms, text = worker.decode(clip.samples)
                result.decode_ms.append(ms)
                result.texts.append(text)
    finally:
        for worker in workers:
            worker.close()
    return results


def format_builds(summaries: list[dict[str, Any]]) -> str:
    """A table a person reads."""
    lines = [f"{'build':<34}{'p50 ms':>8}{'total ms':>10}{'audio-s/s':>10}{'WER':>7}{'ratio':>7}"]
    for s in summaries:
        lines.append(
            f"{s['python'][-34:]:<34}{s['decode_ms_p50']:>8.0f}{s['decode_ms_total']:>10.0f}"
            f"{s['audio_s_per_s']:>10.1f}{s['wer']:>7.1%}{s['ratio']:>7.2f}"
        )
    lines.append("")
    lines.extend(f"{s['python']}: {s['system_info'].strip()}" for s in summaries)
    return "\n".join(lines)


def _serve(model: Path, config: NodeConfig, stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """Worker side: decode float32 clips from stdin, one JSON line each on stdout."""
    engine = WhisperEngine(model, threads=config.model.resolved_threads())
    options = DecodeOptions.final(config.decode)
    info = {"system_info": pw.whisper_print_system_info()}
    stdout.write(json.dumps(info).encode() + b"\n")
    stdout.flush()
    while True:
        header = stdin.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        (n,) = _HEADER.unpack(header)
        if n == 0:
            return
        samples = np.frombuffer(stdin.read(4 * n), dtype=np.float32)
        started = time.perf_counter()
        decoding = engine.decode(samples, options)
        ms = (time.perf_counter() - started) * 1000
        stdout.write(json.dumps({"ms": round(ms, 1), "text": decoding.text}).encode() + b"\n")
        stdout.flush()


def main(argv: list[str]) -> None:
    """``python -m orac_node.bench.builds --worker MODEL CONFIG_JSON`` (run by the parent)."""
    parser = argparse.ArgumentParser(prog="orac_node.bench.builds")
    parser.add_argument("--worker", type=Path, required=True)
    parser.add_argument("config_json")
    args = parser.parse_args(argv)
    config = NodeConfig.model_validate_json(args.config_json)
    _serve(args.worker, config, sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main(sys.argv[1:])
