"""Transcribe audio files on whichever node is free, and print what was said.

Usage: python transcribe_file.py [--broker URL] [--topic TOPIC] FILE...

Prints one line per file: the file name, then its transcript (or why there is
none), then the confidence. Any format ffmpeg reads works (WAV, FLAC, MP3,
OGG): the node decodes it. With --topic the final is also published on
transcript/TOPIC for that topic's consumers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from orac_node.client import Client


async def main() -> None:
    """Send each file as a ``transcribe`` request and print the answer."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default=os.environ.get("ORAC_BROKER", "mqtt://127.0.0.1:1883"))
    parser.add_argument("--topic", help="also publish the final on transcript/TOPIC")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    async with Client(args.broker, timeout=120) as client:
        for path in args.files:
            result = await client.transcribe(path, topic=args.topic, publish=bool(args.topic))
            text = result.text or f"(no text: {result.rejected})"
            print(f"{path.name}: {text}  [confidence {result.confidence:.2f}]")


if __name__ == "__main__":
    asyncio.run(main())
