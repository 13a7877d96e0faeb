"""What a real node logs at DEBUG in JSON: session ids as keys, no password, no audio.

One node for the module, logging as verbosely as it can (``level: DEBUG``,
``format: json``), connected with a username and password to a broker that
checks them. Tests then send it real speech and payloads full of a canary
byte pattern (valid chunks, raw PCM, whole files, and broken versions of each,
since error paths are where payloads tend to be quoted) and grep its log.
"""

from __future__ import annotations

import base64
import json
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from orac_node.ops.localbroker import LocalBroker
from orac_node.wire import AudioChunk, AudioFormat, AudioKind, audio_topic
from tests.conftest import AUDIO, MODEL
from tests.integration.conftest import load
from tests.integration.harness import RunningNode, harness, start_node

USERNAME = "orac"
PASSWORD = f"pw-{uuid.uuid4().hex}"
CANARY = b"AUDIO-CANARY-7f3e9a"
"""19 bytes no log line has any business containing; an odd length, so its repeats
straddle every sample boundary and base64 alignment."""


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A real Mosquitto that checks passwords (anonymous clients stay allowed for the tests)."""
    passwd = shutil.which("mosquitto_passwd") or shutil.which("mosquitto_passwd", path="/usr/bin")
    if passwd is None:
        pytest.skip("needs mosquitto_passwd")
    workdir = tmp_path_factory.mktemp("secure-broker")
    password_file = workdir / "passwd"
    subprocess.run([passwd, "-b", "-c", str(password_file), USERNAME, PASSWORD], check=True)
    password_file.chmod(0o600)
    with LocalBroker(workdir, extra_config=f"password_file {password_file}\n") as running:
        yield running


@pytest.fixture(scope="module")
def chatty_node(
    secure_broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningNode]:
    config = {
        "broker": {"username": USERNAME, "password": PASSWORD},
        "logging": {"level": "DEBUG", "format": "json"},
    }
    workdir = tmp_path_factory.mktemp("chatty-node")
    running = start_node(secure_broker.url, workdir, MODEL, "test-logging", config)
    # Ready means connected: the broker refuses a wrong password, and says whose it was.
    assert f"u'{USERNAME}'" in secure_broker.log_path.read_text()
    yield running
    code = running.stop(signal.SIGTERM)
    assert code == 0, f"node exited with {code}:\n{running.log()}"


NATIVE_PREFIXES = ("whisper_", "ggml_")
"""whisper.cpp writes a few lines of its own straight to fd 2 (e.g. "whisper_full_with_state:
failed to encode" for a window too short to encode); they are not log records."""


def _json_records(log: str) -> list[dict[str, Any]]:
    """Every log record; fails on any other line but whisper.cpp's own."""
    records = []
    for line in log.splitlines():
        if line.startswith(NATIVE_PREFIXES):
            continue
        record = json.loads(line)
        assert isinstance(record, dict), line
        records.append(record)
    return records


async def test_json_records_carry_the_session(chatty_node: RunningNode) -> None:
    device = f"dev-{uuid.uuid4().hex[:8]}"
    async with harness(chatty_node.url) as h:
        result = await h.session(device, load(AUDIO / "commands" / "utt000.wav"))
    assert result.final is not None and "kitchen" in result.final.text.lower()
    records = _json_records(chatty_node.log())
    assert {"ts", "level", "logger", "message"} <= set(records[0])
    ours = [r for r in records if r.get("session") == result.session]
    assert ours, "no record carries the session id"
    assert all(r["device"] == device for r in ours)
    messages = " | ".join(r["message"] for r in ours)
    assert "opened" in messages and "final" in messages


async def test_audio_never_reaches_the_log(chatty_node: RunningNode) -> None:
    device = f"dev-{uuid.uuid4().hex[:8]}"
    pcm = CANARY * 64  # 1088 bytes: whole s16le samples
    session = uuid.uuid4().hex[:16]
    chunk = AudioChunk(session, 0, 16000, 1, AudioFormat.S16LE, pcm, end=True).encode()
    sent = {
        audio_topic(device, AudioKind.CHUNK): [chunk, b"\xc1" + pcm, chunk[:-7]],
        audio_topic(device, AudioKind.RAW): [pcm, pcm + b"\x00"],  # the second is odd-sized
        audio_topic(device, AudioKind.FILE): [pcm, b"RIFF" + pcm],
    }
    async with harness(chatty_node.url) as h:
        for topic, payloads in sent.items():
            for payload in payloads:
                await h.mqtt.publish(topic, payload, qos=1)
        await h.wait_final(session, timeout=30)  # the valid chunk: no speech, a final all the same
        # The five broken ones are each refused (the raw one is just quiet audio).
        await h.wait_errors(device, 5, timeout=30)
    log = chatty_node.log()
    assert "opened" in log and device in log  # the node did log about these messages
    for i in range(3):  # base64 of the payload contains one of three alignments
        assert base64.b64encode(pcm[i : i + 51]).decode() not in log
    # As text or inside a bytes repr, as hex, as a list of byte values.
    for form in (CANARY.decode(), CANARY.hex(), str(list(CANARY[:8]))[1:-1]):
        assert form not in log, form


def test_the_password_never_reaches_the_log(chatty_node: RunningNode) -> None:
    log = chatty_node.log()
    # The connection made with the password is logged (while the model loads, when
    # pywhispercpp points fd 2 at /dev/null: the log has its own fd).
    assert "connected to" in log
    assert PASSWORD not in log
