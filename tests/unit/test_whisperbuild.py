"""The patched-binding build: patches, settings, the checked download (no compiler here).

Building and installing are exercised by the quick start's setup itself, and the
result by tests/integration/test_beam_determinism.py.
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pytest

from orac_node import whisperbuild
from orac_node.whisperbuild import (
    MARKER,
    PATCHES,
    SDIST_SHA256,
    SDIST_URL,
    BuildError,
    Patch,
    apply_patches,
    build_key,
    cmake_settings,
    fetch_sdist,
    main,
)
from tests.unit.fileserver import FileServer

PATCH = Patch("src/a.cpp", "int seed = 1;\n", "int seed = 0;\n", "a test")


def test_a_patch_replaces_its_passage(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.cpp").write_text("x\nint seed = 1;\ny\n")
    apply_patches(tmp_path, (PATCH,))
    assert (tmp_path / "src" / "a.cpp").read_text() == "x\nint seed = 0;\ny\n"


@pytest.mark.parametrize("text", ["x\n", "int seed = 1;\nint seed = 1;\n"], ids=["gone", "twice"])
def test_a_passage_not_there_exactly_once_stops_the_build(tmp_path: Path, text: str) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.cpp").write_text(text)
    with pytest.raises(BuildError, match="redone"):
        apply_patches(tmp_path, (PATCH,))
    assert (tmp_path / "src" / "a.cpp").read_text() == text


def test_the_patches_fit_pywhispercpps_own_source(tmp_path: Path) -> None:
    # The real sdist (downloaded once into the build cache by the setup, else now).
    sdist = fetch_sdist(SDIST_URL, SDIST_SHA256, whisperbuild.CACHE)
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path, filter="data")
    source = next(tmp_path.iterdir())
    apply_patches(source)
    patched = (source / PATCHES[0].path).read_text()
    assert "state->decoders[0].rng = std::mt19937(0);" in patched
    assert MARKER in patched


def test_x86_builds_match_the_pypi_wheels_instruction_sets() -> None:
    settings = cmake_settings({}, machine="x86_64")
    assert settings["GGML_NATIVE"] == "OFF" and settings["GGML_AVX2"] == "ON"
    assert cmake_settings({"GGML_NATIVE": "ON"}, machine="x86_64")["GGML_NATIVE"] == "ON"
    assert cmake_settings({"GGML_CUDA": "1"}, machine="aarch64") == {"GGML_CUDA": "1"}


def test_each_build_has_a_key_of_its_own() -> None:
    cpu, cuda = cmake_settings({}), cmake_settings({"GGML_CUDA": "1"})
    assert build_key(cpu) == build_key(dict(cpu))
    assert build_key(cpu) != build_key(cuda)


def _archive(tmp_path: Path) -> bytes:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "setup.py").write_text("")
    with tarfile.open(tmp_path / "pkg.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "pkg", arcname="pkg")
    return (tmp_path / "pkg.tar.gz").read_bytes()


def test_the_sdist_is_downloaded_once_and_checked(tmp_path: Path) -> None:
    body = _archive(tmp_path)
    digest = hashlib.sha256(body).hexdigest()
    cache = tmp_path / "cache"
    with FileServer({"/sdist/pkg.tar.gz": body}, prefix="/sdist") as server:
        url = f"{server.url}/pkg.tar.gz"
        first = fetch_sdist(url, digest, cache)
        again = fetch_sdist(url, digest, cache)
        assert first == again and first.read_bytes() == body
        assert server.requests == ["/sdist/pkg.tar.gz"]  # the second came from the cache


def test_a_wrong_checksum_leaves_nothing_behind(tmp_path: Path) -> None:
    body = _archive(tmp_path)
    cache = tmp_path / "cache"
    with FileServer({"/sdist/pkg.tar.gz": body}, prefix="/sdist") as server:
        with pytest.raises(BuildError, match="sha256"):
            fetch_sdist(f"{server.url}/pkg.tar.gz", "0" * 64, cache)
        with pytest.raises(BuildError, match="cannot download"):
            fetch_sdist(f"{server.url}/missing.tar.gz", "0" * 64, cache)
    assert list(cache.iterdir()) == []


def test_a_malformed_cmake_setting_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--cmake", "GGML_CUDA"])
    assert exit_.value.code == 2
    assert "NAME=VALUE" in capsys.readouterr().err
