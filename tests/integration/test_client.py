"""The client SDK against a real node: streaming, requests, context, and the examples.

One node serves the module with a device limit of one open session, so that a
second concurrent stream of a device is refused for real (``too_many_sessions``).
Every example script in docs/examples runs as a subprocess, as a reader would
run it, and must print what its docstring promises.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from orac_node.client import Client, RequestError, StreamError, SyncClient
from orac_node.wire import Final, Partial
from tests.conftest import AUDIO, ROOT
from tests.integration.conftest import load
from tests.integration.harness import RunningNode

NODE_CONFIG: dict[str, object] = {"ingest": {"device_max_sessions": 1}}

COMMANDS = AUDIO / "commands"
KITCHEN = COMMANDS / "utt000.wav"  # "turn on the kitchen lights"
WEATHER = COMMANDS / "utt001.wav"  # "what is the weather going to be like tomorrow morning"
TIMER = COMMANDS / "utt002.wav"  # "set a timer for ten minutes"
WHAT_TIME = COMMANDS / "utt005.wav"  # "what time is it"
TELEVISION = COMMANDS / "utt006.wav"  # "switch off the television"
VOCABULARY = (
    "Turn on the kitchen lights. Set the thermostat. Open the curtains in the lounge."
    " Play the radio."
)
"""With it as the prompt, tiny.en hears utt006 right; without, "Switch off from the
television." (measured in tests/integration/test_core.py)."""
EXAMPLES = ROOT / "docs" / "examples"


async def test_stream_a_file_gives_partials_then_the_final_and_retranscribes(
    node: RunningNode, device: str
) -> None:
    async with Client(node.url, device=device, topics=["general"]) as c:
        got = [t async for t in c.stream(WEATHER)]  # at recording speed
        *partials, final = got
        assert isinstance(final, Final)
        again = await c.retranscribe(final, prompt=VOCABULARY)
        with pytest.raises(RequestError) as unknown:
            await c.retranscribe(device, "never-streamed", node=node.node_id)
        description = await c.describe(node.node_id)
    assert partials and all(isinstance(p, Partial) for p in partials)
    seqs = [p.seq for p in partials if isinstance(p, Partial)]
    assert {t.session for t in got} == {final.session}
    assert {t.device for t in got} == {device}
    assert seqs == sorted(set(seqs))  # in order, no repeats
    text = final.text.lower()
    assert "weather" in text and "tomorrow" in text, final.text
    assert final.node == node.node_id and final.topic == "general"
    assert (again.session, again.node, again.prompt) == (final.session, node.node_id, VOCABULARY)
    assert "weather" in again.text.lower()
    assert unknown.value.code == "not_found"
    assert description["node"] == node.node_id and description["model"] == "tiny.en"


async def test_transcribe_a_file_or_samples_and_the_feed_sees_the_final(
    node: RunningNode,
) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    async with Client(node.url) as c, c.transcripts(topic) as feed:
        from_file = await c.transcribe(KITCHEN, topic=topic)
        async with asyncio.timeout(10):
            published = await anext(aiter(feed))
        from_samples = await c.transcribe(load(TIMER), publish=False)
        with pytest.raises(RequestError) as unknown:
            await c.transcribe(KITCHEN, model="large-v9")
    assert "kitchen lights" in from_file.text.lower()
    assert from_file.topic == topic and from_file.device == "request"
    assert isinstance(published, Final)
    assert (published.session, published.text) == (from_file.session, from_file.text)
    assert "timer" in from_samples.text.lower()
    assert unknown.value.code == "unknown_model"


async def test_context_prompts_the_devices_next_stream(node: RunningNode, device: str) -> None:
    samples = load(TELEVISION)
    async with Client(node.url, device=device) as c:
        await c.set_context(VOCABULARY, device=device, ttl_s=30)
        await asyncio.sleep(0.3)  # the node reads it from its subscription
        with_context = [t async for t in c.stream(samples, realtime=False)][-1]
        await c.clear_context(device=device)
        await asyncio.sleep(0.3)
        cleared = [t async for t in c.stream(samples, realtime=False)][-1]
    assert isinstance(with_context, Final) and isinstance(cleared, Final)
    assert with_context.text == "Switch off the television."
    assert cleared.text == "Switch off from the television."


async def test_stream_from_a_live_source_ends_at_the_nodes_endpoint(
    node: RunningNode, device: str
) -> None:
    speech = (load(WHAT_TIME) * 32767).astype("<i2").tobytes()
    blocks_read = 0

    async def microphone() -> AsyncIterator[bytes]:
        """Speech, then silence for as long as anyone listens: a live microphone."""
        nonlocal blocks_read
        block = 1600  # 50 ms
        for i in range(10_000):
            blocks_read += 1
            start = i * block
            piece = speech[start : start + block]
            yield piece + b"\x00" * (block - len(piece))
            await asyncio.sleep(0.05)

    async with Client(node.url, device=device) as c:
        got = [t async for t in c.stream(microphone())]
    final = got[-1]
    assert isinstance(final, Final)
    assert "what time is it" in final.text.lower()
    assert final.endpoint == "silence"  # the node ended it; the source never ran out
    assert blocks_read * 0.05 < len(speech) / 32000 + 3  # and reading stopped soon after


async def test_a_session_over_the_device_limit_raises_stream_error(
    node: RunningNode, device: str
) -> None:
    async def collect(transcripts: AsyncIterator[Partial | Final]) -> list[Partial | Final]:
        return [t async for t in transcripts]

    async with Client(node.url, device=device) as c:
        first = asyncio.create_task(collect(c.stream(WEATHER)))
        await asyncio.sleep(0.5)  # the first session is open by now
        with pytest.raises(StreamError) as refused:
            async for _ in c.stream(KITCHEN):
                pass
        got = await first  # the first stream goes on undisturbed, on the same connection
    assert refused.value.code == "too_many_sessions"
    assert refused.value.report.device == device
    assert isinstance(got[-1], Final) and "weather" in got[-1].text.lower()
    assert got[-1].session != refused.value.report.session


def test_sync_client_streams_and_transcribes(node: RunningNode, device: str) -> None:
    pcm = (load(KITCHEN) * 32767).astype("<i2").tobytes()

    def sound_card() -> Iterator[bytes]:
        """Blocking reads of 50 ms, as a sound card API hands them out."""
        for start in range(0, len(pcm), 1600):
            time.sleep(0.01)
            yield pcm[start : start + 1600]

    with SyncClient(node.url, device=device) as c:
        from_file = list(c.stream(KITCHEN, realtime=False))
        live = list(c.stream(sound_card()))
        result = c.transcribe(load(TIMER), publish=False)
    for got in (from_file, live):
        assert isinstance(got[-1], Final) and "kitchen lights" in got[-1].text.lower()
    assert "timer" in result.text.lower()


def run_example(name: str, *args: str, timeout: float = 60) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_examples_transcribe_file_and_sync_script(node: RunningNode) -> None:
    out = run_example("transcribe_file.py", "--broker", node.url, str(KITCHEN), str(TIMER))
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("utt000.wav: ") and "kitchen lights" in lines[0].lower()
    assert "[confidence 0." in lines[0]
    assert lines[1].startswith("utt002.wav: ") and "timer" in lines[1].lower()
    env_url = {**os.environ, "ORAC_BROKER": node.url}
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "sync_script.py"), str(WHAT_TIME)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**env_url, "PYTHONPATH": str(ROOT)},
    ).stdout
    first, second = out.splitlines()
    assert first == f"node {node.node_id}: model tiny.en, models tiny.en"
    assert second.startswith("utt005.wav: ") and "what time is it" in second.lower()


def test_examples_satellite_stream_and_microphone(node: RunningNode, device: str) -> None:
    out = run_example("satellite_stream.py", "--broker", node.url, "--device", device, str(WEATHER))
    *partials, final = out.splitlines()
    assert partials and all(line.startswith("partial: ") for line in partials)
    assert final.startswith("final: ") and "weather" in final.lower()
    player = f"ffmpeg -loglevel error -re -i {WHAT_TIME} -f s16le -ac 1 -ar 16000 -"
    out = run_example(
        "microphone.py", "--broker", node.url, "--device", device, "--command", player
    )
    assert out.splitlines()[-1].lower().startswith("final: what time is it")


def test_example_core_retry(node: RunningNode, device: str) -> None:
    core = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "core_retry.py"),
            "--broker",
            node.url,
            "--count",
            "1",
            "--min-confidence",
            "1.01",  # retry every final
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert core.stdout is not None
        assert core.stdout.readline() == "listening\n"
        with SyncClient(node.url, device=device) as c:
            list(c.stream(TELEVISION, realtime=False))
        out, err = core.communicate(timeout=30)
    finally:
        if core.poll() is None:
            core.kill()
            core.wait()
    assert core.returncode == 0, err
    heard, retried = out.splitlines()
    assert heard.startswith(f"{device}: ") and "television" in heard.lower()
    assert retried.startswith("  retried: Switch off the television.")
    # and it left the vocabulary as the device's context
    with SyncClient(node.url, device=device) as c:
        again = list(c.stream(TELEVISION, realtime=False))[-1]
        c.clear_context(device=device)
    assert isinstance(again, Final) and again.text == "Switch off the television."
