"""Benchmark audio: folders of WAVs, with reference texts from ``refs.tsv`` when present."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orac_node.audio import Samples, load_audio_file
from orac_node.contract import SAMPLE_RATE
from orac_node.errors import OracNodeError


@dataclass(frozen=True)
class Clip:
    """One utterance of the benchmark corpus."""

    name: str  # "<folder>/<file>", unique across folders
    samples: Samples  # float32 mono 16 kHz
    reference: str | None  # None when the folder has no refs.tsv entry

    @property
    def seconds(self) -> float:
        """Duration of the clip."""
        return self.samples.size / SAMPLE_RATE


def load_corpus(folders: list[Path]) -> list[Clip]:
    """Every audio file in ``folders`` (sorted), with its reference text if known."""
    clips: list[Clip] = []
    for folder in folders:
        refs_file = folder / "refs.tsv"
        refs: dict[str, str] = {}
        if refs_file.is_file():
            for line in refs_file.read_text(encoding="utf-8").splitlines():
                name, _, text = line.partition("\t")
                if text:
                    refs[name] = text
        files = sorted(
            p for p in folder.iterdir() if p.suffix.lower() in {".wav", ".flac", ".mp3", ".ogg"}
        )
        clips.extend(
            Clip(f"{folder.name}/{p.name}", load_audio_file(p), refs.get(p.name)) for p in files
        )
    if not clips:
        raise OracNodeError(f"no audio files in {', '.join(map(str, folders))}")
    return clips
