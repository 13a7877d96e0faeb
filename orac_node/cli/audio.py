"""``orac-node send``, ``listen`` and ``transcribe``: audio in, transcripts out, by hand."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path

import aiomqtt

from orac_node.audio import Samples, load_audio_file
from orac_node.audio.vad import SileroVad
from orac_node.cli import jobs
from orac_node.cli.common import (
    Subparsers,
    broker_options,
    config_from,
    login,
    model_path,
    node_options,
)
from orac_node.client import Satellite, connect, format_transcript, stream_raw, transcripts
from orac_node.decode.engine import WhisperEngine
from orac_node.decode.offline import transcribe
from orac_node.ops.logsetup import setup_logging
from orac_node.wire import TRANSCRIPT_FILTER, Final, transcript_topic

RAW_QUIET_S = 4.0
"""``send --raw`` waits this long without transcripts before exiting: longer than
the node's 3 s idle timeout, after which any open raw utterance has its final."""


async def _send(args: argparse.Namespace) -> int:
    samples = await asyncio.to_thread(load_audio_file, Path(args.file))
    async with connect(login(args)) as mqtt:
        await mqtt.subscribe(transcript_topic(args.topic) if args.topic else TRANSCRIPT_FILTER)
        if args.raw:
            finals = await _send_raw(mqtt, args, samples)
        elif args.no_wait:
            await Satellite(mqtt, args.device).stream(
                samples,
                session=args.session,
                topic=args.topic,
                chunk_ms=args.chunk_ms,
                realtime=args.realtime,
            )
            return 0
        else:
            try:
                final = await Satellite(mqtt, args.device).say(
                    samples,
                    session=args.session,
                    topic=args.topic,
                    chunk_ms=args.chunk_ms,
                    realtime=args.realtime,
                    timeout=args.timeout,
                    on_transcript=lambda t: print(format_transcript(t), flush=True),
                )
            except TimeoutError:
                print(f"no final within {args.timeout:g} s", file=sys.stderr)
                return 1
            finals = [final]
    if args.json:
        for final in finals:
            print(json.dumps(asdict(final), indent=2))
    return 0


async def _send_raw(
    mqtt: aiomqtt.Client, args: argparse.Namespace, samples: Samples
) -> list[Final]:
    """Publish bare PCM; print this device's raw-session transcripts until they stop."""
    seen = asyncio.Event()
    finals: list[Final] = []

    async def show() -> None:
        async for t in transcripts(mqtt):
            if t.device == args.device and t.session.startswith(f"raw-{args.device}-"):
                print(format_transcript(t), flush=True)
                seen.set()
                if isinstance(t, Final):
                    finals.append(t)

    printer = asyncio.create_task(show())
    try:
        await stream_raw(mqtt, args.device, samples, args.chunk_ms, realtime=args.realtime)
        await _until_quiet(seen, RAW_QUIET_S, args.timeout)
    finally:
        printer.cancel()
    return finals


async def _until_quiet(seen: asyncio.Event, quiet_s: float, limit_s: float) -> None:
    """Return once no transcript arrived for ``quiet_s`` (raw streams have no end)."""
    async with asyncio.timeout(limit_s):
        while True:
            seen.clear()
            try:
                await asyncio.wait_for(seen.wait(), quiet_s)
            except TimeoutError:
                return


async def _listen(args: argparse.Namespace) -> int:
    async with connect(login(args)) as mqtt:
        await mqtt.subscribe(transcript_topic(args.topic) if args.topic else TRANSCRIPT_FILTER)
        async for t in transcripts(mqtt):
            print(json.dumps(asdict(t)) if args.json else format_transcript(t), flush=True)
    return 0


def cmd_transcribe(args: argparse.Namespace) -> int:
    """Transcribe files locally, no broker involved (or queue one as a job: ``--submit``)."""
    if args.submit:
        return jobs.cmd_submit(args)
    config = config_from(args)
    setup_logging("WARNING")
    engine = WhisperEngine(model_path(config), threads=config.model.resolved_threads())
    vad = SileroVad()
    for name in args.files:
        result = transcribe(engine, load_audio_file(Path(name)), config, vad, prompt=args.prompt)
        if args.json:
            d = result.decoding
            print(
                json.dumps(
                    {
                        "file": name,
                        "text": result.text,
                        "rejected": result.rejected,
                        "confidence": d.confidence if d else 0.0,
                        "language": d.language if d else None,
                        "audio_s": round(result.audio_s, 3),
                        "speech_s": round(result.speech_s, 3),
                        "decode_ms": d.decode_ms if d else 0.0,
                        "words": [asdict(w) for w in d.words] if d and not result.rejected else [],
                    }
                )
            )
        else:
            print(result.text if not result.rejected else f"(no text: {result.rejected})")
    return 0


def add_parsers(sub: Subparsers) -> None:
    """``send``, ``listen``, ``transcribe``."""
    send = sub.add_parser("send", help="stream an audio file as a satellite would")
    send.add_argument("device", help="device name: publishes on audio/<device>/chunk")
    send.add_argument("file", help="WAV, or anything ffmpeg reads")
    broker_options(send)
    send.add_argument("--realtime", action="store_true", help="pace chunks at capture speed")
    send.add_argument(
        "--raw", action="store_true", help="publish bare PCM on audio/<device>/raw instead"
    )
    send.add_argument("--chunk-ms", type=int, default=20, help="audio per chunk (default 20)")
    send.add_argument("--session", help="session id (default: random)")
    send.add_argument("--topic", help="transcript topic (default: the node's for this device)")
    send.add_argument("--timeout", type=float, default=60.0, help="wait this long for the final")
    send.add_argument("--no-wait", action="store_true", help="do not wait for the final")
    send.add_argument("--json", action="store_true", help="print the final(s) as JSON at the end")
    send.set_defaults(func=lambda a: asyncio.run(_send(a)))

    listen = sub.add_parser("listen", help="print transcripts as they arrive")
    listen.add_argument("topic", nargs="?", help="transcript topic (default: all)")
    broker_options(listen)
    listen.add_argument("--json", action="store_true", help="one JSON object per line")
    listen.set_defaults(func=lambda a: asyncio.run(_listen(a)))

    tr = sub.add_parser("transcribe", help="transcribe files locally (no broker)")
    node_options(tr)
    tr.add_argument("files", nargs="+", help="audio files")
    tr.add_argument("--json", action="store_true", help="one JSON object per file")
    tr.add_argument(
        "--prompt", default="", help="initial prompt (vocabulary or context, as Core sends it)"
    )
    tr.add_argument(
        "--submit",
        action="store_true",
        help="queue the file as a job for the fleet (jobs.redis_url); prints its id",
    )
    tr.add_argument("--wait", action="store_true", help="--submit: follow it, print the result")
    tr.add_argument("--language", help="--submit: the recording's language (default: detect)")
    jobs.format_option(tr)
    tr.set_defaults(func=cmd_transcribe)
