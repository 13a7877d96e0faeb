"""A ggml model's weight matrices in 8 bits (q8_0): a smaller file, and faster decodes on CPU.

whisper.cpp's own ``quantize`` tool is not part of the Python binding, so the
store does it here, tensor by tensor, as that tool does: every matrix the
loader allocates in the file's weight type (``layout.expected_type``) becomes
q8_0; vectors, the positional embeddings and the convolution kernels keep the
types the loader expects of them (f32, f32, f16). Mel filters and vocabulary
are copied unchanged.

q8_0 is ggml's block format of 32 weights: one f16 scale ``d = max|x| / 127``
and 32 int8 values ``round(x / d)`` (half away from zero, as C's ``roundf``).
It is the gentlest of ggml's quantizations: each weight is off by at most half
a step, 1/254 of its block's largest weight (tests/unit/test_quantize.py); the
store's validation and the bench measure what that does to the text.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from orac_node.errors import ModelError
from orac_node.models.ggml import GgmlWriter, read_info, tensor_data
from orac_node.models.ggml_types import QNT_VERSION_FACTOR, FileType, GgmlType
from orac_node.models.layout import expected_type

Q8_0_BLOCK = 32
"""Weights per q8_0 block (ggml's QK8_0)."""
QNT_VERSION = 2
"""ggml's current quantization format version (GGML_QNT_VERSION), stored in ftype."""
_Q8_0 = np.dtype([("d", "<f2"), ("qs", "i1", (Q8_0_BLOCK,))])  # 34 bytes, packed like C


def quantize_q8_0(values: npt.NDArray[np.floating]) -> npt.NDArray[np.void]:
    """Blocks of 32 values along the last axis as q8_0 records (ggml's reference rounding)."""
    if values.shape[-1] % Q8_0_BLOCK:
        raise ModelError(f"rows of {values.shape[-1]} do not split into q8_0 blocks of 32")
    blocks = np.asarray(values, dtype=np.float32).reshape(-1, Q8_0_BLOCK)
    scale = np.abs(blocks).max(axis=1) / 127
    inverse = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale > 0)
    scaled = blocks * inverse[:, None]
    out = np.empty(blocks.shape[0], dtype=_Q8_0)
    out["d"] = scale.astype(np.float16)
    out["qs"] = np.trunc(scaled + np.copysign(0.5, scaled)).astype(np.int8)
    return out


def dequantize_q8_0(records: npt.NDArray[np.void]) -> npt.NDArray[np.float32]:
    """The values q8_0 records stand for (what ggml computes with)."""
    d = records["d"].astype(np.float32)[:, None]
    return (records["qs"].astype(np.float32) * d).reshape(-1)


def quantize_model(
    source: Path,
    target: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Write ``source`` (an f16 or f32 ggml model) as a q8_0 model at ``target``, atomically."""
    info = read_info(source)
    if info.quantization not in ("f16", "f32"):
        raise ModelError(f"{source} is already {info.quantization}: quantize an f16 or f32 model")
    file_type = FileType.MOSTLY_Q8_0
    hparams = dataclasses.replace(
        info.hparams, ftype=file_type.value + QNT_VERSION * QNT_VERSION_FACTOR
    )
    part = target.with_name(target.name + ".part")
    try:
        with part.open("wb") as out:
            writer = GgmlWriter(out, hparams=hparams, filters=info.filters, vocab=info.vocab)
            for done, tensor in enumerate(info.tensors, 1):
                kind = expected_type(tensor.name, tensor.shape, file_type)
                data = np.asarray(tensor_data(source, tensor), dtype=np.float32)
                if kind is GgmlType.Q8_0:
                    writer.add_tensor(
                        tensor.name, kind, tensor.shape, quantize_q8_0(data).tobytes()
                    )
                else:
                    dtype = np.float16 if kind is GgmlType.F16 else np.float32
                    writer.add_tensor(tensor.name, kind, tensor.shape, data.astype(dtype))
                if progress is not None:
                    progress(done, len(info.tensors))
            out.flush()
            os.fsync(out.fileno())
        read_info(part)  # the result is a whole model of the layout whisper.cpp expects
        part.replace(target)
    finally:
        part.unlink(missing_ok=True)
