"""The model store: the ggml files a node may decode with, and what is known of each.

A store is one directory (``model.cache_dir``). Each model is two files:
``ggml-<name>.bin`` (the model, named as whisper.cpp's hub names them, so the
node reports it by ``<name>``) and ``<name>.json`` (its :class:`ModelRecord`:
checksum, size, kind, languages, quantization, where it came from, and the
figures ``orac-node models validate`` measured). Both are written to a
temporary name, synced and renamed, so an import that dies half-way leaves
no model behind, only a ``.part`` file the next import of that name replaces.

A model enters the store by :meth:`ModelStore.add_ggml` (a ggml file, checked
by its header and tensor table before it is copied), :meth:`ModelStore.add_ct2`
(a CTranslate2 / faster-whisper directory, converted tensor by tensor) or
:meth:`ModelStore.add_quantized` (a stored model's q8_0 copy).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orac_node.errors import ModelError
from orac_node.models.ct2 import convert_ct2
from orac_node.models.ggml import read_info
from orac_node.models.quantize import quantize_model
from orac_node.wire import is_valid_name

_BLOCK = 1 << 20
GENERIC_DIRS = frozenset({"model", "models", "ct2", "ctranslate2", "snapshot"})
"""Directory names that say nothing about the model in them."""


@dataclass(frozen=True)
class ModelRecord:
    """One model of the store, as ``models list`` shows it and the bus carries it."""

    name: str
    file: str
    sha256: str
    size: int
    kind: str  # tiny, base, small, medium, large, custom
    multilingual: bool
    quantization: str  # f16, q8_0, ...
    added: float  # Unix seconds
    source: str  # what it was imported from
    validation: dict[str, Any] = field(default_factory=dict)  # models validate's figures

    def to_json(self) -> dict[str, Any]:
        """The record as JSON data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelRecord:
        """Back from :meth:`to_json` (raises ModelError on anything else)."""
        try:
            return cls(**data)
        except TypeError as exc:
            raise ModelError(f"not a model record: {exc}") from None


class ModelStore:
    """The models in one directory (module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser()

    def path(self, name: str) -> Path:
        """Where model ``name``'s ggml file is (or would be)."""
        return self.root / f"ggml-{name}.bin"

    def records(self) -> list[ModelRecord]:
        """Every model in the store, by name."""
        if not self.root.is_dir():
            return []
        return [self.get(p.stem) for p in sorted(self.root.glob("*.json"))]

    def get(self, name: str) -> ModelRecord:
        """Model ``name``'s record (ModelError if there is none)."""
        meta = self.root / f"{name}.json"
        try:
            return ModelRecord.from_json(json.loads(meta.read_text()))
        except FileNotFoundError:
            raise ModelError(f"no model {name!r} in {self.root}") from None
        except (OSError, ValueError) as exc:
            raise ModelError(f"{meta}: {exc}") from None

    def has(self, name: str) -> bool:
        """Whether the store holds model ``name``."""
        return (self.root / f"{name}.json").is_file()

    def add_ggml(
        self, source: Path, name: str | None = None, *, replace: bool = False
    ) -> ModelRecord:
        """Copy a ggml file in, once its header and tensor table check out."""
        read_info(source)  # refuses a file that is not a whole whisper.cpp model
        name = name or source.name.removeprefix("ggml-").removesuffix(".bin")
        target = self._claim(name, replace=replace)
        part = target.with_name(target.name + ".part")
        with source.open("rb") as src, part.open("wb") as out:
            shutil.copyfileobj(src, out, _BLOCK)
            out.flush()
            os.fsync(out.fileno())
        part.replace(target)
        return self._record(name, f"ggml:{source}")

    def add_ct2(
        self,
        source: Path,
        name: str | None = None,
        *,
        replace: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> ModelRecord:
        """Convert a CTranslate2 Whisper directory into the store.

        Unnamed, it is called after its directory (``faster-whisper-base.en``),
        or, for a directory with a generic name (``model``), after what it
        holds (``tiny.en``, ``base``).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        incoming = self.root / f".incoming-{os.getpid()}.bin"
        try:
            convert_ct2(source, incoming, progress=progress)
            if name is None:
                name = source.resolve().name
                if name in GENERIC_DIRS or not is_valid_name(name):
                    info = read_info(incoming)
                    name = info.kind + ("" if info.multilingual else ".en")
            incoming.replace(self._claim(name, replace=replace))
        finally:
            incoming.unlink(missing_ok=True)
        return self._record(name, f"ctranslate2:{source}")

    def add_quantized(
        self,
        source: str,
        name: str | None = None,
        *,
        replace: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> ModelRecord:
        """A stored model's q8_0 copy (quantize.py), named ``<source>-q8_0`` unless named."""
        original = self.get(source)
        name = name or f"{source}-q8_0"
        target = self._claim(name, replace=replace)
        quantize_model(Path(original.file), target, progress=progress)
        return self._record(name, f"q8_0 of {source} (sha256 {original.sha256})")

    def adopt(self, name: str, source: str) -> ModelRecord:
        """Record a model file already in the store's directory (a download by name)."""
        if self.has(name):
            return self.get(name)
        return self._record(name, source)

    def set_validation(self, name: str, figures: dict[str, Any]) -> ModelRecord:
        """Store what ``models validate`` measured with the model."""
        record = dataclasses.replace(self.get(name), validation=figures)
        self._write(record)
        return record

    def remove(self, name: str) -> None:
        """Take a model out of the store (its file and record)."""
        self.get(name)
        (self.root / f"{name}.json").unlink()
        self.path(name).unlink(missing_ok=True)

    def _claim(self, name: str, *, replace: bool) -> Path:
        if not is_valid_name(name):
            raise ModelError(
                f"invalid model name {name!r}: one level of [A-Za-z0-9_.-], up to 64 characters"
            )
        if self.has(name) and not replace:
            raise ModelError(f"model {name!r} is already in the store (--replace to overwrite)")
        self.root.mkdir(parents=True, exist_ok=True)
        return self.path(name)

    def _record(self, name: str, source: str) -> ModelRecord:
        path = self.path(name)
        info = read_info(path)
        record = ModelRecord(
            name=name,
            file=str(path),
            sha256=sha256_of(path),
            size=path.stat().st_size,
            kind=info.kind,
            multilingual=info.multilingual,
            quantization=info.quantization,
            added=round(time.time(), 3),
            source=source,
        )
        self._write(record)
        return record

    def _write(self, record: ModelRecord) -> None:
        meta = self.root / f"{record.name}.json"
        part = meta.with_name(meta.name + ".part")
        part.write_text(json.dumps(record.to_json(), indent=2) + "\n")
        part.replace(meta)


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read a block at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()
