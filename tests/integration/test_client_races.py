"""The client SDK against a stand-in node that answers in a chosen order.

No real node runs in this module (one would transcribe the stand-in's
sessions too): a stand-in on the real broker publishes what a busy node
publishes, in the order that exposed the race.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from orac_node.client import Client, connect
from orac_node.client.link import payload_bytes
from orac_node.ops.localbroker import LocalBroker
from orac_node.wire import (
    AudioChunk,
    ErrorReport,
    Final,
    audio_topic,
    error_topic,
    transcript_topic,
)
from tests.factories import final


async def test_a_late_audio_report_before_the_final_ends_the_sending_not_the_stream(
    broker: LocalBroker,
) -> None:
    device = "dev-late-audio"
    """A busy node reports the live source's late chunks before its final is out.

    A stand-in node on the real broker ends the session after three chunks:
    it reports the next chunk as late_audio at once, and publishes the final
    half a second later, as a node still decoding would.
    """
    ended = asyncio.Event()

    async def busy_node() -> None:
        async with connect(broker.url) as mqtt:
            await mqtt.subscribe(audio_topic(device), qos=1)
            ready.set()
            async for message in mqtt.messages:
                chunk = AudioChunk.decode(payload_bytes(message))
                if chunk.seq < 3:
                    continue
                report = ErrorReport("busy", device, "late_audio", "ended", time.time(),
                                     session=chunk.session, seq=chunk.seq, dropped=1)  # fmt: skip
                await mqtt.publish(error_topic(device), report.encode(), qos=1)
                await asyncio.sleep(0.5)
                final = _final(device, chunk.session)
                await mqtt.publish(transcript_topic("general"), final.encode(), qos=1)
                ended.set()
                return

    async def microphone() -> AsyncIterator[bytes]:
        while True:
            yield b"\x00" * 1600
            await asyncio.sleep(0.05)

    ready = asyncio.Event()
    node = asyncio.create_task(busy_node())
    await ready.wait()
    async with Client(broker.url, device=device) as c:
        got = [t async for t in c.stream(microphone(), topic="general")]
    await node
    assert ended.is_set()
    assert [type(t) for t in got] == [Final] and got[0].text == "What time is it?"


def _final(device: str, session: str) -> Final:
    return final(
        node="busy",
        device=device,
        session=session,
        topic="general",
        text="What time is it?",
        reason="silence",
        endpoint="silence",
        ts=time.time(),
    )
