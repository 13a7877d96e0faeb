"""Model resolution and download, against a real HTTP server on loopback."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from orac_node.cli.common import model_path
from orac_node.config import NodeConfig
from orac_node.decode.modelfiles import KNOWN_MODELS, resolve_model
from orac_node.errors import ModelError, OracNodeError
from orac_node.models.store import ModelStore
from tests.conftest import MODEL
from tests.unit.fileserver import FileServer

# The real model: resolve_model also checks that whisper.cpp can load what it got.
PAYLOAD = MODEL.read_bytes()
PAYLOAD_SHA1 = hashlib.sha1(PAYLOAD).hexdigest()  # whisper.cpp publishes SHA-1


@pytest.fixture
def hub() -> Iterator[FileServer]:
    with FileServer({"/models/ggml-test-tiny.bin": PAYLOAD}) as running:
        yield running


def test_existing_path_is_returned_as_is(tmp_path: Path) -> None:
    assert resolve_model(MODEL, cache_dir=tmp_path / "cache") == MODEL
    assert resolve_model(str(MODEL), cache_dir=tmp_path / "cache") == MODEL
    # Nothing is copied or downloaded; only the note that this file passed the load check.
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["verified"]


def test_unknown_name_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"tiny\.en"):
        resolve_model("tinny.en", cache_dir=tmp_path)
    with pytest.raises(OracNodeError):
        resolve_model(tmp_path / "missing.bin", cache_dir=tmp_path)


def test_catalog_has_the_published_checksums() -> None:
    assert KNOWN_MODELS["tiny.en"] == "c78c86eb1a8faa21b369bcd33207cc90d64ae9df"
    assert all(len(sha) == 40 for sha in KNOWN_MODELS.values())


def test_named_model_is_downloaded_into_the_cache(hub: FileServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "models"
    path = resolve_model(
        "test-tiny", cache_dir=cache, hub_url=hub.url + "/", catalog={"test-tiny": PAYLOAD_SHA1}
    )
    assert path == cache / "ggml-test-tiny.bin"
    assert path.read_bytes() == PAYLOAD
    # no .part left; "verified" notes that the file passed the load check
    assert sorted(p.name for p in cache.iterdir()) == ["ggml-test-tiny.bin", "verified"]
    assert hub.requests == ["/models/ggml-test-tiny.bin"]


def test_cached_model_is_not_downloaded_again(hub: FileServer, tmp_path: Path) -> None:
    catalog = {"test-tiny": PAYLOAD_SHA1}
    first = resolve_model("test-tiny", cache_dir=tmp_path, hub_url=hub.url, catalog=catalog)
    assert len(hub.requests) == 1
    second = resolve_model("test-tiny", cache_dir=tmp_path, hub_url=hub.url, catalog=catalog)
    assert second == first
    assert len(hub.requests) == 1


def test_pre_placed_model_is_used_without_any_request(hub: FileServer, tmp_path: Path) -> None:
    (tmp_path / "ggml-test-tiny.bin").symlink_to(MODEL)
    path = resolve_model(
        "test-tiny", cache_dir=tmp_path, hub_url=hub.url, catalog={"test-tiny": PAYLOAD_SHA1}
    )
    assert path == tmp_path / "ggml-test-tiny.bin"
    assert hub.requests == []


def test_checksum_mismatch_leaves_no_file(hub: FileServer, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="SHA-1"):
        resolve_model(
            "test-tiny", cache_dir=tmp_path, hub_url=hub.url, catalog={"test-tiny": "0" * 40}
        )
    assert list(tmp_path.iterdir()) == []
    assert hub.requests == ["/models/ggml-test-tiny.bin"]


def test_http_404_is_a_model_error_and_leaves_no_file(hub: FileServer, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="404"):
        resolve_model("absent", cache_dir=tmp_path, hub_url=hub.url, catalog={"absent": "0" * 40})
    assert list(tmp_path.iterdir()) == []
    assert hub.requests == ["/models/ggml-absent.bin"]


def test_unreachable_hub_is_a_model_error(tmp_path: Path) -> None:
    with FileServer({}) as stopped:
        url = stopped.url
    with pytest.raises(ModelError):
        resolve_model("x", cache_dir=tmp_path, hub_url=url, catalog={"x": PAYLOAD_SHA1})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncated", "random", "tiny"])
def test_a_damaged_model_file_is_a_model_error_not_a_crash(tmp_path: Path, damage: str) -> None:
    bad = tmp_path / "ggml-bad.bin"
    if damage == "truncated":
        with MODEL.open("rb") as source:
            bad.write_bytes(source.read(4_000_000))
    elif damage == "random":
        bad.write_bytes(np.random.default_rng(1).bytes(1_000_000))
    else:
        bad.write_bytes(b"not ggml")
    with pytest.raises(ModelError, match=r"is not a whisper\.cpp model that loads"):
        resolve_model(bad, cache_dir=tmp_path / "cache")


def test_a_model_that_passed_the_check_is_not_probed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "ggml-copy.bin"
    model.symlink_to(MODEL)
    resolve_model(model, cache_dir=tmp_path / "cache")
    stamps = list((tmp_path / "cache" / "verified").iterdir())
    assert len(stamps) == 1
    with monkeypatch.context() as patched:

        def no_probe(*args: object, **kwargs: object) -> None:
            raise AssertionError("probed again")

        patched.setattr("orac_node.decode.modelfiles.subprocess.run", no_probe)
        assert resolve_model(model, cache_dir=tmp_path / "cache") == model
    # Swapping in a damaged file under the same name changes size and mtime: probed again.
    model.unlink()
    model.write_bytes(b"not ggml at all")
    with pytest.raises(ModelError):
        resolve_model(model, cache_dir=tmp_path / "cache")


def test_a_model_downloaded_by_name_is_recorded_in_the_store(
    hub: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``orac-node run`` does with a model name: download, then a store record."""
    monkeypatch.setitem(KNOWN_MODELS, "test-tiny", PAYLOAD_SHA1)
    cache = tmp_path / "models"
    config = NodeConfig.model_validate(
        {"model": {"name": "test-tiny", "cache_dir": str(cache), "hub_url": hub.url}}
    )
    path = model_path(config)
    record = ModelStore(cache).get("test-tiny")
    assert (record.file, record.size) == (str(path), len(PAYLOAD))
    assert record.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    assert record.source == f"download:{hub.url}/ggml-test-tiny.bin"
    assert (record.kind, record.multilingual) == ("tiny", False)
    assert model_path(config) == path and hub.requests == ["/models/ggml-test-tiny.bin"]
