"""The node survives its broker restarting: it reconnects, resubscribes and serves."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from orac_node.ops.localbroker import LocalBroker
from tests.conftest import AUDIO, MODEL
from tests.integration.conftest import load
from tests.integration.harness import harness, start_node


async def test_broker_restart(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path / "broker").start()
    node = await asyncio.to_thread(start_node, broker.url, tmp_path / "node", MODEL, "restarts", {})
    try:
        broker.stop()
        await asyncio.sleep(1.0)  # the node notices and backs off
        broker = LocalBroker(tmp_path / "broker", port=broker.port).start()
        async with harness(broker.url) as h:
            async with asyncio.timeout(20):  # reconnect_max_s is 15 s
                while not any(s.state == "ready" for s in h.statuses):
                    await asyncio.sleep(0.1)  # the node republishes its status on connect
            result = await h.session("after-restart", load(AUDIO / "commands" / "utt019.wav"))
        assert result.final is not None and result.final.text
        assert "reconnecting in" in node.log()
    finally:
        assert await asyncio.to_thread(node.stop, signal.SIGTERM) == 0
        broker.stop()
