"""The deployment files in mosquitto/ and systemd/ work with the real programs."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from orac_node.broker import find_mosquitto, free_port, port_in_use
from orac_node.client import connect
from tests.conftest import ROOT


def _start(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([find_mosquitto(), "-c", str(config)], stderr=subprocess.DEVNULL)


async def _wait_port(port: int) -> None:
    async with asyncio.timeout(10):
        while not port_in_use(port):
            await asyncio.sleep(0.05)


async def test_broker_config_keeps_retained_status_across_a_restart(tmp_path: Path) -> None:
    port = free_port()
    text = (ROOT / "mosquitto" / "orac-node.conf").read_text()
    assert "listener 1883 0.0.0.0" in text and "persistence_location /var/lib/mosquitto/" in text
    text = text.replace("listener 1883 0.0.0.0", f"listener {port} 127.0.0.1")
    text = text.replace(
        "persistence_location /var/lib/mosquitto/", f"persistence_location {tmp_path}/"
    )
    if os.geteuid() == 0:
        text += "\nuser root\n"  # else it drops to user mosquitto, who cannot write tmp_path
    config = tmp_path / "orac-node.conf"
    config.write_text(text)
    broker = _start(config)
    try:
        await _wait_port(port)
        async with connect(f"mqtt://127.0.0.1:{port}") as mqtt:
            await mqtt.publish("orac/node/t/status", b'{"state": "ready"}', qos=1, retain=True)
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait(timeout=10)
    broker = _start(config)
    try:
        await _wait_port(port)
        async with connect(f"mqtt://127.0.0.1:{port}") as mqtt:
            await mqtt.subscribe("orac/node/t/status", qos=1)
            async with asyncio.timeout(5):
                message = await anext(aiter(mqtt.messages))
        assert message.payload == b'{"state": "ready"}'
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait(timeout=10)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    venv_bin = Path(sys.executable).parent / "orac-node"  # the installed entry point
    unit = (ROOT / "systemd" / "orac-node.service").read_text()
    assert "ExecStart=/opt/orac-node/.venv/bin/orac-node run" in unit
    local = tmp_path / "orac-node.service"
    local.write_text(unit.replace("/opt/orac-node/.venv/bin/orac-node", str(venv_bin)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "orac-node.service" not in done.stderr, done.stderr  # no warnings about our unit
