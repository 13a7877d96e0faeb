"""Running ``orac-node run`` as a child process, the way systemd would.

The demo and the benchmark both start a real node process (not an in-process
object), wait for its retained ``ready`` status and stop it with SIGTERM so it
drains; this module is that, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orac_node.client import connect, wait_for_state
from orac_node.errors import OracNodeError

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
"""SIGTERM drains for at most 20 s (node.DRAIN_TIMEOUT_S), then SIGKILL."""


class NodeStartError(OracNodeError):
    """The node process exited or timed out before reporting ``ready``."""

    def __init__(self, log: str) -> None:
        super().__init__(f"the node did not become ready; its log:\n{log}")
        self.log = log


@dataclass
class NodeProcess:
    """A running node and how long it took to report ``ready``."""

    process: asyncio.subprocess.Process
    node_id: str
    time_to_ready_s: float
    log_path: Path

    async def stop(self) -> int:
        """SIGTERM (the node drains), SIGKILL after the timeout; the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        return self.process.returncode or 0


async def start_node(
    url: str, model: Path, workdir: Path, *, node_id: str, config: dict[str, Any] | None = None
) -> NodeProcess:
    """Start ``orac-node run`` against ``url`` and wait for its retained ``ready``."""
    config = dict(config or {})
    # each node process its own spool and webhook outbox, inside the caller's working folder
    for state in ("spool", "webhooks"):
        config[state] = {"dir": str(workdir / f"{node_id}-{state}"), **config.get(state, {})}
    config_path = workdir / f"{node_id}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = workdir / f"{node_id}.log"
    started = time.monotonic()
    with log_path.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "orac_node.cli",
            "run",
            "--broker",
            url,
            "--model",
            str(model),
            "--node-id",
            node_id,
            "--config",
            str(config_path),
            stdout=out,
            stderr=out,
        )
    async with connect(url) as mqtt:
        ready = asyncio.create_task(wait_for_state(mqtt, node_id, "ready"))
        died = asyncio.create_task(process.wait())
        done, _ = await asyncio.wait(
            (ready, died), timeout=READY_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        ready.cancel()
        died.cancel()
    if ready not in done:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise NodeStartError(await asyncio.to_thread(log_path.read_text, errors="replace"))
    return NodeProcess(process, node_id, time.monotonic() - started, log_path)
