"""whisper.cpp's ggml model file: read its table of contents, write one front to back.

The layout, as ``whisper_model_load`` reads it (all little-endian, no padding):

1. magic ``0x67676d6c`` ("ggml"), as a uint32;
2. eleven int32 hyperparameters (:class:`Hparams`, in field order);
3. the mel filterbank: int32 n_mel, int32 n_fft, then n_mel * n_fft float32;
4. the vocabulary: int32 count, then per token a uint32 length and its raw bytes
   (whisper.cpp names the ids past the stored ones itself: [_EOT_], [_SOT_], ...);
5. tensors until end of file, each: int32 n_dims, int32 name length, int32 ggml
   type, n_dims int32 extents *innermost first*, the name, then the data.

Shapes here are in numpy order (outermost first), the reverse of the file's
extents: a linear layer's weight of ``n_out`` rows of ``n_in`` is ``(n_out, n_in)``
here and ``[n_in, n_out]`` on disk.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from orac_node.errors import ModelError
from orac_node.models.binreader import BoundedReader
from orac_node.models.ggml_types import GgmlType
from orac_node.models.layout import Hparams, expected_tensors, expected_type
from orac_node.models.mel import N_FFT

__all__ = [
    "GgmlInfo",
    "GgmlTensor",
    "GgmlType",
    "GgmlWriter",
    "Hparams",
    "expected_tensors",
    "read_info",
    "tensor_data",
]

MAGIC = 0x67676D6C
"""ASCII "ggml" read as a big-endian word, stored little-endian: bytes 6c 6d 67 67."""
GGUF_MAGIC = b"GGUF"
"""The newer single-file format of llama.cpp; whisper.cpp's loader does not read it."""
N_FREQ_BINS = 1 + N_FFT // 2
"""Columns of the stored filterbank: whisper.cpp's spectrogram has 201 bins per frame."""
MAX_DIMS = 4
"""whisper.cpp reads a tensor's extents into ``int32_t ne[4]``: more would overrun it."""
_HPARAMS = struct.Struct("<11i")
_INT32 = struct.Struct("<i")
_UINT32 = struct.Struct("<I")
_TENSOR_HEAD = struct.Struct("<3i")


@dataclass(frozen=True)
class GgmlTensor:
    """One tensor's entry in the file: where its data starts and how long it is."""

    name: str
    shape: tuple[int, ...]
    """Extents in numpy order (outermost first): the file stores them reversed."""
    ggml_type: GgmlType
    offset: int
    """Byte offset of the data from the start of the file."""
    nbytes: int


@dataclass(frozen=True, eq=False)
class GgmlInfo:
    """Everything in a ggml file but the tensor data (not comparable: it holds an array)."""

    path: Path
    hparams: Hparams
    filters: npt.NDArray[np.float32]
    """The mel filterbank, ``(n_mel, n_fft)`` float32."""
    vocab: tuple[bytes, ...]
    """The stored tokens' raw bytes, by id."""
    tensors: tuple[GgmlTensor, ...]
    file_size: int

    @property
    def kind(self) -> str:
        """tiny, base, small, medium, large or custom."""
        return self.hparams.kind

    @property
    def multilingual(self) -> bool:
        """Whether whisper.cpp treats the model as multilingual."""
        return self.hparams.multilingual

    @property
    def quantization(self) -> str:
        """f32, f16, q5_0, ..."""
        return self.hparams.file_type.quantization

    def tensor(self, name: str) -> GgmlTensor:
        """The entry named ``name``; KeyError if there is none."""
        for entry in self.tensors:
            if entry.name == name:
                return entry
        raise KeyError(name)


def read_info(path: Path | str) -> GgmlInfo:
    """Parse a ggml file's header, filters, vocabulary and tensor table, skipping the data.

    Checks what whisper.cpp's loader would refuse, or would load into a broken
    model, and says what is wrong: a bad magic, a truncated file, a tensor
    running past the end, a duplicate, a missing, unknown, mis-shaped or
    mistyped tensor for these hyperparameters. Raises :class:`ModelError`.
    """
    path = Path(path)
    try:
        with path.open("rb") as stream:
            reader = BoundedReader(stream, path)
            hparams = _read_hparams(reader, path)
            filters = _read_filters(reader, hparams)
            vocab = _read_vocab(reader, hparams)
            tensors = _read_tensor_table(reader)
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc
    _check_layout(path, hparams, tensors)
    return GgmlInfo(path, hparams, filters, vocab, tuple(tensors), reader.size)


def read_hparams(path: Path | str) -> Hparams:
    """Only the header's hyperparameters: what a model is (kind, languages), in microseconds.

    :func:`read_info` also reads the vocabulary and the tensor table, about
    0.1 s for tiny.en or base: too slow for a node deciding, as a session
    opens, whether a model is multilingual. Raises :class:`ModelError`.
    """
    path = Path(path)
    try:
        with path.open("rb") as stream:
            return _read_hparams(BoundedReader(stream, path), path)
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc


def _read_hparams(reader: BoundedReader, path: Path) -> Hparams:
    magic = reader.take(4, "the magic number")
    if magic == GGUF_MAGIC:
        raise ModelError(f"{path} is a GGUF file; whisper.cpp reads ggml (.bin) models")
    if _UINT32.unpack(magic)[0] != MAGIC:
        raise ModelError(f"{path} is not a whisper.cpp ggml model (magic {magic.hex()})")
    hparams = Hparams(*reader.unpack(_HPARAMS, "the hyperparameters"))
    hparams.validate(path)
    return hparams


def tensor_data(path: Path, tensor: GgmlTensor) -> npt.NDArray[np.generic]:
    """A read-only memory map of one tensor: typed and shaped for F32/F16, raw uint8 otherwise."""
    dtype = tensor.ggml_type.numpy_dtype
    if dtype is None:
        return np.memmap(path, np.uint8, "r", tensor.offset, (tensor.nbytes,))
    return np.memmap(path, dtype, "r", tensor.offset, tensor.shape)


class GgmlWriter:
    """Writes a ggml file front to back: the header at construction, then one tensor per call.

    Tensors are written as they come, so a converter holds one tensor in
    memory at a time, never the whole model twice. The writer checks the byte
    layout only (sizes, dtypes); :func:`read_info` on the result checks the
    model layout.
    """

    def __init__(
        self,
        stream: BinaryIO,
        *,
        hparams: Hparams,
        filters: npt.NDArray[np.float32],
        vocab: list[bytes] | tuple[bytes, ...],
    ) -> None:
        if filters.shape != (hparams.n_mels, N_FREQ_BINS) or filters.dtype != np.float32:
            raise ModelError(
                f"mel filters must be float32 ({hparams.n_mels}, {N_FREQ_BINS}), "
                f"not {filters.dtype} {filters.shape}"
            )
        if len(vocab) > hparams.n_vocab:
            raise ModelError(f"{len(vocab)} tokens for a model of n_vocab={hparams.n_vocab}")
        self._stream = stream
        self.bytes_written = 0
        self.tensors: list[GgmlTensor] = []
        self._write(_UINT32.pack(MAGIC) + _HPARAMS.pack(*hparams.values()))
        self._write(struct.pack("<2i", *filters.shape))
        self._write(np.ascontiguousarray(filters, "<f4").tobytes())
        self._write(_INT32.pack(len(vocab)))
        for token in vocab:
            self._write(_UINT32.pack(len(token)) + token)

    def add_tensor(
        self,
        name: str,
        ggml_type: GgmlType,
        shape: tuple[int, ...],
        data: npt.NDArray[np.generic] | bytes,
    ) -> GgmlTensor:
        """Append one tensor: an array of the type's dtype and ``shape``, or its raw bytes."""
        if not 1 <= len(shape) <= MAX_DIMS or min(shape) < 1:
            raise ModelError(f"tensor {name}: bad shape {shape}")
        nbytes = ggml_type.nbytes(math.prod(shape))
        if isinstance(data, np.ndarray):
            if data.dtype != (ggml_type.numpy_dtype or np.uint8) or data.nbytes != nbytes:
                raise ModelError(
                    f"tensor {name}: {data.dtype} {data.shape} is not {ggml_type.name}"
                )
            if ggml_type.numpy_dtype is not None and data.shape != shape:
                raise ModelError(f"tensor {name}: data shape {data.shape}, declared {shape}")
            payload = np.ascontiguousarray(data).data.cast("B")
        else:
            payload = memoryview(data)
        if payload.nbytes != nbytes:
            raise ModelError(
                f"tensor {name}: {payload.nbytes} bytes, {ggml_type.name} needs {nbytes}"
            )
        encoded = name.encode()
        head = _TENSOR_HEAD.pack(len(shape), len(encoded), ggml_type.value)
        self._write(head + struct.pack(f"<{len(shape)}i", *reversed(shape)) + encoded)
        tensor = GgmlTensor(name, shape, ggml_type, self.bytes_written, nbytes)
        self._write(payload)
        self.tensors.append(tensor)
        return tensor

    def _write(self, chunk: bytes | memoryview) -> None:
        self._stream.write(chunk)
        self.bytes_written += len(chunk) if isinstance(chunk, bytes) else chunk.nbytes


def _read_filters(reader: BoundedReader, hparams: Hparams) -> npt.NDArray[np.float32]:
    n_mel, n_fft = reader.unpack(struct.Struct("<2i"), "the mel filter header")
    if (n_mel, n_fft) != (hparams.n_mels, N_FREQ_BINS):
        raise ModelError(
            f"{reader.path}: mel filters are {n_mel} x {n_fft}, "
            f"whisper.cpp needs {hparams.n_mels} x {N_FREQ_BINS}"
        )
    data = reader.take(4 * n_mel * n_fft, "the mel filters")
    return np.frombuffer(data, "<f4").astype(np.float32).reshape(n_mel, n_fft)


def _read_vocab(reader: BoundedReader, hparams: Hparams) -> tuple[bytes, ...]:
    (count,) = reader.unpack(_INT32, "the vocabulary size")
    if not 0 <= count <= hparams.n_vocab:
        raise ModelError(f"{reader.path}: {count} stored tokens, n_vocab is {hparams.n_vocab}")
    tokens = []
    for token_id in range(count):
        (length,) = reader.unpack(_UINT32, f"token {token_id}")
        tokens.append(reader.take(length, f"token {token_id}"))
    return tuple(tokens)


def _read_tensor_table(reader: BoundedReader) -> list[GgmlTensor]:
    tensors: list[GgmlTensor] = []
    seen: set[str] = set()
    while reader.offset < reader.size:
        where = f"tensor header #{len(tensors)}"
        n_dims, name_length, type_id = reader.unpack(_TENSOR_HEAD, where)
        if not (1 <= n_dims <= MAX_DIMS and name_length > 0):
            raise ModelError(f"{reader.path}: {where} at {reader.offset} is corrupt")
        extents = reader.unpack(struct.Struct(f"<{n_dims}i"), where)
        try:
            name = reader.take(name_length, where).decode()
            ggml_type = GgmlType(type_id)
        except UnicodeDecodeError:
            raise ModelError(f"{reader.path}: {where} has a name that is not text") from None
        except ValueError:
            raise ModelError(
                f"{reader.path}: tensor {name} has unsupported type {type_id}"
            ) from None
        if min(extents) < 1:
            raise ModelError(f"{reader.path}: tensor {name} has extents {extents}")
        if name in seen:
            raise ModelError(f"{reader.path}: tensor {name} appears twice")
        seen.add(name)
        try:
            nbytes = ggml_type.nbytes(math.prod(extents))
        except ModelError as exc:
            raise ModelError(f"{reader.path}: tensor {name}: {exc}") from None
        tensors.append(GgmlTensor(name, extents[::-1], ggml_type, reader.offset, nbytes))
        reader.skip(nbytes, f"tensor {name}")
    return tensors


def _check_layout(path: Path, hparams: Hparams, tensors: list[GgmlTensor]) -> None:
    """Every tensor whisper.cpp creates for these hparams, with its shape and type, and no other."""
    if not tensors:
        raise ModelError(f"{path} has no tensors: a whisper.cpp test stub, not a usable model")
    expected = expected_tensors(hparams)
    found = {t.name: t for t in tensors}
    problems = []
    if missing := [name for name in expected if name not in found]:
        problems.append(f"missing {_some(missing)}")
    if unknown := [name for name in found if name not in expected]:
        problems.append(f"unknown {_some(unknown)}")
    file_type = hparams.file_type
    for name, shape in expected.items():
        if (tensor := found.get(name)) is None:
            continue
        if tensor.shape != shape:
            problems.append(f"{name} is {tensor.shape}, expected {shape}")
        elif tensor.ggml_type is not (want := expected_type(name, shape, file_type)):
            problems.append(f"{name} is {tensor.ggml_type.name}, expected {want.name}")
    if problems:
        raise ModelError(f"{path} does not fit a {hparams.kind} model: " + "; ".join(problems[:8]))


def _some(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
