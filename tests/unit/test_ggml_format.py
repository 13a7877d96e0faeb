"""whisper.cpp's ggml file format: the shared models, damaged copies, and exact round trips."""

from __future__ import annotations

import hashlib
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from orac_node.errors import ModelError
from orac_node.models.ggml import (
    GgmlWriter,
    Hparams,
    expected_tensors,
    read_hparams,
    read_info,
    tensor_data,
)
from orac_node.models.ggml_types import FileType, GgmlType
from orac_node.models.layout import expected_type
from orac_node.models.mel import mel_filters
from tests.conftest import MODEL

TINY_EN = MODEL
BASE = MODEL.parent / "ggml-base.bin"

Tensor = tuple[str, tuple[int, ...], GgmlType]


@pytest.mark.parametrize(
    ("path", "kind", "multilingual", "n_vocab", "n_tensors"),
    [(TINY_EN, "tiny", False, 51864, 167), (BASE, "base", True, 51865, 245)],
)
def test_reads_the_shared_models(
    path: Path, kind: str, multilingual: bool, n_vocab: int, n_tensors: int
) -> None:
    info = read_info(path)
    assert (info.kind, info.multilingual, info.quantization) == (kind, multilingual, "f16")
    assert info.hparams.n_vocab == n_vocab
    assert info.hparams.file_type is FileType.MOSTLY_F16
    assert len(info.tensors) == n_tensors
    assert [t.name for t in info.tensors] == list(expected_tensors(info.hparams))
    # whisper.cpp's reference files store GPT-2's 50257 tokens and name the rest itself.
    assert len(info.vocab) == 50257
    assert info.vocab[:3] == (b"!", b'"', b"#")
    assert info.filters.shape == (80, 201)
    # The tensors tile the rest of the file exactly: header + data, no gaps, no tail.
    last = info.tensors[-1]
    assert last.offset + last.nbytes == info.file_size == path.stat().st_size
    embedding = info.tensor("decoder.token_embedding.weight")
    assert (embedding.shape, embedding.ggml_type) == (
        (n_vocab, info.hparams.n_text_state),
        GgmlType.F16,
    )


@pytest.mark.parametrize("path", [TINY_EN, BASE])
def test_mel_filters_match_the_stored_ones_bit_for_bit(path: Path) -> None:
    stored = read_info(path).filters
    computed = mel_filters(80)
    # Measured: max abs difference 0.0; every float32 identical, signed zeros included.
    assert float(np.abs(computed - stored).max()) < 1e-6
    assert np.array_equal(computed.view(np.uint32), stored.view(np.uint32))


# SHA-256 of librosa 0.11's filters.mel(sr=16000, n_fft=400, n_mels=128) as little-endian
# float32, its one -0.0 (band 0, bin 0) written as +0.0 like the 80-band files above. No
# shared file has 128 bands (large-v3's), so this pins them without depending on librosa.
LIBROSA_MEL_128_SHA256 = "e399c2d72d2f7375e503c296d8453cefcc0c1e47a9c1a0a09e0d70f59c820f20"


def test_mel_filters_for_large_v3_match_librosa_bit_for_bit() -> None:
    bands = mel_filters(128)
    assert bands.shape == (128, 201)
    assert bands.dtype == np.float32
    assert hashlib.sha256(bands.astype("<f4").tobytes()).hexdigest() == LIBROSA_MEL_128_SHA256


def test_a_truncated_copy_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "ggml-tiny.en.bin"
    shutil.copyfile(TINY_EN, copy)
    with copy.open("r+b") as f:
        f.truncate(TINY_EN.stat().st_size - 1)
    with pytest.raises(ModelError, match=r"decoder\.ln\.bias runs past the end of the file"):
        read_info(copy)


@pytest.mark.parametrize("path", [TINY_EN, BASE])
def test_the_header_alone_says_what_the_model_is(path: Path, tmp_path: Path) -> None:
    """What a node reads as a session opens: the hyperparameters, and nothing else."""
    assert read_hparams(path) == read_info(path).hparams
    header = tmp_path / "header-only.bin"
    header.write_bytes(path.read_bytes()[:48])  # magic + 11 int32: no filters, no tensors
    assert read_hparams(header).multilingual is (path == BASE)
    with pytest.raises(ModelError):
        read_info(header)
    zeros = tmp_path / "zeros.bin"
    zeros.write_bytes(bytes(48))
    with pytest.raises(ModelError, match="magic"):
        read_hparams(zeros)


def test_a_flipped_magic_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "ggml-tiny.en.bin"
    shutil.copyfile(TINY_EN, copy)
    with copy.open("r+b") as f:
        f.write(b"\x6c\x6d\x67\x66")  # "ggmf": one bit off
    with pytest.raises(ModelError, match=r"not a whisper\.cpp ggml model \(magic 6c6d6766\)"):
        read_info(copy)


@pytest.mark.parametrize("prefix", [b"", b"lmgg", b"GGUF"])
def test_random_bytes_are_refused(tmp_path: Path, prefix: bytes) -> None:
    noise = tmp_path / "noise.bin"
    noise.write_bytes(prefix + np.random.default_rng(7).bytes(4096))
    with pytest.raises(ModelError):
        read_info(noise)


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.bin"
    empty.touch()
    with pytest.raises(ModelError, match="truncated"):
        read_info(empty)


# A small synthetic model: every tensor whisper.cpp expects, at a width of 32 so that
# quantized blocks (32 values) tile each row.
SMALL = {
    "n_vocab": 16,
    "n_audio_ctx": 4,
    "n_audio_state": 32,
    "n_audio_head": 2,
    "n_audio_layer": 2,
    "n_text_ctx": 3,
    "n_text_state": 32,
    "n_text_head": 2,
    "n_text_layer": 1,
    "n_mels": 2,
}
VOCAB = [b"!", b"\xe2\x80", b"", b" hello", b"<|endoftext|>"]


def small_tensors(hparams: Hparams) -> list[Tensor]:
    file_type = hparams.file_type
    return [
        (name, shape, expected_type(name, shape, file_type))
        for name, shape in expected_tensors(hparams).items()
    ]


def synthetic_file(hparams: Hparams, tensors: list[Tensor], vocab: list[bytes] = VOCAB) -> bytes:
    """A ggml file laid out by hand, following whisper.cpp's loader, not the writer."""
    rng = np.random.default_rng(0)
    out = [struct.pack("<I11i", 0x67676D6C, *hparams.values())]
    filters = rng.random((hparams.n_mels, 201), dtype=np.float32)
    out += [struct.pack("<2i", *filters.shape), filters.astype("<f4").tobytes()]
    out += [struct.pack("<i", len(vocab))]
    out += [struct.pack("<I", len(token)) + token for token in vocab]
    for name, shape, ggml_type in tensors:
        n = int(np.prod(shape))
        head = struct.pack("<3i", len(shape), len(name), ggml_type)
        out += [head + struct.pack(f"<{len(shape)}i", *shape[::-1]) + name.encode()]
        out += [rng.bytes(n // ggml_type.block_size * ggml_type.block_bytes)]
    return b"".join(out)


@pytest.mark.parametrize(
    ("ftype", "quantization"), [(0, "f32"), (1, "f16"), (2007, "q8_0"), (2008, "q5_0")]
)
def test_the_writer_reproduces_a_synthetic_file_byte_for_byte(
    tmp_path: Path, ftype: int, quantization: str
) -> None:
    hparams = Hparams(**SMALL, ftype=ftype)
    original = tmp_path / "original.bin"
    original.write_bytes(synthetic_file(hparams, small_tensors(hparams)))
    info = read_info(original)
    assert (info.kind, info.multilingual, info.quantization) == ("custom", False, quantization)
    assert info.vocab == tuple(VOCAB)

    copy = tmp_path / "copy.bin"
    with copy.open("wb") as out:
        writer = GgmlWriter(out, hparams=info.hparams, filters=info.filters, vocab=info.vocab)
        for tensor in info.tensors:
            writer.add_tensor(
                tensor.name, tensor.ggml_type, tensor.shape, tensor_data(original, tensor)
            )
    assert copy.read_bytes() == original.read_bytes()
    assert writer.tensors == list(info.tensors)
    assert writer.bytes_written == original.stat().st_size


def test_every_prefix_of_a_synthetic_file_is_refused(tmp_path: Path) -> None:
    hparams = Hparams(**SMALL, ftype=2008)
    whole = synthetic_file(hparams, small_tensors(hparams))
    cut = tmp_path / "cut.bin"
    for length in range(0, len(whole), 97):
        cut.write_bytes(whole[:length])
        with pytest.raises(ModelError):
            read_info(cut)


F16 = Hparams(**SMALL, ftype=1)


def _without(name: str) -> list[Tensor]:
    return [t for t in small_tensors(F16) if t[0] != name]


def _with(name: str, shape: tuple[int, ...], ggml_type: GgmlType) -> list[Tensor]:
    return [(n, shape, ggml_type) if n == name else (n, s, t) for n, s, t in small_tensors(F16)]


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        (_without("decoder.blocks.0.cross_attn.key.weight"), r"missing decoder\.blocks\.0\.cross"),
        (
            [*small_tensors(F16), ("encoder.blocks.0.attn.key.bias", (32,), GgmlType.F32)],
            r"unknown encoder\.blocks\.0\.attn\.key\.bias",
        ),
        (_with("encoder.conv1.weight", (32, 3, 2), GgmlType.F16), r"conv1\.weight is \(32, 3, 2\)"),
        (_with("decoder.ln.bias", (32,), GgmlType.F16), r"decoder\.ln\.bias is F16, expected F32"),
        ([*small_tensors(F16), small_tensors(F16)[3]], r"encoder\.conv2\.weight appears twice"),
        ([], r"no tensors: a whisper\.cpp test stub"),
    ],
    ids=["missing", "unknown", "mis-shaped", "mistyped", "duplicate", "empty"],
)
def test_a_layout_whisper_cpp_would_refuse_is_named(
    tmp_path: Path, tensors: list[Tensor], message: str
) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(synthetic_file(F16, tensors))
    with pytest.raises(ModelError, match=message):
        read_info(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ftype": 4}, r"cannot load ftype 4"),  # MOSTLY_Q4_1_SOME_F16: ggml maps it to no type
        ({"ftype": 5}, r"unknown or unsupported ggml ftype 5"),
        ({"ftype": -1}, r"unknown or unsupported ggml ftype -1"),
        ({"n_text_state": 64}, r"encoder width 32 != decoder 64"),
        ({"n_audio_head": 3}, r"whole attention heads"),
        ({"n_audio_layer": 0}, r"n_audio_layer=0"),
    ],
)
def test_impossible_hyperparameters_are_named(
    tmp_path: Path, change: dict[str, int], message: str
) -> None:
    hparams = Hparams(**(SMALL | {"ftype": 1} | change))
    path = tmp_path / "model.bin"
    path.write_bytes(synthetic_file(hparams, []))
    with pytest.raises(ModelError, match=message):
        read_info(path)


def test_more_stored_tokens_than_n_vocab_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(synthetic_file(F16, small_tensors(F16), vocab=[b"x"] * 17))
    with pytest.raises(ModelError, match="17 stored tokens, n_vocab is 16"):
        read_info(path)


def test_the_writer_refuses_data_that_does_not_fit(tmp_path: Path) -> None:
    with (tmp_path / "out.bin").open("wb") as out:
        writer = GgmlWriter(out, hparams=F16, filters=mel_filters(2), vocab=VOCAB)
        with pytest.raises(ModelError, match="float32"):
            writer.add_tensor("x", GgmlType.F16, (2, 2), np.zeros((2, 2), np.float32))
        with pytest.raises(ModelError, match="do not fill whole Q8_0 blocks"):
            writer.add_tensor("x", GgmlType.Q8_0, (2, 20), b"")
        with pytest.raises(ModelError, match="3 bytes, F32 needs 4"):
            writer.add_tensor("x", GgmlType.F32, (1,), b"abc")
