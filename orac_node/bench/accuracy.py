"""``--scenario accuracy``: how well each decoder hears every set, in one table.

Rows are decoders: the node's own finals (streamed in real time, and sent at
once), the peer's transcripts of the same clips, and offline decodes of every
clip per model and beam width (``--accuracy-grid``). Offline rows go through
``decode/offline.py``, the node's own VAD, window and gate, so a row differs
from the node's finals only in the model and beam it names. They run after the
node has stopped, as the baselines do, so nothing competes for the cores.

Columns are sets (a clip's folder): WER where the folder has ``refs.tsv``,
slot recall where it has ``labels.json`` (scoring.py), and the median time:
decode time for offline rows, final-after-end for the node and the peer.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orac_node.audio.vad import SileroVad
from orac_node.bench.corpus import Clip
from orac_node.bench.runner import ScenarioResult
from orac_node.bench.scoring import slot_score, wer
from orac_node.bench.wyoming_peer import display_name
from orac_node.config import NodeConfig
from orac_node.decode.engine import WhisperEngine
from orac_node.decode.offline import transcribe
from orac_node.errors import OracNodeError


@dataclass(frozen=True)
class SetScore:
    """One decoder on one set."""

    clips: int
    wer: float | None  # None: the set has no reference texts
    values: float | None  # share of labelled slot values found; None: no labels
    orders: float | None  # share of clips with every labelled value found
    ms_p50: float


@dataclass(frozen=True)
class AccuracyRow:
    """One decoder on every set; ``timing`` says what ``ms_p50`` measures.

    ``source`` is node, wyoming (the node's own server), peer or offline; the
    streamed rows name how the audio was ``sent`` (in real time, at once),
    which pairs them for the targets.
    """

    decoder: str
    timing: str
    sets: dict[str, SetScore]
    source: str = "offline"
    sent: str | None = None


@dataclass(frozen=True)
class GridEntry:
    """An offline decoder of the grid: a model (name or ggml file) at a beam width."""

    model: str
    beam: int

    @classmethod
    def parse(cls, text: str) -> GridEntry:
        """``tiny.en:5`` or ``/models/ggml-base.bin:1``."""
        model, sep, beam = text.rpartition(":")
        if not sep or not model or not beam.isdigit() or not 1 <= int(beam) <= 8:
            raise OracNodeError(f"--accuracy-grid wants MODEL:BEAM (beam 1-8), got {text!r}")
        return cls(model, int(beam))

    def label(self) -> str:
        """The row's name: model and search."""
        search = "greedy" if self.beam == 1 else f"beam {self.beam}"
        name = self.model
        if name.endswith(".bin") or "/" in name:
            name = Path(name).stem.removeprefix("ggml-")
        return f"{name}, {search}"


def score(clips: Sequence[Clip], texts: Sequence[str], ms: Sequence[float]) -> dict[str, SetScore]:
    """Per set: WER over clips with references, slot recall over labelled ones, median ms."""
    by_set: dict[str, list[int]] = defaultdict(list)
    for i, clip in enumerate(clips):
        by_set[clip.set_name].append(i)
    scores = {}
    for name, idx in by_set.items():
        refs = [(clips[i].reference, texts[i]) for i in idx if clips[i].reference is not None]
        labelled = [(clips[i].slots, texts[i]) for i in idx if clips[i].slots is not None]
        slots = slot_score([list(s or ()) for s, _ in labelled], [t for _, t in labelled])
        scores[name] = SetScore(
            clips=len(idx),
            wer=wer([r or "" for r, _ in refs], [t for _, t in refs]) if refs else None,
            values=slots.value_recall if labelled else None,
            orders=slots.order_accuracy if labelled else None,
            ms_p50=statistics.median([ms[i] for i in idx if not math.isnan(ms[i])] or [math.nan]),
        )
    return scores


def resolve_model(name: str, models: Mapping[str, Path]) -> Path:
    """A grid entry's model file: a path, or a name the node knows (its own, model.extra)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if name in models:
        return models[name]
    known = ", ".join(sorted(models)) or "none"
    raise OracNodeError(f"--accuracy-grid: no model {name!r} (a ggml file, or one of: {known})")


def offline_grid(
    clips: Sequence[Clip],
    config: NodeConfig,
    models: Mapping[str, Path],
    grid: Sequence[GridEntry],
) -> list[AccuracyRow]:
    """Decode every clip with every grid entry, by the node's rules; blocking.

    The time per clip is the whole of ``offline.transcribe`` (VAD, decode, the
    short-reply check decode), what a final costs the node's worker.
    """
    vad = SileroVad()
    rows = []
    for entry in grid:
        engine = WhisperEngine(
            resolve_model(entry.model, models), threads=config.model.resolved_threads()
        )
        engine.warm_up()
        decode = config.decode.model_copy(update={"beam_size": entry.beam})
        settings = config.model_copy(update={"decode": decode})
        texts, ms = [], []
        for clip in clips:
            started = time.perf_counter()
            result = transcribe(engine, clip.samples, settings, vad)
            ms.append((time.perf_counter() - started) * 1000)
            texts.append(result.text)
        rows.append(AccuracyRow(entry.label(), "decode", score(clips, texts, ms)))
        del engine  # one model's memory at a time
    return rows


OWN_WYOMING = "orac-node via its Wyoming server"
"""The accuracy table's name for the node's own Wyoming server (Home Assistant's way in)."""


def streamed_rows(
    results: list[ScenarioResult],
    peer_results: list[tuple[str, Clip, Any]],
    peer_server: str | None,
    own_results: Sequence[tuple[str, Clip, Any]] = (),
) -> list[AccuracyRow]:
    """Accuracy of the node's finals per streaming scenario, and of the peer beside them.

    ``own_results`` are the same clips sent to the node's own Wyoming server
    (source ``wyoming``), timed from audio-stop like the peer. A missing final
    counts as an empty transcript (every word and value missed).
    """
    how = {"single": "streamed in real time", "at-once": "sent at once"}
    rows = []
    for result in results:
        if result.name not in how:
            continue
        records = result.records
        texts = [r.final.text if r.final else "" for r in records]
        ms = [r.speech_latency_ms if r.final else math.nan for r in records]
        clips = [r.clip for r in records]
        sent = how[result.name]
        rows.append(
            AccuracyRow(
                f"orac-node finals, {sent}",
                "final after end of speech",
                score(clips, texts, ms),
                source="node",
                sent=sent,
            )
        )
        realtime = result.name == "single"
        for source, label, got in (
            ("wyoming", OWN_WYOMING, own_results),
            ("peer", f"peer ({display_name(peer_server) or 'Wyoming'})", peer_results),
        ):
            sent_so = [(c, p) for scenario, c, p in got if scenario == result.name]
            if not sent_so:
                continue
            rows.append(
                AccuracyRow(
                    f"{label}, {sent}",
                    "final after end of speech",
                    score(
                        [c for c, _ in sent_so],
                        [p.text for _, p in sent_so],
                        [peer_speech_latency_ms(c, p, realtime=realtime) for c, p in sent_so],
                    ),
                    source=source,
                    sent=sent,
                )
            )
    return rows


def peer_speech_latency_ms(clip: Clip, result: Any, *, realtime: bool) -> float:  # noqa: ANN401
    """The peer's final after the end of speech.

    The peer starts only at AudioStop. Streamed in real time, that comes the
    clip's trailing silence after the speech ended, so the user waits that as
    well; sent at once, AudioStop follows the end of speech at once.
    """
    latency: float = result.latency_ms
    return latency + (clip.trailing_s * 1000 if realtime else 0.0)


def _cell(s: SetScore | None) -> str:
    if s is None:
        return "—"
    parts = []
    if s.wer is not None:
        parts.append(f"WER {s.wer:.1%}")
    if s.values is not None and s.orders is not None:
        parts.append(f"values {s.values:.1%}, all right {s.orders:.1%}")
    parts.append(f"{s.ms_p50:,.0f} ms")
    return "; ".join(parts)


def format_accuracy(rows: Sequence[AccuracyRow]) -> str:
    """A Markdown table: one row per decoder, one column per set."""
    sets = sorted({name for row in rows for name in row.sets})
    lines = [
        "| decoder | time is | " + " | ".join(sets) + " |",
        "|---|---|" + "---|" * len(sets),
    ]
    for row in rows:
        cells = " | ".join(_cell(row.sets.get(name)) for name in sets)
        lines.append(f"| {row.decoder} | {row.timing} | {cells} |")
    return "\n".join(lines)


def accuracy_figure(s: SetScore) -> float:
    """The one number a set is judged by, higher is better: 1 - WER, or values found."""
    if s.values is not None:
        return s.values
    if s.wer is not None:
        return 1.0 - s.wer
    return math.nan


def plot_accuracy(path: Path, rows: Sequence[AccuracyRow]) -> None:
    """Grouped bars: each set's figure (1 - WER, or slot values found) per decoder."""
    import matplotlib as mpl  # noqa: PLC0415 - bench-only dependency

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    sets = sorted({name for row in rows for name in row.sets})
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * len(sets)), 4.0))
    width = 0.8 / max(1, len(rows))
    for i, row in enumerate(rows):
        heights = [
            accuracy_figure(row.sets[name]) * 100 if name in row.sets else 0.0 for name in sets
        ]
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(sets))]
        ax.bar(xs, heights, width, label=row.decoder)
    ax.set_xticks(range(len(sets)), [f"{n}\n(100 - WER, or values found)" for n in sets])
    ax.set_ylabel("%")
    ax.set_ylim(50, 100)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Accuracy per set and decoder (higher is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def as_json(rows: Sequence[AccuracyRow]) -> list[dict[str, Any]]:
    """The rows for the report file."""
    return [dataclasses.asdict(row) for row in rows]


def from_json(rows: Sequence[dict[str, Any]]) -> list[AccuracyRow]:
    """The rows of a report file (``orac-node figures`` renders them)."""
    return [
        AccuracyRow(
            **{k: v for k, v in row.items() if k != "sets"},
            sets={name: SetScore(**score) for name, score in row["sets"].items()},
        )
        for row in rows
    ]
