"""Driving a real node over a real broker from tests: sessions in, transcripts out."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import yaml

from orac_node.audio import Samples
from orac_node.client import Satellite, connect, wait_for_state
from orac_node.wire import (
    TRANSCRIPT_FILTER,
    ErrorReport,
    Final,
    NodeStatus,
    Partial,
    decode_transcript,
    status_topic,
)

READY_TIMEOUT_S = 60.0


@dataclass
class RunningNode:
    """An ``orac-node run`` process started by a test."""

    url: str
    node_id: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def start_node(
    url: str,
    workdir: Path,
    model: Path,
    node_id: str,
    config: dict[str, Any],
    *,
    env: dict[str, str] | None = None,
    watch_url: str | None = None,
) -> RunningNode:
    """Start the real entry point as a subprocess and wait for its ``ready`` status.

    ``env`` adds variables to the child's environment (e.g. ``NOTIFY_SOCKET``).
    ``watch_url`` is where the test reads the status when ``url`` does not do
    for it (the node's TLS listener, credentials in its config file).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config = dict(config)
    for state in ("spool", "webhooks"):  # state of its own per node, not in ~/.local/state
        config[state] = {"dir": str(workdir / state), **config.get(state, {})}
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = workdir / "node.log"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("ORAC_NODE_")}
    child_env.update(env or {})
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orac_node.cli",
                "run",
                "--config",
                str(config_path),
                "--broker",
                url,
                "--model",
                str(model),
                "--node-id",
                node_id,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env,
        )
    node = RunningNode(url, node_id, process, log_path)
    try:
        asyncio.run(_wait_ready(watch_url or url, node_id, process))
    except BaseException:
        node.stop(signal.SIGKILL)
        raise RuntimeError(f"node did not become ready:\n{node.log()}") from None
    return node


async def _wait_ready(url: str, node_id: str, process: subprocess.Popen[bytes]) -> None:
    async with connect(url) as mqtt:
        waiter = asyncio.create_task(wait_for_state(mqtt, node_id, "ready"))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not waiter.done():
            if process.poll() is not None or time.monotonic() > deadline:
                waiter.cancel()
                raise RuntimeError("node exited or timed out")
            await asyncio.sleep(0.05)
        waiter.result()


@dataclass
class SessionResult:
    """Everything published for one session."""

    session: str
    partials: list[Partial] = field(default_factory=list)
    final: Final | None = None
    partial_times: list[float] = field(default_factory=list)
    final_time: float = 0.0
    audio_done_time: float = 0.0


class Harness:
    """One MQTT connection that streams sessions and collects what the node publishes."""

    def __init__(self, mqtt: aiomqtt.Client) -> None:
        self.mqtt = mqtt
        self.results: dict[str, SessionResult] = {}
        self.errors: dict[str, list[ErrorReport]] = defaultdict(list)
        self.statuses: list[NodeStatus] = []
        self.other: list[aiomqtt.Message] = []
        self._final_seen: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._error_seen = asyncio.Condition()

    async def _dispatch(self) -> None:
        async for message in self.mqtt.messages:
            payload = message.payload
            assert isinstance(payload, bytes)
            now = time.monotonic()
            if message.topic.matches("transcript/#"):
                t = decode_transcript(payload)
                result = self.results.setdefault(t.session, SessionResult(t.session))
                if isinstance(t, Partial):
                    result.partials.append(t)
                    result.partial_times.append(now)
                else:
                    assert result.final is None, f"second final for {t.session}"
                    result.final, result.final_time = t, now
                    self._final_seen[t.session].set()
            elif message.topic.matches("orac/device/#") and message.topic.value.endswith("/error"):
                # (a malformed device name may span levels: orac/device/kitchen/left/error)
                report = ErrorReport.decode(payload)
                self.errors[report.device].append(report)
                async with self._error_seen:
                    self._error_seen.notify_all()
            elif message.topic.matches("orac/node/+/status"):
                self.statuses.append(NodeStatus.decode(payload))
            else:
                self.other.append(message)

    async def session(
        self,
        device: str,
        samples: Samples,
        *,
        realtime: bool = False,
        chunk_ms: int = 20,
        topic: str | None = None,
        timeout: float = 60.0,
        stop_on_final: bool = False,
    ) -> SessionResult:
        """Stream one session as a satellite and wait for its final."""
        session = uuid.uuid4().hex[:16]
        result = self.results.setdefault(session, SessionResult(session))
        stop = self._final_seen[session] if stop_on_final else None
        await Satellite(self.mqtt, device).stream(
            samples,
            session=session,
            topic=topic,
            chunk_ms=chunk_ms,
            realtime=realtime,
            stop=stop,
        )
        result.audio_done_time = time.monotonic()
        await self.wait_final(session, timeout)
        return result

    async def wait_final(self, session: str, timeout: float = 60.0) -> Final:
        async with asyncio.timeout(timeout):
            await self._final_seen[session].wait()
        final = self.results[session].final
        assert final is not None
        return final

    async def wait_errors(
        self, device: str, count: int, timeout: float = 10.0
    ) -> list[ErrorReport]:
        async with asyncio.timeout(timeout), self._error_seen:
            await self._error_seen.wait_for(lambda: len(self.errors[device]) >= count)
        return self.errors[device]


@contextlib.asynccontextmanager
async def harness(url: str) -> AsyncIterator[Harness]:
    """A connected :class:`Harness` subscribed to transcripts, errors and statuses."""
    async with connect(url) as mqtt:
        h = Harness(mqtt)
        for topic in (TRANSCRIPT_FILTER, "orac/device/#", status_topic("+")):
            await mqtt.subscribe(topic, qos=1)
        task = asyncio.create_task(h._dispatch())
        try:
            yield h
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def final_of(mqtt: aiomqtt.Client, session: str, timeout: float = 60.0) -> Final:
    """The final of ``session``, from a client already subscribed to its transcripts."""
    async with asyncio.timeout(timeout):
        async for message in mqtt.messages:
            assert isinstance(message.payload, bytes)
            transcript = decode_transcript(message.payload)
            if isinstance(transcript, Final) and transcript.session == session:
                return transcript
    raise AssertionError("unreachable: the message iterator does not end")
