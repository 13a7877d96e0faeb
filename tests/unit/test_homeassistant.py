"""The Wyoming server's pure parts: device names, accepted formats, session listeners."""

from __future__ import annotations

import asyncio

import pytest
from wyoming.asr import Transcribe

from orac_node.config import NodeConfig
from orac_node.homeassistant.dialog import MAX_VOCABULARY, vocabulary
from orac_node.homeassistant.wyoming_server import WyomingServer, _format_problem
from orac_node.ingest.refusal import Refusal
from orac_node.mqtt.listeners import Heard, Listeners
from orac_node.wire import is_valid_name
from tests.factories import final


def _server(prefix: str = "wyoming") -> WyomingServer:
    config = NodeConfig.model_validate({"wyoming": {"device_prefix": prefix}})
    return WyomingServer(config, None, Listeners(), None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "client", "device"),
    [
        (None, "192.168.1.20", "wyoming-192.168.1.20"),
        ("kitchen", "192.168.1.20", "kitchen"),  # Transcribe's name, when it is a device name
        ("living room", "10.0.0.5", "wyoming-10.0.0.5"),  # not one: the address instead
        (None, "fe80::1%eth0", "wyoming-fe80--1-eth0"),
        (None, "local", "wyoming-local"),  # a unix socket has no address
    ],
)
def test_a_connection_is_a_device_named_after_its_client(
    name: str | None, client: str, device: str
) -> None:
    transcribe = Transcribe(name=name, language="en") if name else None
    got = _server().device_for(transcribe, client)
    assert got == device and is_valid_name(got)


def test_a_long_address_still_gives_a_valid_device_name() -> None:
    got = _server("a" * 32).device_for(None, "2001:db8:85a3:8d3:1319:8a2e:370:7348")
    assert is_valid_name(got)


@pytest.mark.parametrize(
    ("rate", "width", "channels", "ok"),
    [
        (16000, 2, 1, True),
        (48000, 2, 2, True),  # resampled and mixed down like a satellite's
        (16000, 4, 1, False),  # 32-bit
        (16000, 1, 1, False),  # 8-bit
        (4000, 2, 1, False),
        (16000, 2, 0, False),
    ],
)
def test_the_audio_formats_taken(rate: int, width: int, channels: int, ok: bool) -> None:
    assert (_format_problem(rate, width, channels) is None) is ok


def test_listeners_get_their_sessions_messages_only_until_they_stop() -> None:
    listeners = Listeners()
    queue: asyncio.Queue[Heard] = asyncio.Queue()
    listeners.listen("kitchen", "s1", queue)
    listeners.listen("kitchen", "s2", queue)  # a second session of the same utterance
    listeners.deliver(final(device="kitchen", session="s1"))
    listeners.deliver(final(device="kitchen", session="other"))
    listeners.deliver(final(device="hall", session="s2"))
    listeners.deliver(Refusal("kitchen", "too_many_sessions", "full", "s2"))
    listeners.deliver(Refusal("kitchen", "rate_limited", "over"))  # no session: nobody's
    listeners.forget("kitchen", "s1")
    listeners.deliver(final(device="kitchen", session="s1"))
    got = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [(h.session, type(h).__name__) for h in got] == [("s1", "Final"), ("s2", "Refusal")]


def test_vocabulary_puts_names_last_and_drops_junk() -> None:
    assert vocabulary(None) == ""
    assert vocabulary(Transcribe(language="en")) == ""
    told = Transcribe(
        transcript_names=["Porch light", " Kitchen ", "", "radio"],
        transcript_terms=["radio", "thermostat"],
    )
    assert vocabulary(told) == "radio, thermostat, Porch light, Kitchen."
    many = Transcribe(transcript_names=[f"lamp {i}" for i in range(MAX_VOCABULARY + 50)])
    assert vocabulary(many).count("lamp") == MAX_VOCABULARY
    odd = Transcribe(transcript_names=[7, None, "Hall"])  # type: ignore[list-item]
    assert vocabulary(odd) == "Hall."
