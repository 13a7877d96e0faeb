"""Stream a recording as a satellite would, printing partials as they come, then the final.

Usage: python satellite_stream.py [--broker URL] [--device NAME] [--topic TOPIC] FILE

The file is streamed in 20 ms chunks at the speed it was recorded, so the node
sends partial transcripts while it "listens". Prints ``partial: <stable>
[<unstable>]`` lines, then ``final: <text>``. While it runs, the device's
heartbeat on orac/satellite/NAME/status says online, with TOPIC.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from orac_node.client import Client
from orac_node.wire import Partial


async def main() -> None:
    """Stream the file as one utterance and print its transcripts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default=os.environ.get("ORAC_BROKER", "mqtt://127.0.0.1:1883"))
    parser.add_argument("--device", default="kitchen")
    parser.add_argument("--topic", default="general")
    parser.add_argument("file", type=Path)
    args = parser.parse_args()
    async with Client(args.broker, device=args.device, topics=[args.topic]) as client:
        async for t in client.stream(args.file, topic=args.topic):
            if isinstance(t, Partial):
                print(f"partial: {t.stable} [{t.unstable}]", flush=True)
            else:
                print(f"final: {t.text or '(no text: ' + str(t.rejected) + ')'}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
