"""Which CTranslate2 variable becomes which whisper.cpp tensor, and in what precision.

CTranslate2 names Whisper's weights after its generic Transformer spec and
fuses the attention projections; whisper.cpp keeps OpenAI's names. Per block
(``encoder/layer_N`` -> ``encoder.blocks.N``, likewise for the decoder):

==============================  ========================================
CTranslate2                     whisper.cpp
==============================  ========================================
self_attention/layer_norm       attn_ln (gamma -> weight, beta -> bias)
self_attention/linear_0         attn.query, attn.key, attn.value (rows)
self_attention/linear_1         attn.out
attention/layer_norm            cross_attn_ln
attention/linear_0              cross_attn.query
attention/linear_1              cross_attn.key, cross_attn.value (rows)
attention/linear_2              cross_attn.out
ffn/layer_norm, linear_0/1      mlp_ln, mlp.0, mlp.2
==============================  ========================================

Weights are stored (out, in) by both, so nothing is transposed. Whisper's key
projections have no bias: CTranslate2's fused bias holds zeros in the key's
rows, and they are dropped. That loses nothing even if they were not zero: a
constant added to every key changes all of one query's scores by the same
amount, which softmax ignores.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orac_node.errors import ModelError
from orac_node.models.ct2file import Ct2DType, Ct2ModelFile
from orac_node.models.ggml_types import FileType, GgmlType
from orac_node.models.layout import Hparams, expected_tensors, expected_type

ARCHITECTURE = {
    "decoder/activation": (3, "GELU"),  # ctranslate2's Activation enum: GELU = 3
    "decoder/pre_norm": (1, "pre-norm blocks"),
    "decoder/alibi": (0, "no ALiBi"),
    "decoder/scale_embeddings": (0, "unscaled token embeddings"),
    "decoder/start_from_zero_embedding": (0, "positions from 0"),
}
"""Decoder flags whisper.cpp's graph assumes: (value, meaning). Required: Systran's
faster-whisper conversions and ctranslate2 4.8 both write all five, and ctranslate2's
generic defaults (ReLU among them) are not Whisper's."""
HEAD_COUNTS = ("encoder/num_heads", "decoder/num_heads")
IGNORED = (
    "decoder/alignment_heads",
    "decoder/alignment_layer",
    "decoder/alibi_use_positive_positions",
    "decoder/scale_alibi",
)
"""Not carried over: ctranslate2's cross-attention heads for word timestamps (whisper.cpp
keeps its own table per model size), and two ALiBi details that current ctranslate2
(4.x) also writes, moot with ALiBi off."""
TIED_PROJECTION = {"decoder/projection/weight": "decoder/embeddings/weight"}
"""The only alias: Whisper's output projection is its token embedding, as in whisper.cpp."""
_FLOATS = (Ct2DType.FLOAT16, Ct2DType.FLOAT32, Ct2DType.BFLOAT16)


@dataclass(frozen=True)
class Step:
    """One ggml tensor: its name, shape and type, and the rows of a variable it comes from."""

    name: str
    shape: tuple[int, ...]
    ggml_type: GgmlType
    variable: str
    part: int = 0
    parts: int = 1
    """The variable's rows split into ``parts`` equal blocks (3 for fused q/k/v); use ``part``."""

    def data(self, model: Ct2ModelFile) -> npt.NDArray[np.generic]:
        """The tensor, in its ggml type: a view of the mapped file when no conversion is needed."""
        whole = model.array(self.variable)
        rows = whole.shape[0] // self.parts
        block = whole[self.part * rows : (self.part + 1) * rows].reshape(self.shape)
        source = model.variables[self.variable].dtype
        if self.ggml_type is GgmlType.F16 or source is Ct2DType.FLOAT32:
            return block  # F16 is only chosen for a float16 source: both cases are as stored
        if source is Ct2DType.BFLOAT16:  # bfloat16 is float32's upper half
            return (block.astype("<u4") << 16).view("<f4")
        return block.astype("<f4")


@dataclass(frozen=True)
class ConversionPlan:
    """The ggml file to write: hyperparameters, tensors in file order, what was checked."""

    hparams: Hparams
    steps: tuple[Step, ...]
    checks: tuple[str, ...]


def plan_conversion(model: Ct2ModelFile) -> ConversionPlan:
    """Map every variable of a Whisper model.bin, or raise ModelError naming what does not fit."""
    _check_architecture(model)
    file_type = _file_type(model)
    hparams = _hparams(model, file_type)
    hparams.validate(model.path)
    sources = _sources(hparams)
    if missing := sorted({v for v, _, _ in sources.values()} - model.variables.keys()):
        raise ModelError(f"{model.path}: missing variables {', '.join(missing)}")
    used = {v for v, _, _ in sources.values()} | set(ARCHITECTURE) | set(HEAD_COUNTS)
    if unknown := sorted(model.variables.keys() - used - set(IGNORED)):
        raise ModelError(f"{model.path}: variables whisper.cpp has no place for: {unknown}")
    steps = []
    for name, shape in expected_tensors(hparams).items():
        variable, part, parts = sources[name]
        have = model.variables[variable].shape
        if have[0] % parts or _squeezed((have[0] // parts, *have[1:])) != _squeezed(shape):
            raise ModelError(f"{model.path}: {variable} is {have}, {name} must be {shape}")
        steps.append(
            Step(name, shape, expected_type(name, shape, file_type), variable, part, parts)
        )
    key_bias = _largest_key_bias(model, hparams)
    checks = (
        f"model.bin: {len(model.variables)} variables, each mapped to a whisper.cpp tensor "
        f"or checked as a setting (not carried over: {', '.join(sorted(IGNORED))})",
        "architecture: "
        + ", ".join(meaning for _, meaning in ARCHITECTURE.values())
        + ", output projection tied to the token embedding",
        f"precision: {model.variables['decoder/embeddings/weight'].dtype.name.lower()} -> "
        f"{file_type.quantization} matrices, f32 vectors (no value rounded)",
        f"fused attention split back into query/key/value; dropped key biases: "
        f"largest |value| {key_bias}",
    )
    return ConversionPlan(hparams, tuple(steps), checks)


def _check_architecture(model: Ct2ModelFile) -> None:
    if model.aliases != TIED_PROJECTION:
        raise ModelError(f"{model.path}: aliases {model.aliases}, expected {TIED_PROJECTION}")
    if missing := [name for name in ARCHITECTURE if name not in model.variables]:
        raise ModelError(f"{model.path} is not a Whisper model: no {', '.join(missing)}")
    for name, (value, meaning) in ARCHITECTURE.items():
        if model.scalar(name) != value:
            raise ModelError(
                f"{model.path}: {name} = {model.scalar(name)}; whisper.cpp needs {meaning}"
            )


def _file_type(model: Ct2ModelFile) -> FileType:
    """f16 when every matrix is float16 (kept as is), else all f32 (float32/bfloat16 widened)."""
    types = {v.dtype for v in model.variables.values() if len(v.shape) >= 2}
    if quantized := types - set(_FLOATS):
        raise ModelError(
            f"{model.path} is quantized ({', '.join(t.name.lower() for t in quantized)}): only "
            "float16 or float32 CTranslate2 models convert losslessly; convert the original "
            "checkpoint again with --quantization float16"
        )
    return FileType.MOSTLY_F16 if types == {Ct2DType.FLOAT16} else FileType.ALL_F32


def _hparams(model: Ct2ModelFile, file_type: FileType) -> Hparams:
    needed = (
        "encoder/conv1/weight",
        "decoder/embeddings/weight",
        "encoder/position_encodings/encodings",
        "decoder/position_encodings/encodings",
        *HEAD_COUNTS,
    )
    if missing := [name for name in needed if name not in model.variables]:
        raise ModelError(f"{model.path} is not a Whisper model: no {', '.join(missing)}")
    width, n_mels, _ = model.variables["encoder/conv1/weight"].shape
    n_vocab, text_width = model.variables["decoder/embeddings/weight"].shape
    return Hparams(
        n_vocab=n_vocab,
        n_audio_ctx=model.variables["encoder/position_encodings/encodings"].shape[0],
        n_audio_state=width,
        n_audio_head=model.scalar("encoder/num_heads"),
        n_audio_layer=_layer_count(model, "encoder"),
        n_text_ctx=model.variables["decoder/position_encodings/encodings"].shape[0],
        n_text_state=text_width,
        n_text_head=model.scalar("decoder/num_heads"),
        n_text_layer=_layer_count(model, "decoder"),
        n_mels=n_mels,
        ftype=file_type.value,
    )


def _layer_count(model: Ct2ModelFile, stack: str) -> int:
    pattern = re.compile(rf"{stack}/layer_(\d+)/")
    found = (pattern.match(name) for name in model.variables)
    return 1 + max((int(m.group(1)) for m in found if m), default=-1)


Source = tuple[str, int, int]
"""(variable, part, parts): rows ``part`` of ``parts`` equal blocks of the variable."""


def _sources(hparams: Hparams) -> dict[str, Source]:
    """whisper.cpp tensor name -> where its data is in model.bin."""
    sources: dict[str, Source] = {}

    def linear(name: str, variable: str, part: int = 0, parts: int = 1, bias: bool = True) -> None:
        sources[f"{name}.weight"] = (f"{variable}/weight", part, parts)
        if bias:
            sources[f"{name}.bias"] = (f"{variable}/bias", part, parts)

    def norm(name: str, variable: str) -> None:
        sources[f"{name}.weight"] = (f"{variable}/gamma", 0, 1)
        sources[f"{name}.bias"] = (f"{variable}/beta", 0, 1)

    for stack, count in (("encoder", hparams.n_audio_layer), ("decoder", hparams.n_text_layer)):
        sources[f"{stack}.positional_embedding"] = (f"{stack}/position_encodings/encodings", 0, 1)
        norm("encoder.ln_post" if stack == "encoder" else "decoder.ln", f"{stack}/layer_norm")
        for layer in range(count):
            block, scope = f"{stack}.blocks.{layer}", f"{stack}/layer_{layer}"
            norm(f"{block}.attn_ln", f"{scope}/self_attention/layer_norm")
            for part, projection in enumerate(("query", "key", "value")):
                linear(
                    f"{block}.attn.{projection}",
                    f"{scope}/self_attention/linear_0",
                    part,
                    3,
                    bias=projection != "key",
                )
            linear(f"{block}.attn.out", f"{scope}/self_attention/linear_1")
            if stack == "decoder":
                norm(f"{block}.cross_attn_ln", f"{scope}/attention/layer_norm")
                linear(f"{block}.cross_attn.query", f"{scope}/attention/linear_0")
                linear(f"{block}.cross_attn.key", f"{scope}/attention/linear_1", 0, 2, bias=False)
                linear(f"{block}.cross_attn.value", f"{scope}/attention/linear_1", 1, 2)
                linear(f"{block}.cross_attn.out", f"{scope}/attention/linear_2")
            norm(f"{block}.mlp_ln", f"{scope}/ffn/layer_norm")
            linear(f"{block}.mlp.0", f"{scope}/ffn/linear_0")
            linear(f"{block}.mlp.2", f"{scope}/ffn/linear_1")
    linear("encoder.conv1", "encoder/conv1")
    linear("encoder.conv2", "encoder/conv2")
    sources["decoder.token_embedding.weight"] = ("decoder/embeddings/weight", 0, 1)
    return sources


def _largest_key_bias(model: Ct2ModelFile, hparams: Hparams) -> float:
    """The largest magnitude among the key-bias rows that the split drops."""
    dropped = [
        (f"encoder/layer_{i}/self_attention/linear_0/bias", 1, 3)
        for i in range(hparams.n_audio_layer)
    ]
    for i in range(hparams.n_text_layer):
        dropped.append((f"decoder/layer_{i}/self_attention/linear_0/bias", 1, 3))
        dropped.append((f"decoder/layer_{i}/attention/linear_1/bias", 0, 2))
    largest = 0.0
    for variable, part, parts in dropped:
        step = Step("", (hparams.n_text_state,), GgmlType.F32, variable, part, parts)
        largest = max(largest, float(np.abs(step.data(model)).max()))
    return largest


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape without its extents of 1: ggml's conv bias (n, 1) holds CTranslate2's (n,)."""
    return tuple(extent for extent in shape if extent != 1)
