"""``orac-node demo``: the whole product on one machine, in one command.

Starts Mosquitto (on 1883 when free, else on a free port; or uses ``--broker``),
starts ``orac-node run`` as its own process exactly as systemd would, waits for
its retained ``ready`` status, serves the web console (docs/CONSOLE.md) and
prints its address, then streams each ``--audio`` file in real time as a
satellite would and prints partials and the final as they arrive, with times
relative to the start and the end of the audio.

Run from a terminal, the demo gives the user time to open the console before
the samples play (until a page connects, at most :data:`WAIT_FOR_PAGE_S`) and
keeps running afterwards, so the console's talk button can be tried, until
Ctrl-C. Run by a script (no terminal), it streams at once and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt

from orac_node.audio import load_audio_file
from orac_node.cli.common import Subparsers, node_options
from orac_node.client import Satellite, connect, format_transcript
from orac_node.config import NodeConfig, load_config
from orac_node.console import ConsoleServer
from orac_node.decode.modelfiles import resolve_model
from orac_node.ops.localbroker import LocalBroker, free_port, port_in_use
from orac_node.ops.nodeproc import NodeStartError, start_node
from orac_node.wire import SAMPLE_RATE, TRANSCRIPT_FILTER, Final, Partial

NODE_ID = "demo-node"
CONSOLE_PORT = 8480
"""The console's usual port; another free one when something else has it."""
WAIT_FOR_PAGE_S = 20.0
"""How long an interactive demo waits for the console to be opened before it plays."""


async def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; return the process exit code."""
    config = load_config(args.config, {"model": {"path": args.model}} if args.model else None)
    model = resolve_model(
        config.model.path or config.model.name,
        cache_dir=config.model.cache_dir,
        hub_url=config.model.hub_url,
    )
    with tempfile.TemporaryDirectory(prefix="orac-demo-") as tmp:
        async with contextlib.AsyncExitStack() as cleanup:  # node first, then broker
            url = args.broker
            if url is None:
                port = free_port() if port_in_use(1883) else 1883
                broker = LocalBroker(Path(tmp) / "broker", port=port).start()
                cleanup.callback(broker.stop)
                url = broker.url
                print(f"* mosquitto started on {url}")
                print(f"  watch it yourself: mosquitto_sub -p {port} -t 'transcript/#' -v")
            print("* starting the node (model loads and warms up before it reports ready) ...")
            try:
                node = await start_node(url, model, Path(tmp), node_id=NODE_ID)
            except NodeStartError as exc:
                print(exc, file=sys.stderr)
                return 1
            cleanup.push_async_callback(node.stop)
            print(f"* node ready after {node.time_to_ready_s:.1f} s")
            interactive = sys.stdin.isatty()
            console = await _start_console(config, url, cleanup)
            print(f"* web console: {console.url}  (open it; the talk button uses your microphone)")
            if interactive:
                await _wait_for_page(console)
            async with connect(url) as mqtt:
                await mqtt.subscribe(TRANSCRIPT_FILTER, qos=1)
                for path in args.audio:
                    await _stream_one(mqtt, Path(path))
            if interactive:
                print(f"\n* still running: try the talk button at {console.url}; Ctrl-C stops")
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.Event().wait()
    return 0


async def _start_console(
    config: NodeConfig, url: str, cleanup: contextlib.AsyncExitStack
) -> ConsoleServer:
    """The console, on the demo's broker and this machine only."""
    port = CONSOLE_PORT if not port_in_use(CONSOLE_PORT) else 0
    console_config = config.model_copy(
        update={
            "broker": config.broker.model_copy(update={"url": url}),
            "console": config.console.model_copy(update={"host": "127.0.0.1", "port": port}),
        }
    )
    console = ConsoleServer(console_config)
    task = asyncio.create_task(console.run(), name="console")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    cleanup.push_async_callback(stop)
    async with asyncio.timeout(10):
        await console.listening.wait()
        await console.connected.wait()  # so the page shows the node at once
    return console


async def _wait_for_page(console: ConsoleServer) -> None:
    print(f"  waiting up to {WAIT_FOR_PAGE_S:.0f} s for the console to be opened ...")
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(WAIT_FOR_PAGE_S):
            await console.page_opened.wait()


async def _stream_one(mqtt: aiomqtt.Client, path: Path) -> None:
    samples = await asyncio.to_thread(load_audio_file, path)
    seconds = samples.size / SAMPLE_RATE
    print(f"\n* streaming {path.name} ({seconds:.1f} s) in real time as satellite 'kitchen'")
    start = time.monotonic()

    def show(t: Partial | Final) -> None:
        elapsed = time.monotonic() - start
        after = elapsed - seconds
        when = f"+{elapsed:5.2f}s" if after < 0 else f"end+{after:4.2f}s"
        print(f"  [{when}] {format_transcript(t)}", flush=True)

    await Satellite(mqtt, "kitchen").say(samples, realtime=True, on_transcript=show, timeout=30)


def add_parser(sub: Subparsers) -> None:
    """``demo``."""
    demo = sub.add_parser("demo", help="local broker + node + streamed samples")
    node_options(demo)
    demo.add_argument("--audio", action="append", required=True, help="file to stream (repeat)")
    demo.add_argument("--broker", help="use this broker instead of starting one")
    demo.set_defaults(func=lambda args: asyncio.run(run_demo(args)))
