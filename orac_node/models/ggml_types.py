"""ggml's numeric tables: tensor element types, their block sizes, and file types.

Two enums from ggml's ``ggml.h`` matter to a whisper.cpp model file, and they
number things differently:

- a *tensor type* (``enum ggml_type``) says how one tensor's bytes encode
  numbers: F32, F16, or a quantized block format such as Q5_0;
- a *file type* (``enum ggml_ftype``, the header's ``ftype``) says which type
  the file's big matrices use ("mostly Q5_0": vectors stay F32).

Quantized types store blocks of numbers (32 per block for Q4_0..Q8_0, 256 for
the K-quants), so a tensor's size is ``elements / block_size * block_bytes``.
Only the types whisper.cpp's own converter and ``quantize`` tool write are
listed; a file with any other type is reported as unsupported rather than
guessed at.
"""

from __future__ import annotations

import enum

import numpy as np

from orac_node.errors import ModelError

QNT_VERSION_FACTOR = 1000
"""ggml's ``GGML_QNT_VERSION_FACTOR``: whisper.cpp's ``quantize`` writes the header's
ftype as ``GGML_QNT_VERSION * 1000 + ftype`` (GGML_QNT_VERSION is 2 in the ggml of
whisper.cpp 1.8), and the loader takes ``ftype % 1000`` as the file type."""


class GgmlType(enum.IntEnum):
    """A tensor's element encoding (ggml's ``enum ggml_type``; 4 and 5 were removed)."""

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    BF16 = 30

    @property
    def block_size(self) -> int:
        """Elements per block: 1 for plain floats."""
        return _BLOCKS[self][0]

    @property
    def block_bytes(self) -> int:
        """Bytes per block."""
        return _BLOCKS[self][1]

    def nbytes(self, n_elements: int) -> int:
        """Bytes of a tensor of ``n_elements``; ModelError if they do not fill whole blocks."""
        blocks, rest = divmod(n_elements, self.block_size)
        if rest:
            raise ModelError(
                f"{n_elements} elements do not fill whole {self.name} blocks of {self.block_size}"
            )
        return blocks * self.block_bytes

    @property
    def numpy_dtype(self) -> np.dtype[np.generic] | None:
        """The little-endian numpy dtype of one element, or None for block formats."""
        if self is GgmlType.F32:
            return np.dtype("<f4")
        if self is GgmlType.F16:
            return np.dtype("<f2")
        return None


# (elements per block, bytes per block), from the block structs in ggml-common.h:
# e.g. block_q4_0 is one f16 scale + 32 four-bit values = 2 + 16 bytes; the K-quants
# pack 256 values with sub-block scales (QK_K = 256, K_SCALE_SIZE = 12).
_BLOCKS: dict[GgmlType, tuple[int, int]] = {
    GgmlType.F32: (1, 4),
    GgmlType.F16: (1, 2),
    GgmlType.BF16: (1, 2),
    GgmlType.Q4_0: (32, 2 + 16),
    GgmlType.Q4_1: (32, 2 + 2 + 16),
    GgmlType.Q5_0: (32, 2 + 4 + 16),
    GgmlType.Q5_1: (32, 2 + 2 + 4 + 16),
    GgmlType.Q8_0: (32, 2 + 32),
    GgmlType.Q2_K: (256, 2 + 2 + 16 + 64),
    GgmlType.Q3_K: (256, 2 + 64 + 32 + 12),
    GgmlType.Q4_K: (256, 2 + 2 + 12 + 128),
    GgmlType.Q5_K: (256, 2 + 2 + 12 + 128 + 32),
    GgmlType.Q6_K: (256, 2 + 16 + 192),
}


class FileType(enum.IntEnum):
    """What the header's ftype (modulo QNT_VERSION_FACTOR) says: ggml's ``enum ggml_ftype``."""

    ALL_F32 = 0
    MOSTLY_F16 = 1
    MOSTLY_Q4_0 = 2
    MOSTLY_Q4_1 = 3
    MOSTLY_Q4_1_SOME_F16 = 4
    MOSTLY_Q8_0 = 7
    MOSTLY_Q5_0 = 8
    MOSTLY_Q5_1 = 9
    MOSTLY_Q2_K = 10
    MOSTLY_Q3_K = 11
    MOSTLY_Q4_K = 12
    MOSTLY_Q5_K = 13
    MOSTLY_Q6_K = 14
    MOSTLY_BF16 = 24

    @property
    def quantization(self) -> str:
        """The short name people and whisper.cpp's tools use: "f16", "q5_0", ..."""
        return self.name.removeprefix("ALL_").removeprefix("MOSTLY_").lower()

    @property
    def weight_type(self) -> GgmlType:
        """The tensor type of the big matrices, as whisper.cpp's loader derives it.

        Raises ModelError for MOSTLY_Q4_1_SOME_F16, which ggml maps to no type
        and whisper.cpp refuses.
        """
        try:
            return GgmlType[self.quantization.upper()]
        except KeyError:
            raise ModelError(f"whisper.cpp cannot load ftype {self.value} ({self.name})") from None

    @property
    def conv_type(self) -> GgmlType:
        """The type of the two convolution kernels: F32 in an all-F32 file, else F16.

        whisper.cpp never quantizes them (its ``quantize`` tool only touches 2-D
        tensors; they are 3-D).
        """
        return GgmlType.F32 if self is FileType.ALL_F32 else GgmlType.F16


def parse_ftype(raw: int) -> tuple[FileType, int]:
    """Split a header's ftype into (file type, quantization format version)."""
    if raw >= 0:
        version, ftype = divmod(raw, QNT_VERSION_FACTOR)
        for file_type in FileType:
            if file_type.value == ftype:
                return file_type, version
    raise ModelError(f"unknown or unsupported ggml ftype {raw}")
