"""Fixtures that run the real node (``python -m orac_node.cli run``) per test module.

A module may set ``NODE_CONFIG`` (a dict in config.yaml shape) to run its node
with other settings; every module gets its own node process and node id.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from orac_node.audio import Samples, load_audio_file
from orac_node.ops.localbroker import LocalBroker
from tests.conftest import AUDIO, MODEL
from tests.integration.harness import RunningNode, start_node
from tests.integration.secure_broker import Certificates


@pytest.fixture(scope="module")
def node(
    broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[RunningNode]:
    config = getattr(request.module, "NODE_CONFIG", {})
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    node_id = f"test-{module.replace('_', '-')}"
    running = start_node(broker.url, tmp_path_factory.mktemp("node"), MODEL, node_id, config)
    yield running
    code = running.stop(signal.SIGTERM)
    assert code == 0, f"node exited with {code}:\n{running.log()}"


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A test CA with server (127.0.0.1) and client certificates, fresh per session."""
    return Certificates.create(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def device() -> str:
    """A device name no other test uses."""
    return f"dev-{uuid.uuid4().hex[:8]}"


def load_refs(folder: str) -> list[tuple[Path, str]]:
    """(wav path, reference text) for every line of a shared refs.tsv."""
    base = AUDIO / folder
    rows = [line.split("\t", 1) for line in (base / "refs.tsv").read_text().splitlines() if line]
    return [(base / name, text) for name, text in rows]


def load(path: Path) -> Samples:
    return load_audio_file(path)
