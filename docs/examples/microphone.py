"""Stream live audio from a microphone until the node hears the end of the utterance.

Usage: python microphone.py [--broker URL] [--device NAME] [--command CMD]

Reads raw s16le 16 kHz mono audio from CMD's standard output (default:
``arecord``, ALSA's recorder) and streams it as one session; the node ends the
utterance after 0.7 s of silence. Prints ``partial: ...`` lines while you speak,
then ``final: <text>``, and stops the recorder. To try it without a microphone,
play a file at its own speed:
``--command "ffmpeg -loglevel error -re -i speech.wav -f s16le -ac 1 -ar 16000 -"``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
from collections.abc import AsyncGenerator

from orac_node.client import Client
from orac_node.wire import Partial

ARECORD = "arecord -q -f S16_LE -r 16000 -c 1 -t raw"
BLOCK_BYTES = 1600  # 50 ms of 16 kHz s16le: what a sound card hands out at a time


async def recorder(command: str) -> AsyncGenerator[bytes, None]:
    """Blocks of PCM from ``command``'s stdout; the recorder stops when reading stops."""
    process = await asyncio.create_subprocess_exec(
        *shlex.split(command), stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        while block := await process.stdout.read(BLOCK_BYTES):
            yield block
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


async def main() -> None:
    """Stream the recorder's audio as one utterance and print its transcripts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default=os.environ.get("ORAC_BROKER", "mqtt://127.0.0.1:1883"))
    parser.add_argument("--device", default="kitchen")
    parser.add_argument("--command", default=ARECORD, help="prints s16le 16 kHz mono PCM")
    args = parser.parse_args()
    audio = recorder(args.command)
    async with Client(args.broker, device=args.device) as client:
        try:
            async for t in client.stream(audio):
                if isinstance(t, Partial):
                    print(f"partial: {t.text}", flush=True)
                else:
                    print(f"final: {t.text or '(no text: ' + str(t.rejected) + ')'}", flush=True)
        finally:
            await audio.aclose()  # stop the recorder now, not when garbage-collected


if __name__ == "__main__":
    asyncio.run(main())
