"""Whisper's architecture as whisper.cpp sees it: hyperparameters and the tensors they imply.

whisper.cpp creates one tensor per name below for the hyperparameters in a
file's header, then fills each from the file by name; a missing, extra or
mis-shaped tensor makes it refuse the model. Names are those of OpenAI's
PyTorch checkpoints, which whisper.cpp kept. The order is the one the
converters write (each block read top-down: norm, attention, norm, MLP), so a
file written in this order by any of them comes out byte for byte the same.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from orac_node.errors import ModelError
from orac_node.models.ggml_types import FileType, GgmlType, parse_ftype

MULTILINGUAL_MIN_VOCAB = 51865
"""whisper.cpp's test: English-only models have 51864 tokens, multilingual ones 51865
(large-v3: 51866, one more language). The extra token is <|endoftext|> moving up one
to make room for the multilingual byte-level vocabulary's 50257th entry."""
KINDS = {
    (4, 384): "tiny",
    (6, 512): "base",
    (12, 768): "small",
    (24, 1024): "medium",
    (32, 1280): "large",
}
"""(encoder layers, width) of OpenAI's released sizes; anything else is "custom"."""
UNQUANTIZED = (
    "encoder.positional_embedding",
    "decoder.positional_embedding",
    "encoder.conv1.bias",
    "encoder.conv2.bias",
)
"""2-D tensors that whisper.cpp always keeps F32 (its quantize tool skips them by name)."""
CONVOLUTIONS = ("encoder.conv1.weight", "encoder.conv2.weight")
"""The 3-D kernels: F32 in an all-F32 file, F16 otherwise (see FileType.conv_type)."""


@dataclass(frozen=True)
class Hparams:
    """The eleven int32 hyperparameters of a ggml file's header, in file order."""

    n_vocab: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int
    n_mels: int
    ftype: int
    """As stored: a file type plus 1000 x the quantization version (see ggml_types)."""

    def values(self) -> tuple[int, ...]:
        """The fields in header order, ready to pack."""
        return dataclasses.astuple(self)

    @property
    def kind(self) -> str:
        """tiny, base, small, medium, large, or custom for any other encoder shape."""
        return KINDS.get((self.n_audio_layer, self.n_audio_state), "custom")

    @property
    def multilingual(self) -> bool:
        """Whether whisper.cpp treats the model as multilingual (language tokens, auto-detect)."""
        return self.n_vocab >= MULTILINGUAL_MIN_VOCAB

    @property
    def file_type(self) -> FileType:
        """The file type the ftype field names; ModelError if ggml does not know it."""
        return parse_ftype(self.ftype)[0]

    @property
    def quantization(self) -> str:
        """The file type's short name: f32, f16, q4_0, q5_1, q8_0, ..."""
        return self.file_type.quantization

    def validate(self, source: Path | str) -> None:
        """Raise ModelError for hyperparameters whisper.cpp cannot build a model from."""
        sizes = dataclasses.asdict(self)
        del sizes["ftype"]
        if bad := [f"{name}={value}" for name, value in sizes.items() if value < 1]:
            raise ModelError(f"{source}: impossible hyperparameters {', '.join(bad)}")
        if self.n_audio_state != self.n_text_state:
            # whisper.cpp asserts this: the decoder attends to encoder states directly.
            raise ModelError(
                f"{source}: encoder width {self.n_audio_state} != decoder {self.n_text_state}"
            )
        if self.n_audio_state % self.n_audio_head or self.n_text_state % self.n_text_head:
            raise ModelError(f"{source}: model width does not split into whole attention heads")
        _ = self.file_type.weight_type  # raises for an ftype whisper.cpp refuses


def expected_tensors(hparams: Hparams) -> dict[str, tuple[int, ...]]:
    """Every tensor whisper.cpp loads for ``hparams``: name -> shape in numpy order."""
    width = hparams.n_audio_state
    tensors: dict[str, tuple[int, ...]] = {
        "encoder.positional_embedding": (hparams.n_audio_ctx, width),
        "encoder.conv1.weight": (width, hparams.n_mels, 3),
        "encoder.conv1.bias": (width, 1),
        "encoder.conv2.weight": (width, width, 3),
        "encoder.conv2.bias": (width, 1),
    }
    for layer in range(hparams.n_audio_layer):
        tensors |= _block(f"encoder.blocks.{layer}", width, cross=False)
    tensors["encoder.ln_post.weight"] = (width,)
    tensors["encoder.ln_post.bias"] = (width,)
    tensors["decoder.positional_embedding"] = (hparams.n_text_ctx, width)
    tensors["decoder.token_embedding.weight"] = (hparams.n_vocab, width)
    for layer in range(hparams.n_text_layer):
        tensors |= _block(f"decoder.blocks.{layer}", width, cross=True)
    tensors["decoder.ln.weight"] = (width,)
    tensors["decoder.ln.bias"] = (width,)
    return tensors


def expected_type(name: str, shape: tuple[int, ...], file_type: FileType) -> GgmlType:
    """The tensor type whisper.cpp allocates for tensor ``name`` of ``shape`` in a ``file_type``.

    Vectors (biases, layer norms) and the tensors in UNQUANTIZED are always F32;
    the convolutions follow ``conv_type``; every other matrix is the file's
    weight type.
    """
    if name in UNQUANTIZED or len(shape) == 1:
        return GgmlType.F32
    if name in CONVOLUTIONS:
        return file_type.conv_type
    return file_type.weight_type


def _block(prefix: str, width: int, *, cross: bool) -> dict[str, tuple[int, ...]]:
    """One residual block: self-attention, cross-attention in the decoder, then the MLP."""
    tensors: dict[str, tuple[int, ...]] = {}
    for attention in ("attn", "cross_attn") if cross else ("attn",):
        tensors[f"{prefix}.{attention}_ln.weight"] = (width,)
        tensors[f"{prefix}.{attention}_ln.bias"] = (width,)
        for projection in ("query", "key", "value", "out"):
            tensors[f"{prefix}.{attention}.{projection}.weight"] = (width, width)
            if projection != "key":  # Whisper's key projections have no bias
                tensors[f"{prefix}.{attention}.{projection}.bias"] = (width,)
    hidden = 4 * width  # Whisper's MLP widens 4x, as in the original Transformer
    tensors[f"{prefix}.mlp_ln.weight"] = (width,)
    tensors[f"{prefix}.mlp_ln.bias"] = (width,)
    tensors[f"{prefix}.mlp.0.weight"] = (hidden, width)
    tensors[f"{prefix}.mlp.0.bias"] = (hidden,)
    tensors[f"{prefix}.mlp.2.weight"] = (width, hidden)
    tensors[f"{prefix}.mlp.2.bias"] = (width,)
    return tensors
