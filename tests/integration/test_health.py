"""``orac-node health`` against a real broker and a running node: output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from orac_node.ops.localbroker import free_port
from tests.integration.harness import RunningNode


def _health(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orac_node.cli", "health", "--broker", url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("ORAC_NODE_")},
    )


def test_a_ready_node_is_healthy(node: RunningNode) -> None:
    done = _health(node.url, "--json", "--node", node.node_id)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    mine = next(n for n in report["nodes"] if n["node"] == node.node_id)
    assert mine["state"] == "ready" and mine["model"] == "tiny.en"
    assert report["healthy"] is True and report["missing"] == []
    text = _health(node.url)
    assert text.returncode == 0 and node.node_id in text.stdout and "ready" in text.stdout


def test_a_missing_node_is_unhealthy(node: RunningNode) -> None:
    done = _health(node.url, "--json", "--node", "no-such-node")
    assert done.returncode == 1, done.stdout + done.stderr
    assert json.loads(done.stdout)["missing"] == ["no-such-node"]


def test_an_unreachable_broker_is_exit_code_2() -> None:
    done = _health(f"mqtt://127.0.0.1:{free_port()}")
    assert done.returncode == 2
    assert "orac-node health:" in done.stderr
