"""Talking to a node from Python: the client SDK, and the pieces it is built on.

Applications use :class:`Client` (asyncio) or :class:`SyncClient` (blocking)::

    async with Client("mqtt://broker.lan:1883", device="kitchen") as c:
        result = await c.transcribe("audio.wav", topic="general")
        async for t in c.stream("utterance.wav"):   # partials, then the final
            print(t.text)

Every topic and payload comes from :mod:`orac_node.wire`, as in the node.
Where each piece lives::

    core.py        Client: requests, context, streaming
    connection.py  its connection: heartbeat, subscriptions, routing each message
    inbox.py       the messages routed to one reader (a stream, a feed)
    feed.py        TranscriptFeed, what Client.transcripts returns
    sources.py     AudioSource, FileSource: what gets transcribed or streamed
    sync.py        SyncClient, the blocking wrapper
    link.py        the lower pieces the CLI, the demo, the bench and the tests use
                   directly: connect, Satellite, transcripts, wait_for_state, ...

Errors, all :class:`~orac_node.errors.OracNodeError` (defined in orac_node.errors)::

    ClientError              misuse (not connected, no device) or a refused subscription
    ├── RequestError         a node answered the request with ok: false (.code, .message)
    ├── RequestTimeoutError  no answer in time; also a TimeoutError
    └── StreamError          the node refused a streamed session (.report: the ErrorReport)
    BrokerError              the broker cannot be reached, or the connection dropped
    ContractError            a node's answer does not follow the contract

On a broker set up as docs/SECURITY.md describes, a satellite logs in over TLS
with a :class:`BrokerLogin`: ``Client(BrokerLogin(url="mqtts://kitchen@broker.lan:8883",
password=..., ca_file=ca), device="kitchen")``.
docs/CLIENT.md lists which broker permissions each call needs.
"""

from __future__ import annotations

from orac_node.client.core import Client
from orac_node.client.errors import RequestError, RequestTimeoutError, StreamError
from orac_node.client.feed import TranscriptFeed
from orac_node.client.link import (
    Satellite,
    connect,
    format_transcript,
    split_chunks,
    stream_raw,
    transcripts,
    wait_for_state,
)
from orac_node.client.sources import AudioSource, FileSource
from orac_node.client.sync import SyncClient
from orac_node.errors import ClientError
from orac_node.mqtt.options import BrokerLogin

__all__ = [
    "AudioSource",
    "BrokerLogin",
    "Client",
    "ClientError",
    "FileSource",
    "RequestError",
    "RequestTimeoutError",
    "Satellite",
    "StreamError",
    "SyncClient",
    "TranscriptFeed",
    "connect",
    "format_transcript",
    "split_chunks",
    "stream_raw",
    "transcripts",
    "wait_for_state",
]
