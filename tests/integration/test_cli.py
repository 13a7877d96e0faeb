"""The command line as people use it: transcribe, send, listen, mosquitto_sub, demo."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orac_node.ops.localbroker import LocalBroker
from tests.conftest import AUDIO, MODEL
from tests.integration.harness import RunningNode

COMMAND = AUDIO / "commands" / "utt002.wav"  # "set a timer for ten minutes"
JFK = AUDIO / "speech" / "jfk.wav"
CLI = [sys.executable, "-m", "orac_node.cli"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ORAC_NODE_")}


def test_transcribe_prints_text_and_json() -> None:
    plain = subprocess.run(
        [*CLI, "transcribe", "--model", str(MODEL), str(COMMAND)],
        capture_output=True,
        text=True,
        check=True,
        env=_env(),
        timeout=60,
    )
    assert "timer" in plain.stdout.lower()
    as_json = subprocess.run(
        [*CLI, "transcribe", "--model", str(MODEL), "--json", str(COMMAND), str(JFK)],
        capture_output=True,
        text=True,
        check=True,
        env=_env(),
        timeout=60,
    )
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(COMMAND), str(JFK)]
    assert 0 < lines[0]["confidence"] < 1
    assert lines[1]["words"][0]["word"] == "And"


def test_transcribe_with_a_prompt_as_core_context_would_give() -> None:
    vocabulary = "Turn on the kitchen lights. Set the thermostat. Play the radio."
    television = AUDIO / "commands" / "utt006.wav"  # "switch off the television"
    runs = [
        subprocess.run(
            [*CLI, "transcribe", "--model", str(MODEL), *extra, str(television)],
            capture_output=True,
            text=True,
            check=True,
            env=_env(),
            timeout=60,
        ).stdout.strip()
        for extra in ([], ["--prompt", vocabulary])
    ]
    assert runs == ["Switch off from the television.", "Switch off the television."]


def test_transcribe_reports_a_missing_model_clearly() -> None:
    done = subprocess.run(
        [*CLI, "transcribe", "--model", "/nonexistent/model.bin", str(COMMAND)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "neither a model file nor a known model name" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_refuses_a_damaged_model_with_a_message(broker: LocalBroker, tmp_path: Path) -> None:
    damaged = tmp_path / "ggml-damaged.bin"
    with MODEL.open("rb") as source:
        damaged.write_bytes(source.read(1_000_000))
    done = subprocess.run(
        [*CLI, "run", "--broker", broker.url, "--model", str(damaged)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "is not a whisper.cpp model that loads" in done.stderr


def test_send_streams_a_file_and_prints_the_final(node: RunningNode) -> None:
    done = subprocess.run(
        [*CLI, "send", "cli-kitchen", str(COMMAND), "--broker", node.url, "--realtime", "--json"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "partial" in done.stdout
    assert "FINAL" in done.stdout
    final = json.loads(done.stdout[done.stdout.index("{") :])
    assert final["device"] == "cli-kitchen"
    assert "timer" in final["text"].lower()


def test_send_raw_streams_plain_pcm_and_prints_its_utterances(node: RunningNode) -> None:
    done = subprocess.run(
        [*CLI, "send", "cli-raw", str(COMMAND), "--broker", node.url, "--raw", "--realtime"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("partial  cli-raw/raw-cli-raw-") for line in lines)
    finals = [line for line in lines if line.startswith("FINAL")]
    assert len(finals) == 1
    assert "timer" in finals[0].lower()


def test_listen_and_mosquitto_sub_show_readable_transcripts(node: RunningNode) -> None:
    port = node.url.rsplit(":", 1)[1]
    listen = subprocess.Popen(
        [*CLI, "listen", "--broker", node.url], stdout=subprocess.PIPE, text=True, env=_env()
    )
    mosquitto_sub = shutil.which("mosquitto_sub")
    assert mosquitto_sub, "mosquitto-clients is installed by the bootstrap"
    sub = subprocess.Popen(
        [mosquitto_sub, "-p", port, "-t", "transcript/#", "-v", "-C", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)  # both subscribed
    subprocess.run(
        [*CLI, "send", "cli-lounge", str(COMMAND), "--broker", node.url],
        check=True,
        capture_output=True,
        env=_env(),
        timeout=60,
    )
    sub_out, _ = sub.communicate(timeout=10)
    time.sleep(0.5)
    listen.send_signal(signal.SIGINT)
    listen_out, _ = listen.communicate(timeout=10)
    topic, payload = sub_out.strip().split(" ", 1)
    assert topic == "transcript/general"
    message = json.loads(payload)  # plain JSON a person can read
    assert message["device"] == "cli-lounge" and message["type"] in {"partial", "final"}
    assert "FINAL    cli-lounge/" in listen_out and "timer" in listen_out.lower()


@pytest.mark.slow
def test_demo_runs_the_whole_product(broker: LocalBroker) -> None:
    """The README's first command, minus the setup: broker + node + streamed sample."""
    del broker  # the demo starts its own mosquitto (1883 is taken here: it picks a free port)
    done = subprocess.run(
        [*CLI, "demo", "--model", str(MODEL), "--audio", str(COMMAND)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "node ready" in done.stdout
    assert "partial" in done.stdout
    final_line = next(line for line in done.stdout.splitlines() if "FINAL" in line)
    assert "timer" in final_line.lower()
