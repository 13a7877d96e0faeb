"""The node's own bookkeeping, without a broker: what it does with the tasks it runs."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from orac_node.config import NodeConfig
from orac_node.ingest.spool import Spool
from orac_node.node import Node
from orac_node.wire import SAMPLE_RATE, AudioChunk, AudioFormat


def _node(tmp_path: Path, extra: dict[str, Any] | None = None) -> Node:
    config = NodeConfig.model_validate(
        {
            "node": {"id": "unit-node"},
            "spool": {"dir": str(tmp_path / "spool")},
            "webhooks": {"dir": str(tmp_path / "webhooks")},
            **(extra or {}),
        }
    )
    return Node(config, model_name="tiny.en", load_engines=list)


async def test_a_spawned_task_that_fails_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node = _node(tmp_path)

    async def broken() -> None:
        raise RuntimeError("publish refused")

    async def fine() -> None:
        await asyncio.sleep(0)

    node._spawn(broken(), "final-s1")
    node._spawn(fine(), "final-s2")
    await asyncio.sleep(0.05)
    assert "task final-s1 failed" in caplog.text
    assert "publish refused" in caplog.text
    assert "final-s2" not in caplog.text
    assert not node._tasks  # both are done and forgotten
    await node.webhooks.close()


async def test_a_spooled_session_refused_on_replay_is_dropped_from_the_spool(
    tmp_path: Path,
) -> None:
    """Its topic was disabled while the node was down: refused, so not replayed ever again."""
    left = Spool(tmp_path / "spool", max_bytes=1 << 20, finished_ttl_s=3600)
    left.finished()
    chunk = AudioChunk("s1", 0, SAMPLE_RATE, 1, AudioFormat.S16LE, b"\x00\x00" * 320, topic="attic")
    left.append("kitchen", "s1", "audio/kitchen/chunk", chunk.encode())
    ok = dataclasses.replace(chunk, session="s2", topic="general")
    left.append("kitchen", "s2", "audio/kitchen/chunk", ok.encode())
    config = {"registry": {"topics": {"attic": {"enabled": False}}}}
    node = _node(tmp_path, config)
    node._recover()
    assert node.spool is not None
    assert node.spool.open_sessions == 1  # s2 is open again; s1 is gone
    assert len(list((tmp_path / "spool").glob("*.spool"))) == 1
    assert [utt.key.session for utt in node.pipeline.intake.utterances.values()] == ["s2"]
    node.spool.close()
    again = Spool(tmp_path / "spool", max_bytes=1 << 20, finished_ttl_s=3600)
    again.finished()
    assert [s.session for s in again.recover()] == ["s2"]
