"""CTranslate2's ``model.bin``: its variable table, read with the data left on disk.

The layout, as ctranslate2's ``ModelSpec._serialize`` writes it (binary
version 6, all little-endian, no padding):

1. uint32 binary version; the spec name (e.g. "WhisperSpec") as a string;
   uint32 spec revision;
2. uint32 variable count, then per variable: its name (a string), uint8
   rank, rank uint32 extents (numpy order), uint8 dtype id, uint32 byte count,
   the data;
3. uint32 alias count, then per alias two strings: the alias and the variable
   it stands for (Whisper's output projection is an alias of the token
   embedding).

A string is a uint16 length that counts a trailing NUL, then that many bytes.
Reading needs only numpy: neither ctranslate2 nor torch.
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from orac_node.errors import ModelError
from orac_node.models.binreader import BoundedReader

BINARY_VERSION = 6
"""The layout described above, the one current ctranslate2 (4.x) writes. Files of
other versions are refused rather than parsed by guesswork."""
_UINT8 = struct.Struct("<B")
_UINT16 = struct.Struct("<H")
_UINT32 = struct.Struct("<I")


class Ct2DType(enum.IntEnum):
    """A variable's element type: ctranslate2's ``DataType`` enum, in its order."""

    FLOAT32 = 0
    INT8 = 1
    INT16 = 2
    INT32 = 3
    FLOAT16 = 4
    BFLOAT16 = 5

    @property
    def storage(self) -> np.dtype[np.generic]:
        """The numpy dtype of the stored elements (bfloat16 as its raw 16-bit words)."""
        return np.dtype(_STORAGE[self])


_STORAGE = {
    Ct2DType.FLOAT32: "<f4",
    Ct2DType.INT8: "i1",
    Ct2DType.INT16: "<i2",
    Ct2DType.INT32: "<i4",
    Ct2DType.FLOAT16: "<f2",
    Ct2DType.BFLOAT16: "<u2",
}


@dataclass(frozen=True)
class Ct2Variable:
    """One variable's entry: its shape, type and where its data lies in the file."""

    name: str
    shape: tuple[int, ...]
    dtype: Ct2DType
    offset: int
    nbytes: int


@dataclass(frozen=True)
class Ct2ModelFile:
    """A model.bin's table of contents."""

    path: Path
    spec: str
    revision: int
    variables: dict[str, Ct2Variable]
    aliases: dict[str, str]
    """Alias name -> the variable it stands for."""

    def array(self, name: str) -> npt.NDArray[np.generic]:
        """A read-only memory map of variable ``name`` in its storage dtype."""
        variable = self.variables[name]
        return np.memmap(
            self.path, variable.dtype.storage, "r", variable.offset, variable.shape or (1,)
        )

    def scalar(self, name: str) -> int:
        """The value of a one-element integer variable (a flag, a head count)."""
        return int(self.array(name).reshape(-1)[0])


def read_model_file(path: Path) -> Ct2ModelFile:
    """Parse ``model.bin``'s variable table without loading the data (raises ModelError)."""
    try:
        with path.open("rb") as stream:
            reader = BoundedReader(stream, path)
            (version,) = reader.unpack(_UINT32, "the binary version")
            if version != BINARY_VERSION:
                raise ModelError(
                    f"{path}: CTranslate2 binary version {version}; this reader knows "
                    f"version {BINARY_VERSION} (reconvert with a current ctranslate2)"
                )
            spec = _string(reader, "the spec name")
            (revision,) = reader.unpack(_UINT32, "the spec revision")
            (count,) = reader.unpack(_UINT32, "the variable count")
            variables: dict[str, Ct2Variable] = {}
            for index in range(count):
                variable = _variable(reader, f"variable #{index}")
                if variable.name in variables:
                    raise ModelError(f"{path}: variable {variable.name} appears twice")
                variables[variable.name] = variable
            (count,) = reader.unpack(_UINT32, "the alias count")
            aliases = {
                _string(reader, "an alias"): _string(reader, "an alias target")
                for _ in range(count)
            }
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc
    return Ct2ModelFile(path, spec, revision, variables, aliases)


def _string(reader: BoundedReader, what: str) -> str:
    (length,) = reader.unpack(_UINT16, what)
    raw = reader.take(length, what)
    try:
        return raw.removesuffix(b"\0").decode()
    except UnicodeDecodeError:
        raise ModelError(f"{reader.path}: {what} at {reader.offset} is not text") from None


def _variable(reader: BoundedReader, what: str) -> Ct2Variable:
    name = _string(reader, what)
    (rank,) = reader.unpack(_UINT8, f"the rank of {name}")
    shape = reader.unpack(struct.Struct(f"<{rank}I"), f"the shape of {name}")
    (type_id,) = reader.unpack(_UINT8, f"the type of {name}")
    (nbytes,) = reader.unpack(_UINT32, f"the size of {name}")
    try:
        dtype = Ct2DType(type_id)
    except ValueError:
        raise ModelError(f"{reader.path}: variable {name} has unknown type {type_id}") from None
    if nbytes != math.prod(shape) * dtype.storage.itemsize:
        raise ModelError(f"{reader.path}: variable {name} {shape} has {nbytes} bytes of data")
    variable = Ct2Variable(name, shape, dtype, reader.offset, nbytes)
    reader.skip(nbytes, f"variable {name}")
    return variable
