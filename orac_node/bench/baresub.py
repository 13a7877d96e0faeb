"""The ingest baseline: an MQTT subscriber that only receives and unpacks.

``python -m orac_node.bench.baresub HOST PORT FILTER`` prints ``subscribed``
once subscribed, and on SIGTERM the number of messages it took. Same client
library (aiomqtt on uvloop), same QoS and the same msgpack unpack as the node,
nothing else: the floor for what a chunk costs.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import aiomqtt
import msgpack
import uvloop


async def _main(host: str, port: int, topic: str) -> int:
    received = 0
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(topic, qos=1)
        print("subscribed", flush=True)

        async def consume() -> None:
            nonlocal received
            async for message in client.messages:
                msgpack.unpackb(message.payload, raw=False)
                received += 1

        task = asyncio.create_task(consume())
        await stop.wait()
        task.cancel()
    return received


def main() -> None:
    """Run until SIGTERM; print the message count."""
    host, port, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    print(uvloop.run(_main(host, port, topic)), flush=True)


if __name__ == "__main__":
    main()
