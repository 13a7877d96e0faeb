"""The web console in a real browser: headless Chromium against a real node and broker.

Everything runs as a user would run it: Mosquitto from the shipped config and
ACL (TLS, passwords), the node logged in as ``orac-node``, ``orac-node
console`` as its own process logged in as ``console`` and serving https:// with
a login, and Debian's Chromium driven by Playwright. Each state the page reaches
is saved as a screenshot under build/screenshots/ for a reviewer to look at.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import os
import pty
import shutil
import signal
import subprocess
import sys
import time
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from ssl import create_default_context
from typing import Any

import aiohttp
import numpy as np
import pytest
import yaml
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from orac_node.audio import float_to_s16
from orac_node.bench.scoring import wer
from orac_node.client import Satellite, connect
from orac_node.config import load_config
from orac_node.console import ConsoleServer
from orac_node.ops.localbroker import LocalBroker, free_port
from orac_node.wire import (
    SAMPLE_RATE,
    TRANSCRIPT_FILTER,
    NodeStatus,
    status_topic,
)
from tests.conftest import AUDIO, MODEL, ROOT
from tests.integration.conftest import load
from tests.integration.harness import RunningNode, final_of, start_node
from tests.integration.secure_broker import MONITOR, Certificates, SecureBroker

NODE_ID = "test-console"
SATELLITE = "porch"
HTTP_PASSWORD = "open sesame"
SCREENSHOTS = Path(os.environ.get("ORAC_NODE_SCREENSHOTS", ROOT / "build" / "screenshots"))
SAID_BY_SATELLITE = (AUDIO / "commands" / "utt000.wav", "turn on the kitchen lights")
SAID_INTO_MICROPHONE = (AUDIO / "speech" / "ps_goforward.wav", "go forward ten meters")
UI_TIMEOUT_MS = 60_000
"""How long the page may take to show what the node published: a final on this
shared 2-core machine takes well under a second, the rest is slack."""


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium is missing: python3 -m orac_node.bootstrap test installs it")
    return path


@pytest.fixture(scope="module")
def shipped(
    certificates: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureBroker]:
    broker = SecureBroker(
        tmp_path_factory.mktemp("console-broker"), certificates, ["orac-node", "console", SATELLITE]
    )
    yield broker.start()
    broker.stop()


@pytest.fixture(scope="module")
def node(
    shipped: SecureBroker, certificates: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningNode]:
    config = {
        "broker": {
            "username": "orac-node",
            "password": shipped.passwords["orac-node"],
            "ca_file": str(certificates.ca),
        }
    }
    running = start_node(
        f"mqtts://127.0.0.1:{shipped.tls_port}",
        tmp_path_factory.mktemp("console-node"),
        MODEL,
        NODE_ID,
        config,
        watch_url=shipped.url(MONITOR, tls=False),
    )
    yield running
    code = running.stop(signal.SIGTERM)
    assert code == 0, f"node exited with {code}:\n{running.log()}"


class RunningConsole:
    """``orac-node console`` as its own process, and the address it printed."""

    def __init__(self, process: subprocess.Popen[str], url: str, log: Path) -> None:
        self.process = process
        self.url = url
        self.log = log


@pytest.fixture(scope="module")
def console(
    shipped: SecureBroker,
    certificates: Certificates,
    node: RunningNode,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningConsole]:
    workdir = tmp_path_factory.mktemp("console")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    config = {
        "broker": {"url": f"mqtts://127.0.0.1:{shipped.tls_port}", "ca_file": str(certificates.ca)},
        "console": {
            "port": 0,
            "password": shipped.passwords["console"],
            "http_password": HTTP_PASSWORD,
            "tls_cert": str(certificates.server_cert),
            "tls_key": str(certificates.server_key),
        },
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    log = workdir / "console.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORAC_NODE_")}
    command = [sys.executable, "-m", "orac_node.cli", "console", "--config"]
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [*command, str(workdir / "config.yaml")],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
    assert process.stdout is not None
    line = process.stdout.readline()  # "orac-node console: open https://..."
    if "open " not in line:
        process.kill()
        pytest.fail(f"the console did not start: {line}\n{log.read_text()}")
    yield RunningConsole(process, line.rsplit("open ", 1)[1].strip(), log)
    process.stdout.close()
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the console did not stop on SIGINT:\n{log.read_text()}")


@contextlib.asynccontextmanager
async def _browser(*args: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=_chromium(), args=["--no-sandbox", *args]
        )
        try:
            yield browser
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def _page(browser: Browser, console: RunningConsole) -> AsyncIterator[tuple[Page, list[str]]]:
    """The console page, logged in; the errors its console logs (and uncaught ones)."""
    context = await browser.new_context(
        ignore_https_errors=True,  # the test CA's server certificate
        http_credentials={"username": "tester", "password": HTTP_PASSWORD},
        permissions=["microphone"],
        viewport={"width": 1280, "height": 900},
    )
    page = await context.new_page()
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(console.url)
    try:
        yield page, errors
    finally:
        await context.close()


async def _screenshot(page: Page, name: str) -> None:
    await page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


async def test_the_page_loads_without_errors_and_shows_the_node_ready(
    console: RunningConsole,
) -> None:
    async with _browser() as browser, _page(browser, console) as (page, errors):
        assert await page.evaluate("location.protocol") == "https:"
        state = page.locator(f'#nodes tr[data-node="{NODE_ID}"] .state')
        await state.filter(has_text="ready").wait_for(timeout=UI_TIMEOUT_MS)
        await page.locator("#broker", has_text="broker: connected").wait_for()
        row = page.locator(f'#nodes tr[data-node="{NODE_ID}"]')
        assert "tiny.en" in await row.inner_text()
        assert (await row.locator(".uptime").inner_text()).endswith(" s")  # up for seconds
        await _screenshot(page, "console-ready.png")
        assert errors == []


async def test_a_satellites_final_shows_live_with_its_details(
    shipped: SecureBroker, console: RunningConsole
) -> None:
    path, reference = SAID_BY_SATELLITE
    async with _browser() as browser, _page(browser, console) as (page, errors):
        await page.locator("#broker", has_text="broker: connected").wait_for(timeout=UI_TIMEOUT_MS)
        # a satellite may not read transcripts (the ACL): the test's monitor user does
        async with shipped.connect(MONITOR) as monitor, shipped.connect(SATELLITE) as porch:
            await monitor.subscribe(TRANSCRIPT_FILTER, qos=1)
            session = await Satellite(porch, SATELLITE).stream(load(path), realtime=True)
            final = await final_of(monitor, session)
        assert wer([reference], [final.text]) <= 0.2, final
        item = page.locator(f'#live li[data-session="{session}"].final')
        await item.wait_for(timeout=UI_TIMEOUT_MS)
        shown = await item.inner_text()
        assert final.text in shown and f"{SATELLITE} → transcript/" in shown
        assert f"confidence {_js_round(final.confidence * 100)} %" in shown
        assert f"final {_js_round(final.latency_ms)} ms" in shown
        row = page.locator(f'#satellites tr[data-device="{SATELLITE}"]')
        assert final.text in await row.inner_text()
        summary = await page.locator("#latency-summary").inner_text()
        assert "final" in summary and "median" in summary
        # silence is published rejected, and shown greyed with the reason; a garbage
        # message is answered with an error report, shown under the device
        async with shipped.connect(MONITOR) as monitor, shipped.connect(SATELLITE) as porch:
            await monitor.subscribe(TRANSCRIPT_FILTER, qos=1)
            quiet = np.zeros(int(1.5 * SAMPLE_RATE), np.float32)
            silent = await Satellite(porch, SATELLITE).stream(quiet, realtime=False)
            rejected = await final_of(monitor, silent)
            await porch.publish(f"audio/{SATELLITE}/chunk", b"not msgpack", qos=1)
        assert rejected.rejected is not None
        item = page.locator(f'#live li[data-session="{silent}"].final.rejected')
        await item.wait_for(timeout=UI_TIMEOUT_MS)
        assert f"rejected: {rejected.rejected}" in await item.inner_text()
        assert await item.evaluate("e => getComputedStyle(e).opacity") == "0.45"
        report = page.locator(f'#errors li[data-device="{SATELLITE}"]', has_text="bad_payload")
        await report.wait_for(timeout=UI_TIMEOUT_MS)
        await _screenshot(page, "console-final.png")
        assert errors == []


def _js_round(x: float) -> int:
    """What the page's Math.round shows: halves up (Python's round() goes to even)."""
    return math.floor(x + 0.5)


def _microphone_file(folder: Path) -> Path:
    """The shared recording with a second of silence before and three after (so the
    node's endpoint hears the end), as the WAV Chromium's fake microphone plays."""
    path, _ = SAID_INTO_MICROPHONE
    silence = np.zeros(SAMPLE_RATE, np.float32)
    samples = np.concatenate([silence, load(path), silence, silence, silence])
    out = folder / "microphone.wav"
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(float_to_s16(samples))
    return out


async def test_the_talk_button_makes_the_microphone_a_satellite(
    console: RunningConsole, tmp_path: Path
) -> None:
    _, reference = SAID_INTO_MICROPHONE
    microphone = _microphone_file(tmp_path)
    async with (
        _browser(
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone}%noloop",
        ) as browser,
        _page(browser, console) as (page, errors),
    ):
        talk = page.locator("#talk")
        await page.locator("#broker", has_text="broker: connected").wait_for(timeout=UI_TIMEOUT_MS)
        await talk.click()
        await page.locator("#talk.live").wait_for(timeout=UI_TIMEOUT_MS)
        await _screenshot(page, "console-talking.png")
        said = page.locator("#talk-text[data-final]")
        await said.wait_for(timeout=UI_TIMEOUT_MS)
        text = await said.inner_text()
        assert wer([reference], [text]) <= 0.25, text
        # the words showed while the user spoke, before the final replaced them
        assert int(await said.get_attribute("data-partials") or 0) >= 1
        # the same final, from the broker, in the live list under the browser's device
        live = page.locator("#live li.final", has_text="console → transcript/")
        await live.first.wait_for(timeout=UI_TIMEOUT_MS)
        assert text in await live.first.inner_text()
        assert await talk.inner_text() == "● Talk"  # ready for the next utterance
        await _screenshot(page, "console-talk-final.png")
        assert errors == []


async def test_the_page_wants_its_login_and_its_socket_its_own_origin(
    console: RunningConsole, certificates: Certificates
) -> None:
    ssl = create_default_context(cafile=str(certificates.ca))
    auth = {"Authorization": "Basic " + base64.b64encode(f"x:{HTTP_PASSWORD}".encode()).decode()}
    async with aiohttp.ClientSession() as http:
        async with http.get(console.url, ssl=ssl) as response:
            assert response.status == 401
            assert "Basic" in response.headers["WWW-Authenticate"]
        async with http.get(console.url, ssl=ssl, headers=auth) as response:
            assert response.status == 200 and "orac-node console" in await response.text()
        ws_url = console.url.replace("https://", "wss://") + "ws"
        foreign = {**auth, "Origin": "https://elsewhere.example"}
        # a plain request: a refused handshake through ws_connect leaves its socket open
        async with http.get(console.url + "ws", ssl=ssl, headers=foreign) as response:
            assert response.status == 403
        async with http.ws_connect(ws_url, ssl=ssl, headers=auth) as ws:
            first: dict[str, Any] = json.loads((await ws.receive(timeout=10)).data)
            assert first["kind"] == "snapshot"
            assert any(n["node"] == NODE_ID for n in first["nodes"])
            await ws.send_str("not a command")
            for _ in range(20):  # the broker event may come first
                reply = json.loads((await ws.receive(timeout=10)).data)
                if reply["kind"] == "talk":
                    break
            assert reply["state"] == "failed" and "not a command" in reply["error"]
    # aiohttp closes TLS connections after the session: give them the quarter second
    # its docs ask for, or one is collected later, during another test, as unclosed
    await asyncio.sleep(0.25)


def test_the_console_logged_no_traceback(console: RunningConsole) -> None:
    assert "Traceback" not in console.log.read_text()


async def test_the_demo_prints_the_console_where_its_samples_appear_live() -> None:
    """The README's first command, run from a terminal: the console it prints shows
    the sample commands as they are spoken, and the demo stays up until Ctrl-C."""
    path, reference = SAID_BY_SATELLITE
    primary, replica = pty.openpty()  # a terminal on stdin: the demo waits for the page
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORAC_NODE_")}
    demo = subprocess.Popen(  # noqa: ASYNC220 - its pipes are read in a thread
        [
            sys.executable,
            "-m",
            "orac_node.cli",
            "demo",
            "--model",
            str(MODEL),
            "--audio",
            str(path),
        ],
        stdin=replica,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    os.close(replica)
    assert demo.stdout is not None
    printed: list[str] = []
    try:
        url = None
        while url is None:
            line = await asyncio.to_thread(demo.stdout.readline)
            assert line, "the demo ended before it printed the console:\n" + "".join(printed)
            printed.append(line)
            if "web console: " in line:
                url = line.split("web console: ", 1)[1].split()[0]
        async with _browser() as browser:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(url)
            item = page.locator("#live li.final", has_text="transcript/")
            await item.first.wait_for(timeout=UI_TIMEOUT_MS)
            text = await item.first.locator(".transcript").inner_text()
            assert wer([reference], [text]) <= 0.2, text
            await page.locator(
                '#nodes tr[data-node="demo-node"] .state', has_text="ready"
            ).wait_for()
            await _screenshot(page, "console-demo.png")
            assert errors == []
        demo.send_signal(signal.SIGINT)
        rest = await asyncio.to_thread(demo.communicate, timeout=60)
        printed.append(rest[0])
        assert demo.returncode == 0, "".join(printed)
        assert "FINAL" in "".join(printed)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        os.close(primary)


async def test_a_node_with_console_enabled_serves_the_page_itself(
    broker: LocalBroker, tmp_path: Path
) -> None:
    port = free_port()
    config = {"console": {"enabled": True, "port": port}}
    node = await asyncio.to_thread(  # it waits for ready with its own event loop
        start_node, broker.url, tmp_path / "node", MODEL, "test-console-inside", config
    )
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/") as response:
                assert response.status == 200 and "orac-node console" in await response.text()
            async with http.ws_connect(f"ws://127.0.0.1:{port}/ws") as ws:
                nodes: list[dict[str, Any]] = []
                async with asyncio.timeout(10):  # the retained statuses arrive as events
                    while not any(n.get("node") == "test-console-inside" for n in nodes):
                        event = json.loads((await ws.receive()).data)
                        nodes += event.get("nodes", [event] if event["kind"] == "node" else [])
    finally:
        code = node.stop(signal.SIGTERM)
    assert code == 0, node.log()


async def test_the_page_follows_a_broker_restart(tmp_path: Path) -> None:
    """The bridge reconnects on its own; the page is told, then sees statuses again."""
    broker = LocalBroker(tmp_path / "broker").start()
    port = free_port()
    config = load_config(None, {"broker": {"url": broker.url}, "console": {"port": port}})
    server = ConsoleServer(config)
    task = asyncio.create_task(server.run())
    try:
        async with asyncio.timeout(10):
            await server.connected.wait()
        async with aiohttp.ClientSession() as http, http.ws_connect(server.url + "ws") as ws:

            async def until(kind: str, **fields: object) -> dict[str, Any]:
                async with asyncio.timeout(30):
                    while True:
                        event: dict[str, Any] = json.loads((await ws.receive()).data)
                        if event["kind"] == kind and all(
                            event.get(k) == v for k, v in fields.items()
                        ):
                            return event

            await until("broker", connected=True)
            await asyncio.to_thread(broker.stop)
            await until("broker", connected=False)
            broker = LocalBroker(tmp_path / "broker", port=int(broker.url.rsplit(":", 1)[1]))
            await asyncio.to_thread(broker.start)
            await until("broker", connected=True)
            status = NodeStatus("box", "ready", "0.1.0", "tiny.en", 0, 0, time.time())
            async with connect(broker.url) as mqtt:
                await mqtt.publish(status_topic("box"), status.encode(), qos=1, retain=True)
            assert (await until("node", node="box"))["state"] == "ready"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        broker.stop()
