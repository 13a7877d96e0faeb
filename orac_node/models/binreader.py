"""Sequential reads of a model file that fail with a ModelError saying what was cut off.

Both model formats read here (ggml, CTranslate2's model.bin) are a header
followed by records whose lengths the file itself states. A damaged file can
state any length, so every read is checked against the bytes left *before*
anything is allocated: a corrupt length is an error message, not a 4 GiB
allocation or a short read parsed as data.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from orac_node.errors import ModelError


class BoundedReader:
    """Reads from an open binary file, tracking the offset and the bytes left."""

    def __init__(self, stream: BinaryIO, path: Path) -> None:
        self.path = path
        self._stream = stream
        self.size = stream.seek(0, 2)
        stream.seek(0)
        self.offset = 0

    @property
    def left(self) -> int:
        """Bytes between the current offset and the end of the file."""
        return self.size - self.offset

    def take(self, n: int, what: str) -> bytes:
        """The next ``n`` bytes; ``what`` names them in the error if the file is shorter."""
        if not 0 <= n <= self.left:
            raise ModelError(
                f"{self.path} is truncated or corrupt: {what} needs {n} bytes at offset "
                f"{self.offset}, the file has {self.left} left"
            )
        chunk = self._stream.read(n)
        self.offset += n
        return chunk

    def unpack(self, layout: struct.Struct, what: str) -> tuple[int, ...]:
        """Read one fixed-size record of integers."""
        values: tuple[int, ...] = layout.unpack(self.take(layout.size, what))
        return values

    def skip(self, n: int, what: str) -> None:
        """Seek past ``n`` bytes of data that must exist (a tensor's, a variable's)."""
        if not 0 <= n <= self.left:
            raise ModelError(
                f"{self.path}: {what} runs past the end of the file "
                f"({n} bytes at offset {self.offset}, file size {self.size})"
            )
        self.offset = self._stream.seek(n, 1)
