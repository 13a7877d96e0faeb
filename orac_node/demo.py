"""``orac-node demo``: the whole product on one machine, in one command.

Starts Mosquitto (on 1883 when free, else on a free port; or uses ``--broker``),
starts ``orac-node run`` as its own process exactly as systemd would, waits for
its retained ``ready`` status, then streams each ``--audio`` file in real time
as a satellite would and prints partials and the final as they arrive, with
times relative to the start and the end of the audio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiomqtt

from orac_node.audio import load_audio_file
from orac_node.broker import LocalBroker, free_port, port_in_use
from orac_node.client import Satellite, connect, format_transcript, transcripts, wait_for_state
from orac_node.config import load_config
from orac_node.contract import SAMPLE_RATE, TRANSCRIPT_FILTER, Final
from orac_node.models import resolve_model

NODE_ID = "demo-node"
READY_TIMEOUT_S = 120.0


async def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; return the process exit code."""
    config = load_config(args.config, {"model": {"path": args.model}} if args.model else None)
    model = resolve_model(
        config.model.path or config.model.name,
        cache_dir=config.model.cache_dir,
        hub_url=config.model.hub_url,
    )
    with tempfile.TemporaryDirectory(prefix="orac-demo-") as tmp:
        broker: LocalBroker | None = None
        url = args.broker
        if url is None:
            port = free_port() if port_in_use(1883) else 1883
            broker = LocalBroker(Path(tmp) / "broker", port=port).start()
            url = broker.url
            print(f"* mosquitto started on {url}")
            print(f"  watch it yourself: mosquitto_sub -p {port} -t 'transcript/#' -v")
        node_log = Path(tmp) / "node.log"
        with node_log.open("wb") as log_file:
            node = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "orac_node.cli",
                "run",
                "--broker",
                url,
                "--model",
                str(model),
                "--node-id",
                NODE_ID,
                stdout=log_file,
                stderr=log_file,
            )
        try:
            return await _stream_all(url, [Path(a) for a in args.audio], node, node_log)
        finally:
            await _stop(node)
            if broker is not None:
                broker.stop()


async def _stream_all(
    url: str, files: list[Path], node: asyncio.subprocess.Process, node_log: Path
) -> int:
    print("* starting the node (model loads and warms up before it reports ready) ...")
    async with connect(url) as mqtt:
        try:
            started = time.monotonic()
            ready = asyncio.create_task(
                asyncio.wait_for(wait_for_state(mqtt, NODE_ID, "ready"), READY_TIMEOUT_S)
            )
            died = asyncio.create_task(node.wait())
            await asyncio.wait((ready, died), return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():
                ready.cancel()
                print(
                    await asyncio.to_thread(node_log.read_text, errors="replace"), file=sys.stderr
                )
                print("the node exited before it was ready (its log is above)", file=sys.stderr)
                return 1
            died.cancel()
            ready.result()
        except TimeoutError:
            print(await asyncio.to_thread(node_log.read_text, errors="replace"), file=sys.stderr)
            return 1
        print(f"* node ready after {time.monotonic() - started:.1f} s")
        await mqtt.subscribe(TRANSCRIPT_FILTER, qos=1)
        for path in files:
            await _stream_one(mqtt, path)
    return 0


async def _stream_one(mqtt: aiomqtt.Client, path: Path) -> None:
    samples = await asyncio.to_thread(load_audio_file, path)
    session = uuid.uuid4().hex[:16]
    seconds = samples.size / SAMPLE_RATE
    print(f"\n* streaming {path.name} ({seconds:.1f} s) in real time as satellite 'kitchen'")
    done = asyncio.Event()
    start = time.monotonic()

    async def show() -> None:
        async for t in transcripts(mqtt):
            if t.session != session:
                continue
            elapsed = time.monotonic() - start
            after = elapsed - seconds
            when = f"+{elapsed:5.2f}s" if after < 0 else f"end+{after:4.2f}s"
            print(f"  [{when}] {format_transcript(t)}", flush=True)
            if isinstance(t, Final):
                done.set()
                return

    printer = asyncio.create_task(show())
    await Satellite(mqtt, "kitchen").stream(samples, session=session, realtime=True, stop=done)
    try:
        await asyncio.wait_for(done.wait(), timeout=30)
    finally:
        printer.cancel()


async def _stop(node: asyncio.subprocess.Process) -> None:
    if node.returncode is not None:
        return
    node.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(node.wait(), timeout=30)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            node.kill()
        await node.wait()
