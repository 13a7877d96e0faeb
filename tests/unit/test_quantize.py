"""q8_0 quantization: ggml's block format, and a whole model that whisper.cpp loads.

The model test quantizes the real tiny.en and transcribes a real recording with it.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from orac_node.audio import load_audio_file
from orac_node.decode.decoding import DecodeOptions
from orac_node.decode.engine import WhisperEngine
from orac_node.errors import ModelError
from orac_node.models.ggml import read_info
from orac_node.models.ggml_types import GgmlType
from orac_node.models.quantize import dequantize_q8_0, quantize_model, quantize_q8_0
from tests.conftest import AUDIO, MODEL


def test_a_block_is_a_half_scale_and_32_rounded_bytes() -> None:
    values = np.linspace(-1.0, 1.0, 32, dtype=np.float32)
    values[5] = 0.5 / 127  # exactly half a step: rounded away from zero, as C's roundf
    (record,) = quantize_q8_0(values)
    raw = quantize_q8_0(values).tobytes()
    assert len(raw) == 34  # ggml's block_q8_0: ggml_half d, int8 qs[32]
    assert struct.unpack("<e", raw[:2])[0] == pytest.approx(1 / 127, rel=1e-3)
    assert record["qs"][0] == -127 and record["qs"][-1] == 127
    assert record["qs"][5] == 1
    assert np.abs(dequantize_q8_0(quantize_q8_0(values)) - values).max() <= 0.5 / 127 + 1e-3


def test_zeros_and_ragged_rows() -> None:
    zero = quantize_q8_0(np.zeros((2, 64), np.float32))
    assert (zero["d"] == 0).all() and (zero["qs"] == 0).all()
    with pytest.raises(ModelError, match="blocks of 32"):
        quantize_q8_0(np.ones((2, 40), np.float32))


def test_random_weights_keep_their_values_closely() -> None:
    rng = np.random.default_rng(7)
    weights = rng.normal(0, 0.05, (64, 384)).astype(np.float32)
    back = dequantize_q8_0(quantize_q8_0(weights)).reshape(weights.shape)
    error = np.abs(back - weights) / np.abs(weights).max(axis=1, keepdims=True)
    assert error.max() <= 0.5 / 127 + 1e-3  # half a step of each block's scale


def test_a_quantized_tiny_en_loads_and_transcribes(tmp_path: Path) -> None:
    target = tmp_path / "ggml-tiny.en-q8_0.bin"
    calls: list[tuple[int, int]] = []
    quantize_model(MODEL, target, progress=lambda done, total: calls.append((done, total)))
    info = read_info(target)
    assert info.quantization == "q8_0" and info.kind == "tiny" and not info.multilingual
    assert target.stat().st_size < 0.6 * MODEL.stat().st_size
    kinds = {t.name: t.ggml_type for t in info.tensors}
    assert kinds["decoder.token_embedding.weight"] is GgmlType.Q8_0
    assert kinds["encoder.blocks.0.mlp.0.weight"] is GgmlType.Q8_0
    assert kinds["encoder.conv1.weight"] is GgmlType.F16  # as whisper.cpp's tool leaves it
    assert kinds["encoder.positional_embedding"] is GgmlType.F32
    assert calls[-1] == (len(info.tensors), len(info.tensors))
    assert not list(tmp_path.glob("*.part"))
    engine = WhisperEngine(target, threads=2)
    decoding = engine.decode(load_audio_file(AUDIO / "speech" / "jfk.wav"), DecodeOptions())
    assert "ask not what your country can do for you" in decoding.text.lower()
    with pytest.raises(ModelError, match="already q8_0"):
        quantize_model(target, tmp_path / "again.bin")
