"""Session-wide fixtures: where the shared model and audio are, and a real broker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orac_node.ops.localbroker import LocalBroker

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ORAC_NODE_SHARED", ROOT.parent / "shared"))
MODEL = SHARED / "models" / "ggml-tiny.en.bin"
AUDIO = SHARED / "audio"


def pytest_configure(config: pytest.Config) -> None:
    if not MODEL.is_file():
        raise pytest.UsageError(
            f"test model not found at {MODEL}: set ORAC_NODE_SHARED to the shared/ folder"
        )


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A real Mosquitto on a free loopback port for the whole test session."""
    with LocalBroker(tmp_path_factory.mktemp("mosquitto")) as running:
        yield running
