"""The node's own bookkeeping, without a broker: what it does with the tasks it runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from orac_node.config import NodeConfig
from orac_node.node import Node


def _node(tmp_path: Path) -> Node:
    config = NodeConfig.model_validate(
        {
            "node": {"id": "unit-node"},
            "spool": {"dir": str(tmp_path / "spool")},
            "webhooks": {"dir": str(tmp_path / "webhooks")},
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
