"""The speech model: which whisper.cpp model, how many copies, and how it decodes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from orac_node.config.base import Section, one_level_names

CORES_PER_WORKER = 4
"""Auto-sized worker pools get one model instance per this many cores. Measured on 2
cores (docs/BENCHMARKS.md, P5): a second instance raised throughput 1.75x but worsened
the 4-stream tail and cost ~130 MB, so small boxes keep one. That a second instance pays
from 8 cores on is an assumption, not measured (no bigger machine was available): the
bench's throughput and concurrent-4 scenarios are how to check it on a given machine."""


class ModelSection(Section):
    """The whisper.cpp model and how many copies of it run."""

    path: Path | None = Field(
        None,
        description="ggml model file; overrides name. The demo and tests use"
        " ../shared/models/ggml-tiny.en.bin.",
    )
    name: str = Field(
        "tiny.en",
        description="Model name (tiny.en, base.en, small, ...), looked up in cache_dir and"
        " downloaded from hub_url on first use, checked against whisper.cpp's published SHA-1.",
    )
    cache_dir: Path = Field(
        Path("~/.cache/orac-node/models"),
        description="Where named models are downloaded to, and the model store of `orac-node"
        " models` (import, validate, promote: docs/MODELS.md).",
    )
    hub_url: str = Field(
        "https://huggingface.co/ggerganov/whisper.cpp/resolve/main",
        description="Where named models are downloaded from on first use.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="Inference device: auto, cpu or cuda (cuda needs a CUDA build of"
        " pywhispercpp).",
    )
    workers: int = Field(
        0,
        ge=0,
        le=16,
        description="Model instances, each with its own thread (pywhispercpp has no shared"
        " weights: ~100-150 MB each for tiny.en). 0 = auto: one per 4 CPU cores (one on 2-4"
        " cores, two on 8), one on CUDA; see docs/BENCHMARKS.md before raising it. Also how"
        " many decodes run at once, whichever model (model.extra too) they use.",
    )
    threads: int = Field(
        0, ge=0, le=64, description="Threads per instance; 0 = CPU cores / workers."
    )
    extra: dict[str, Path] = Field(
        default_factory=dict,
        description="Other ggml models, by name, that requests and topic configs may ask for,"
        " e.g. {base.en: /models/ggml-base.en.bin}; each is loaded on first use and then kept"
        " (one engine, its own memory). Names not listed (nor the main model's) get"
        " unknown_model. A listed file that is missing or does not load is reported once"
        " (model_unavailable) and the node's model decodes instead; it is tried again after"
        " 5 minutes.",
    )

    partials: str | None = Field(
        None,
        description="Model for partials: the node's own (null) or one of model.extra. A small"
        " model here keeps partials cheap while finals use a bigger one; topics may override"
        " it (partials_model). Loaded before the node takes input.",
    )
    finals: str | None = Field(
        None,
        description="Model for finals: the node's own (null) or one of model.extra; topics"
        " may override it (model). Loaded before the node takes input.",
    )

    @field_validator("extra")
    @classmethod
    def _extra_names(cls, value: dict[str, Path]) -> dict[str, Path]:
        return one_level_names(value, "model names")

    def resolved_workers(self) -> int:
        """Model instances: as set, or one per ``CORES_PER_WORKER`` cores (one on a GPU)."""
        if self.workers:
            return self.workers
        if self.device == "cuda":
            return 1  # one GPU runs one decode at a time well; more contexts only cost memory
        return max(1, (os.cpu_count() or 1) // CORES_PER_WORKER)

    def resolved_threads(self) -> int:
        """Threads per worker: split the cores evenly when not set."""
        if self.threads:
            return self.threads
        return max(1, (os.cpu_count() or 1) // self.resolved_workers())


class DecodeSection(Section):
    """Decoding parameters, set explicitly on every call (pywhispercpp keeps them)."""

    language: str = Field(
        "en",
        description="Language code, or auto to detect (English-only .en models always use en).",
    )
    beam_size: int = Field(
        5,
        ge=1,
        le=8,
        description="Beam width of finals (partials are always greedy); 1 = greedy. Beam 5"
        " with the 10 s margin scored better than greedy on every shared set (commands WER"
        " 11.1 vs 13.9 %, speech 5.2 vs 7.3 %, orders' values 83.3 vs 82.3 %) for ~1.8x the"
        " decode time, mostly hidden by speculative finals (docs/DECODING.md). Deterministic"
        " with the patched whisper.cpp build the setup installs.",
    )
    window_margin_s: float = Field(
        10.0,
        ge=0,
        le=30,
        description="A final's encoder window = audio + this margin, rounded up to 256 frames"
        " (5.12 s). Under ~3 s Whisper repeats sentences; at beam 5, 10 s scored better than"
        " 6 s on every shared set; the full 30 s window costs ~2x more and scored worse."
        " Partials have their own (partials.window_margin_s).",
    )
    temperature_fallback: bool = Field(
        False,
        description="Re-decode at higher temperature when output looks degenerate. Off: it"
        " makes text depend on earlier decodes and took 7.5 s on a pure tone.",
    )
