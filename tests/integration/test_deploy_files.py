"""The deployment files in mosquitto/ and systemd/ work with the real programs."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orac_node.config import load_config
from orac_node.ops.localbroker import find_mosquitto
from tests.conftest import ROOT
from tests.integration.secure_broker import Certificates, SecureBroker


async def test_broker_config_keeps_retained_status_across_a_restart(
    tmp_path: Path, certificates: Certificates
) -> None:
    # The shipped config as secure_broker.py runs it (its own ports and paths),
    # stopped and started again on the same persistence folder.
    broker = SecureBroker(tmp_path, certificates, ["orac-node", "orac-core"])
    broker.start()
    try:
        async with broker.connect("orac-node", tls=False) as mqtt:
            await mqtt.publish("orac/node/t/status", b'{"state": "ready"}', qos=1, retain=True)
    finally:
        broker.stop()
    broker.start()
    try:
        async with broker.connect("orac-core") as mqtt:
            await mqtt.subscribe("orac/node/t/status", qos=1)
            async with asyncio.timeout(5):
                message = await anext(aiter(mqtt.messages))
        assert message.payload == b'{"state": "ready"}'
    finally:
        broker.stop()


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="needs systemd-analyze"
)
UNIT = ROOT / "systemd" / "orac-node.service"
BROKER_DROP_IN = ROOT / "systemd" / "mosquitto.service.d" / "orac-node.conf"
DISTRO_BROKER_UNIT = Path("/lib/systemd/system/mosquitto.service")


def _unit_dir(tmp_path: Path, *, drop_in: str | None = None) -> Path:
    """The node's unit and the broker's unit with our drop-in, as systemd would load them.

    `systemd-analyze verify` checks that ExecStart binaries exist, so the node's
    unit points at this venv's entry point instead of /opt/orac-node. The broker
    unit is the distribution's where installed, else a stand-in running the
    mosquitto the tests use; verify reads drop-ins from next to the unit file.
    """
    venv_bin = Path(sys.executable).parent / "orac-node"  # the installed entry point
    unit = UNIT.read_text()
    assert "ExecStart=/opt/orac-node/.venv/bin/orac-node run" in unit
    (tmp_path / "orac-node.service").write_text(
        unit.replace("/opt/orac-node/.venv/bin/orac-node", str(venv_bin))
    )
    if DISTRO_BROKER_UNIT.is_file():
        broker = DISTRO_BROKER_UNIT.read_text()
    else:
        broker = f"[Service]\nType=notify\nExecStart={find_mosquitto()} -c /etc/mosquitto.conf\n"
    (tmp_path / "mosquitto.service").write_text(broker)
    (tmp_path / "mosquitto.service.d").mkdir()
    conf = tmp_path / "mosquitto.service.d" / "orac-node.conf"
    conf.write_text(BROKER_DROP_IN.read_text() if drop_in is None else drop_in)
    return tmp_path


def _verify(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "orac-node.service", "mosquitto.service"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )


def test_unit_asks_for_readiness_watchdog_restarts_and_a_sandbox() -> None:
    settings = {line.strip() for line in UNIT.read_text().splitlines() if not line.startswith("#")}
    for wanted in (
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30s",
        "Restart=on-failure",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "StateDirectory=orac-node",
        "After=network-online.target mosquitto.service",
        "Wants=network-online.target mosquitto.service",
    ):
        assert wanted in settings, wanted
    drop_in = set(BROKER_DROP_IN.read_text().splitlines())
    assert {"Restart=on-failure", "Before=orac-node.service"} <= drop_in


def test_unit_environment_is_valid_node_config() -> None:
    """Every ORAC_NODE_* the unit sets is a setting the node accepts (else it cannot start)."""
    environ = dict(
        line.removeprefix("Environment=").split("=", 1)
        for line in UNIT.read_text().splitlines()
        if line.startswith("Environment=ORAC_NODE_")
    )
    assert "ORAC_NODE_SPOOL__DIR" in environ
    config = load_config(environ=environ)
    # everything the node writes is under the unit's StateDirectory (ProtectSystem=strict)
    state = Path("/var/lib/orac-node")
    assert config.spool.resolved_dir("n").is_relative_to(state)
    assert config.webhooks.resolved_dir("n").is_relative_to(state)


@needs_systemd_analyze
def test_systemd_units_verify(tmp_path: Path) -> None:
    done = _verify(_unit_dir(tmp_path))
    assert done.returncode == 0, done.stderr
    # No warnings about our files either (verify warns on stderr and still exits 0).
    assert "orac-node" not in done.stderr, done.stderr


@needs_systemd_analyze
def test_verify_reads_the_broker_drop_in(tmp_path: Path) -> None:
    """Guards the test above: a broken drop-in in that place is reported, so it is read."""
    broken = BROKER_DROP_IN.read_text() + "\nRestartSec=soon\n"
    done = _verify(_unit_dir(tmp_path, drop_in=broken))
    assert "orac-node.conf" in done.stderr, done.stderr
