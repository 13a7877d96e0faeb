"""``models validate``: whether a model file is safe to serve, and how well it hears.

Three steps, each stopping the next when it fails:

1. header and tensor table (ggml.read_info): a truncated, foreign or
   mis-shaped file is named as such without loading anything;
2. a load probe in a child process (modelfiles.check_loadable): whisper.cpp
   crashes the process on some damaged files, and that process must not be
   the node or this command;
3. a measurement, in another child process (``python -m
   orac_node.bench.validate``) so that its memory figure is the model's
   alone: load time, resident memory the model added, and every reference
   clip decoded by the node's own rules (decode/offline.py: gate, beam,
   window) giving WER where a folder has reference texts, the share of spoken
   values found where it has slot labels, and the median decode time.

The figures are stored with the model (store.py) and printed next to the
current model's, measured the same way in the same run: absolute figures
from a shared 2-core box mean little, the comparison does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from orac_node.audio.vad import SileroVad
from orac_node.config import NodeConfig
from orac_node.decode.engine import WhisperEngine
from orac_node.decode.modelfiles import check_loadable
from orac_node.decode.modelpool import resident_bytes
from orac_node.decode.offline import transcribe
from orac_node.errors import ModelError
from orac_node.models.ggml import read_info

MEASURE_TIMEOUT_S = 3600
"""Longest a measurement may run: base at beam 5 took 1.4-1.7 s a clip in the
bench's grid on 2 cores, under 3 minutes for the 91 shared clips; an hour means
the model or the box is unusable."""


def validate(
    path: Path, reference: list[Path], *, threads: int, beam: int | None = None
) -> dict[str, Any]:
    """Check ``path`` and measure it on the ``reference`` folders (raises ModelError)."""
    info = read_info(path)
    check_loadable(path)
    figures = measure_in_child(path, reference, threads=threads, beam=beam)
    return {
        "validated": round(time.time(), 3),
        "kind": info.kind,
        "multilingual": info.multilingual,
        "quantization": info.quantization,
        **figures,
    }


def measure_in_child(
    path: Path, reference: list[Path], *, threads: int, beam: int | None
) -> dict[str, Any]:
    """Run :func:`measure` in a fresh process and return its figures."""
    command = [
        sys.executable,
        "-m",
        "orac_node.bench.validate",
        str(path),
        "--threads",
        str(threads),
    ]
    if beam is not None:
        command += ["--beam", str(beam)]
    command += [str(folder) for folder in reference]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=MEASURE_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ModelError(f"{path}: measuring took over {MEASURE_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        detail = "; ".join(done.stderr.strip().splitlines()[-1:])
        raise ModelError(f"{path}: measuring failed (exit {done.returncode}): {detail}")
    figures: dict[str, Any] = json.loads(done.stdout)
    return figures


def measure(path: Path, reference: list[Path], *, threads: int, beam: int | None) -> dict[str, Any]:
    """Load ``path`` here, then decode every reference clip as a node's final would."""
    from orac_node.bench.accuracy import score  # noqa: PLC0415 - needs the bench extra
    from orac_node.bench.corpus import load_corpus  # noqa: PLC0415

    config = NodeConfig()
    if beam is not None:
        config = config.model_copy(
            update={"decode": config.decode.model_copy(update={"beam_size": beam})}
        )
    clips = load_corpus(reference)
    vad = SileroVad()
    vad.load()
    before, started = resident_bytes(), time.perf_counter()
    engine = WhisperEngine(path, threads=threads)
    engine.warm_up()
    load_s = time.perf_counter() - started
    after = resident_bytes()
    texts, ms = [], []
    for clip in clips:
        began = time.perf_counter()
        texts.append(transcribe(engine, clip.samples, config, vad).text)
        ms.append((time.perf_counter() - began) * 1000)
    sets = {
        name: {k: _finite(v) for k, v in dataclasses.asdict(s).items()}
        for name, s in score(clips, texts, ms).items()
    }
    return {
        "beam": config.decode.beam_size,
        "threads": threads,
        "load_s": round(load_s, 3),
        "memory_mb": round((after - before) / 1e6, 1) if after and before else None,
        "reference": [str(folder) for folder in reference],
        "sets": sets,
    }


def _finite(value: Any) -> Any:  # noqa: ANN401 - JSON values of a SetScore
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    return value


def main(argv: list[str] | None = None) -> int:
    """The measuring child: figures as JSON on stdout."""
    parser = argparse.ArgumentParser(prog="python -m orac_node.bench.validate")
    parser.add_argument("model", type=Path)
    parser.add_argument("reference", type=Path, nargs="+")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--beam", type=int)
    args = parser.parse_args(argv)
    figures = measure(args.model, args.reference, threads=args.threads, beam=args.beam)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
