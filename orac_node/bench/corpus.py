"""Benchmark audio: folders of WAVs, with reference texts (``refs.tsv``) or slot labels.

A folder is one *set* of the accuracy table (commands, speech, orders): a
clip's set is its folder's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orac_node.audio import Samples, load_audio_file
from orac_node.audio.vad import WINDOW, WINDOW_S, SileroVad, speech_probabilities
from orac_node.bench.scoring import load_slot_labels
from orac_node.config import NodeConfig
from orac_node.decode.offline import measure_speech
from orac_node.errors import OracNodeError
from orac_node.wire import SAMPLE_RATE

SPEECH_THRESHOLD = 0.5
"""The node's default ``endpoint.vad_threshold``."""


@dataclass(frozen=True)
class Clip:
    """One utterance of the benchmark corpus."""

    name: str  # "<folder>/<file>", unique across folders
    samples: Samples  # float32 mono 16 kHz
    reference: str | None  # None when the folder has no refs.tsv entry
    slots: tuple[str, ...] | None = None  # spoken values from labels.json, if labelled
    speech_end_s: float | None = None  # where the node's VAD hears the last speech end

    @property
    def trailing_s(self) -> float:
        """Seconds of the clip after its last speech (what a satellite streams after it)."""
        return 0.0 if self.speech_end_s is None else max(0.0, self.seconds - self.speech_end_s)

    @property
    def set_name(self) -> str:
        """The folder the clip came from: its set in the accuracy table."""
        return self.name.split("/", 1)[0]

    @property
    def seconds(self) -> float:
        """Duration of the clip."""
        return self.samples.size / SAMPLE_RATE


def load_corpus(folders: list[Path]) -> list[Clip]:
    """Every audio file in ``folders`` (sorted), with its reference text or slots if known."""
    clips: list[Clip] = []
    vad, config = SileroVad(), NodeConfig()
    for folder in folders:
        refs_file = folder / "refs.tsv"
        refs: dict[str, str] = {}
        if refs_file.is_file():
            for line in refs_file.read_text(encoding="utf-8").splitlines():
                name, _, text = line.partition("\t")
                if text:
                    refs[name] = text
        labels = load_slot_labels(folder)
        files = sorted(
            p for p in folder.iterdir() if p.suffix.lower() in {".wav", ".flac", ".mp3", ".ogg"}
        )
        for p in files:
            samples = load_audio_file(p)
            clips.append(
                Clip(
                    f"{folder.name}/{p.name}",
                    samples,
                    refs.get(p.name),
                    tuple(labels[p.name]) if p.name in labels else None,
                    speech_end_s=speech_end(samples, vad, config),
                )
            )
    if not clips:
        raise OracNodeError(f"no audio files in {', '.join(map(str, folders))}")
    return clips


def speech_end(samples: Samples, vad: SileroVad, config: NodeConfig) -> float | None:
    """Where the last speech of a recording ends, judged as a session judges it.

    Users wait from the moment they stop speaking; a clip that goes on in
    silence after that (the real orders do, by seconds) must not count that
    silence as the node's delay, nor hide the peer's behind it.
    """
    endpointer = measure_speech(samples, config, vad)
    return endpointer.speech_end_s if endpointer.speech_s else None


DICTATION_PAUSE_S = 0.25
"""Pauses inside the dictation are cut to this, below the node's 0.7 s end-of-speech
silence, so the whole dictation stays one utterance at the default settings."""


def compress_pauses(samples: Samples, max_pause_s: float = DICTATION_PAUSE_S) -> Samples:
    """Shorten every run of non-speech (the node's own VAD says so) to ``max_pause_s``."""
    probs = speech_probabilities(samples, SileroVad())
    n = probs.size
    windows = samples[: n * WINDOW].reshape(n, WINDOW)
    keep = np.ones(n, dtype=bool)
    limit = round(max_pause_s / WINDOW_S)
    run = 0
    for i, p in enumerate(probs):
        run = run + 1 if p < SPEECH_THRESHOLD else 0
        keep[i] = run <= limit
    return np.ascontiguousarray(windows[keep].reshape(-1))


def dictation(clips: list[Clip], max_s: float) -> Clip | None:
    """One long utterance: clips with references, pauses shortened, up to ``max_s``.

    Measures what a long dictation costs the node (partial decode time as the
    utterance grows); None when the corpus has too little referenced speech.
    """
    parts: list[Samples] = []
    refs: list[str] = []
    total = 0
    for clip in sorted(clips, key=lambda c: -c.seconds):
        if clip.reference is None:
            continue
        samples = compress_pauses(clip.samples)
        if (total + samples.size) / SAMPLE_RATE > max_s:
            continue
        parts.append(samples)
        refs.append(clip.reference)
        total += samples.size
    if total < SAMPLE_RATE * max_s / 2:
        return None
    return Clip("dictation", np.concatenate(parts), " ".join(refs))
