"""A sketch of ORAC Core: follow the finals, retry unsure ones with help, set context.

Usage: python core_retry.py [--broker URL] [--min-confidence C] [--count N] [--vocabulary TEXT]

Prints ``listening`` once subscribed, then for every final with text:
``<device>: <text> (<confidence>)``. A final under the confidence threshold is
decoded again by the node that produced it, with the household's vocabulary as
the prompt, and printed as ``  retried: <text> (<confidence>)``. After each
command the device gets that vocabulary as context for its next utterances
(60 s). Exits after N finals (default: runs until interrupted).
"""

from __future__ import annotations

import argparse
import asyncio
import os

from orac_node.client import Client, RequestError
from orac_node.wire import Final

VOCABULARY = "Turn on the kitchen lights. Set the thermostat. Switch off the television."


async def main() -> None:
    """Follow transcripts, retrying low-confidence finals."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default=os.environ.get("ORAC_BROKER", "mqtt://127.0.0.1:1883"))
    parser.add_argument("--min-confidence", type=float, default=0.6)
    parser.add_argument("--count", type=int, default=0, help="stop after this many finals")
    parser.add_argument("--vocabulary", default=VOCABULARY)
    args = parser.parse_args()
    seen = 0
    # Subscribed to every topic's transcripts on entering, so none is missed after "listening".
    async with Client(args.broker) as core, core.transcripts() as feed:
        print("listening", flush=True)
        async for t in feed:
            if not isinstance(t, Final) or not t.text:
                continue
            print(f"{t.device}: {t.text} ({t.confidence:.2f})", flush=True)
            if t.confidence < args.min_confidence:
                try:
                    again = await core.retranscribe(t, prompt=args.vocabulary)
                    print(f"  retried: {again.text} ({again.confidence:.2f})", flush=True)
                except RequestError as exc:  # e.g. not_found: the node no longer has it
                    print(f"  retry failed: {exc.code}", flush=True)
            await core.set_context(args.vocabulary, device=t.device, ttl_s=60)
            seen += 1
            if seen == args.count:
                return


if __name__ == "__main__":
    asyncio.run(main())
