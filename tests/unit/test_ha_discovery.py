"""Home Assistant MQTT discovery: payloads against the documented schema, and what is sent when.

The schema is Home Assistant's "Device discovery payload" (its MQTT integration's
docs, and DEVICE_DISCOVERY_SCHEMA in its source): a root with ``device`` (with
``identifiers``) and ``origin`` (with ``name``), components keyed by id, each with
``platform`` and, for an entity, ``unique_id``; an empty retained payload removes
the device. Home Assistant renders the templates with Jinja, ``value_json`` being
the JSON payload. Jinja is not a dependency of this project, so :func:`render`
evaluates the three template forms discovery.py writes (and fails on any other);
:func:`test_templates_render_the_same_in_jinja` checks it against Jinja itself
wherever jinja2 is installed.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from orac_node.config import HomeAssistantSection, NodeConfig, RegistrySection, load_config
from orac_node.consumers.registry import Registry
from orac_node.errors import ConfigError
from orac_node.homeassistant import discovery
from orac_node.homeassistant.discovery import (
    STATE_MAX_CHARS,
    DeviceDiscovery,
    node_config,
    node_removal,
    satellite_config,
    satellite_removal,
)
from orac_node.homeassistant.forget import check_input
from orac_node.mqtt.bus import Outgoing
from orac_node.node import STATUS_MIN_INTERVAL_S, Node
from orac_node.wire import (
    TRANSCRIPT_EVENT,
    DeviceTranscript,
    NodeState,
    NodeStatus,
    SatelliteState,
    SatelliteStatus,
    device_transcript_topic,
    discovery_config_topic,
    discovery_object_id,
    is_transcript_event,
    satellite_status_topic,
    status_topic,
)
from tests.factories import final

# -- the schema, as Home Assistant documents and checks it --------------------------------

ROOT_KEYS = {
    "device",
    "origin",
    "components",
    "availability",
    "availability_mode",
    "state_topic",
    "command_topic",
    "qos",
    "encoding",
}
"""What DEVICE_DISCOVERY_SCHEMA accepts at the root (the shared options and the three
required keys)."""
DEVICE_KEYS = {
    "identifiers",
    "connections",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "hw_version",
    "serial_number",
    "sw_version",
    "via_device",
    "suggested_area",
    "configuration_url",
}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
AVAILABILITY_KEYS = {"topic", "value_template", "payload_available", "payload_not_available"}
PLATFORM_KEYS = {
    "binary_sensor": {"payload_on", "payload_off", "device_class", "value_template"},
    "sensor": {
        "value_template",
        "unit_of_measurement",
        "device_class",
        "state_class",
        "json_attributes_topic",
        "json_attributes_template",
    },
    "event": {"event_types", "device_class", "value_template"},
}
"""Options of each platform used here, beyond what every entity has (below)."""
ENTITY_KEYS = {"platform", "unique_id", "name", "icon", "state_topic", "availability", "qos"}
HA_TOPIC_OBJECT_ID = re.compile(r"[a-zA-Z0-9_-]+")
"""Home Assistant's TOPIC_MATCHER for the object id level of a discovery topic."""

# -- Home Assistant's templates, evaluated -------------------------------------------------

_JINJA = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
"""Home Assistant renders MQTT templates with Jinja2 in a sandbox; a missing field fails."""


def render(template: str, payload: bytes) -> str:
    """``template`` as Home Assistant renders it over ``payload`` (value_json)."""
    return _JINJA.from_string(template).render(value_json=json.loads(payload))


def _templates(config: dict[str, Any]) -> Iterator[str]:
    for availability in config.get("availability", []):
        yield availability["value_template"]
    for component in config["components"].values():
        if "value_template" in component:
            yield component["value_template"]


# -- payload samples -------------------------------------------------------------------------


def _status(state: NodeState, *, last_final_ms: float | None = None) -> bytes:
    return NodeStatus(
        "box", state, "0.1.0", "tiny.en", 2, 1, 1.0, last_final_ms=last_final_ms
    ).encode()


def _heartbeat(state: SatelliteState) -> bytes:
    return SatelliteStatus("kitchen", state, ["general"], 1.0).encode()


def _transcript(text: str = "Turn on the lights.") -> bytes:
    return DeviceTranscript.of(final(device="kitchen", text=text)).encode()


def _message(topic: str, payload: bytes) -> aiomqtt.Message:
    return aiomqtt.Message(topic, payload, qos=1, retain=True, mid=1, properties=None)


def _payload(message: Outgoing) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(message.payload)
    return data


# -- the payloads ----------------------------------------------------------------------------


def test_node_config_field_by_field() -> None:
    status = "orac/node/box/status"
    assert node_config("box", version="1.2.3") == {
        "device": {
            "identifiers": ["orac_node_box"],
            "name": "orac-node box",
            "manufacturer": "ORAC",
            "model": "orac-node",
            "sw_version": "1.2.3",
        },
        "origin": {"name": "orac-node", "sw_version": "1.2.3"},
        "state_topic": status,
        "qos": 1,
        "availability": [
            {
                "topic": status,
                "value_template": "{{ 'offline' if value_json.state == 'offline' else 'online' }}",
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        ],
        "components": {
            "ready": {
                "platform": "binary_sensor",
                "unique_id": "orac_node_box_ready",
                "name": "Ready",
                "device_class": "running",
                "value_template": "{{ 'ON' if value_json.state == 'ready' else 'OFF' }}",
                "payload_on": "ON",
                "payload_off": "OFF",
            },
            "sessions": {
                "platform": "sensor",
                "unique_id": "orac_node_box_sessions",
                "name": "Open sessions",
                "value_template": "{{ value_json.sessions }}",
                "state_class": "measurement",
            },
            "queued": {
                "platform": "sensor",
                "unique_id": "orac_node_box_queued",
                "name": "Queue",
                "value_template": "{{ value_json.queued }}",
                "state_class": "measurement",
            },
            "last_final_ms": {
                "platform": "sensor",
                "unique_id": "orac_node_box_last_final_ms",
                "name": "Last final latency",
                "value_template": "{{ value_json.last_final_ms }}",
                "unit_of_measurement": "ms",
                "device_class": "duration",
                "state_class": "measurement",
            },
        },
    }


def test_satellite_config_field_by_field() -> None:
    transcripts = "orac/device/kitchen/transcript"
    without = {
        "device": {
            "identifiers": ["orac_satellite_kitchen"],
            "name": "kitchen",
            "manufacturer": "ORAC",
            "model": "satellite",
        },
        "origin": {"name": "orac-node"},
        "state_topic": transcripts,
        "qos": 1,
        "components": {
            "transcript": {
                "platform": "event",
                "unique_id": "orac_satellite_kitchen_transcript",
                "name": "Transcript",
                "event_types": ["transcript"],
            },
            "last_transcript": {
                "platform": "sensor",
                "unique_id": "orac_satellite_kitchen_last_transcript",
                "name": "Last transcript",
                "value_template": "{{ value_json.text[:255] }}",
                "json_attributes_topic": transcripts,
            },
        },
    }
    assert satellite_config("kitchen", heartbeat=False) == without
    assert satellite_config("kitchen", heartbeat=True) == without | {
        "availability": [
            {
                "topic": "orac/satellite/kitchen/status",
                "value_template": "{{ value_json.state }}",
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        ]
    }


CONFIGS = {
    "node": node_config("box", version="0.1.0"),
    "satellite-with-heartbeat": satellite_config("kitchen", heartbeat=True),
    "satellite-without": satellite_config("kitchen", heartbeat=False),
}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_every_config_follows_the_device_discovery_schema(config: dict[str, Any]) -> None:
    assert set(config) <= ROOT_KEYS
    assert {"device", "origin", "components"} <= set(config)  # required, unabbreviated
    device, origin = config["device"], config["origin"]
    assert set(device) <= DEVICE_KEYS and set(origin) <= ORIGIN_KEYS
    assert device["identifiers"] and all(isinstance(i, str) for i in device["identifiers"])
    assert isinstance(origin["name"], str) and origin["name"]
    assert config["qos"] in (0, 1, 2)
    for availability in config.get("availability", []):
        assert set(availability) == AVAILABILITY_KEYS
    assert config["components"]
    for component_id, component in config["components"].items():
        assert HA_TOPIC_OBJECT_ID.fullmatch(component_id)  # it becomes a topic's object id
        platform = component["platform"]
        assert set(component) <= ENTITY_KEYS | PLATFORM_KEYS[platform], component_id
        assert isinstance(component["unique_id"], str) and component["unique_id"]
        assert component.get("state_topic", config.get("state_topic"))  # own or inherited
    json.dumps(config, allow_nan=False)  # a JSON payload


def test_unique_ids_are_unique_and_stable() -> None:
    configs = [
        node_config("box", version="0.1.0"),
        node_config("box.2", version="0.1.0"),
        satellite_config("kitchen", heartbeat=True),
        satellite_config("hall", heartbeat=False),
        satellite_config("box", heartbeat=False),  # a satellite named like a node
    ]
    ids = [c["unique_id"] for config in configs for c in config["components"].values()]
    assert len(ids) == len(set(ids))
    devices = [config["device"]["identifiers"][0] for config in configs]
    assert len(devices) == len(set(devices))
    # the same whatever else changes: a new version, heartbeats seen or not
    again = node_config("box", version="9.9.9")
    assert [c["unique_id"] for c in again["components"].values()] == ids[:4]
    sat = satellite_config("kitchen", heartbeat=False)
    assert [c["unique_id"] for c in sat["components"].values()] == ids[8:10]


def test_object_ids_are_ones_home_assistant_accepts_and_stay_distinct() -> None:
    assert discovery_object_id("satellite", "kitchen") == "orac_satellite_kitchen"
    assert discovery_object_id("node", "box-1_a") == "orac_node_box-1_a"
    dotted = discovery_object_id("satellite", "kitchen.left")
    assert HA_TOPIC_OBJECT_ID.fullmatch(dotted)
    assert dotted.startswith("orac_satellite_kitchen_left_")
    assert dotted != discovery_object_id("satellite", "kitchen_left")
    assert dotted == discovery_object_id("satellite", "kitchen.left")  # stable
    assert discovery_config_topic("homeassistant", dotted) == (
        f"homeassistant/device/{dotted}/config"
    )


# -- templates over real payloads ---------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "available", "ready"),
    [
        ("starting", "online", "OFF"),
        ("ready", "online", "ON"),
        ("draining", "online", "OFF"),
        ("offline", "offline", "OFF"),
    ],
)
def test_node_availability_and_ready_follow_the_status(
    state: NodeState, available: str, ready: str
) -> None:
    config = node_config("box", version="0.1.0")
    (availability,) = config["availability"]
    assert availability["topic"] == config["state_topic"] == status_topic("box")
    assert render(availability["value_template"], _status(state)) == available
    assert render(config["components"]["ready"]["value_template"], _status(state)) == ready


def test_the_last_will_makes_the_node_unavailable() -> None:
    from orac_node.mqtt.publisher import offline_status  # noqa: PLC0415

    will = offline_status("box", "tiny.en")
    assert will.retain and will.topic == status_topic("box")
    (availability,) = node_config("box", version="0.1.0")["availability"]
    assert render(availability["value_template"], will.payload) == "offline"


def test_node_sensors_read_the_status() -> None:
    components = node_config("box", version="0.1.0")["components"]
    before_any_final = _status("ready")
    after = _status("ready", last_final_ms=21.5)
    assert render(components["sessions"]["value_template"], after) == "2"
    assert render(components["queued"]["value_template"], after) == "1"
    assert render(components["last_final_ms"]["value_template"], after) == "21.5"
    # Home Assistant takes the rendered "None" as unknown (its PAYLOAD_NONE)
    assert render(components["last_final_ms"]["value_template"], before_any_final) == "None"


@pytest.mark.parametrize("state", ["online", "offline"])
def test_satellite_availability_follows_its_heartbeat(state: SatelliteState) -> None:
    (availability,) = satellite_config("kitchen", heartbeat=True)["availability"]
    assert availability["topic"] == satellite_status_topic("kitchen")
    assert render(availability["value_template"], _heartbeat(state)) == state


def test_the_transcript_event_and_sensor_read_the_device_transcript() -> None:
    config = satellite_config("kitchen", heartbeat=False)
    assert config["state_topic"] == device_transcript_topic("kitchen")
    event, sensor = config["components"]["transcript"], config["components"]["last_transcript"]
    payload = json.loads(_transcript())
    # Home Assistant's event entity: event_type must be one of event_types, the
    # other keys become the event's attributes
    assert payload["event_type"] in event["event_types"] == [TRANSCRIPT_EVENT]
    assert {"text", "confidence", "language", "session", "topic", "latency_ms"} <= set(payload)
    assert render(sensor["value_template"], _transcript()) == "Turn on the lights."
    assert sensor["json_attributes_topic"] == config["state_topic"]


def test_the_sensor_state_is_cut_to_home_assistants_limit_and_the_attributes_are_not() -> None:
    long = "word " * 100
    sensor = satellite_config("kitchen", heartbeat=False)["components"]["last_transcript"]
    state = render(sensor["value_template"], _transcript(long))
    assert STATE_MAX_CHARS == 255
    assert state == long[:255] and len(state) == 255
    assert json.loads(_transcript(long))["text"] == long  # the attributes: the whole text
    short = render(sensor["value_template"], _transcript("Stop."))
    assert short == "Stop."
    assert render(sensor["value_template"], _transcript("é" * 300)) == "é" * 255  # characters


# -- removal -------------------------------------------------------------------------------------


def test_removals_are_empty_retained_messages() -> None:
    node = node_removal("homeassistant", "box")
    assert node == Outgoing("homeassistant/device/orac_node_box/config", b"", qos=1, retain=True)
    config, transcript = satellite_removal("ha", "kitchen")
    assert config == Outgoing("ha/device/orac_satellite_kitchen/config", b"", qos=1, retain=True)
    assert transcript == Outgoing(device_transcript_topic("kitchen"), b"", qos=1, retain=True)


# -- the device transcript on the wire ---------------------------------------------------------


def test_device_transcript_round_trips_every_field() -> None:
    source = final(device="kitchen", session="k1", topic="lights", text="Lights on.")
    event = DeviceTranscript.of(source)
    payload = event.encode()
    assert set(json.loads(payload)) == {f.name for f in dataclasses.fields(event)}
    assert DeviceTranscript.decode(payload) == event
    assert (event.device, event.session, event.topic, event.text) == (
        "kitchen",
        "k1",
        "lights",
        "Lights on.",
    )
    assert (event.language, event.confidence, event.latency_ms) == (
        source.language,
        source.confidence,
        source.latency_ms,
    )
    assert (event.node, event.ts, event.event_type) == (source.node, source.ts, "transcript")
    assert device_transcript_topic("kitchen") == "orac/device/kitchen/transcript"


@pytest.mark.parametrize(
    ("fields", "event"),
    [
        ({}, True),
        ({"text": ""}, False),
        ({"text": "", "rejected": "no_speech"}, False),
        ({"rejected": "duplicate"}, False),  # another satellite of the room had it
        ({"rejected": "low_confidence", "text": ""}, False),
    ],
)
def test_only_accepted_finals_with_text_are_events(fields: dict[str, Any], event: bool) -> None:
    assert is_transcript_event(final(**fields)) is event


def test_node_status_carries_the_last_final_latency() -> None:
    status = NodeStatus("box", "ready", "0.1.0", "tiny.en", 0, 0, 1.0, last_final_ms=42.5)
    assert NodeStatus.decode(status.encode()) == status
    assert json.loads(status.encode())["last_final_ms"] == 42.5
    old = json.loads(_status("ready"))
    del old["last_final_ms"]  # a status from a node before this field
    assert NodeStatus.decode(json.dumps(old)).last_final_ms is None


# -- what DeviceDiscovery publishes when ---------------------------------------------------------


class Sent(list[Outgoing]):
    """What a DeviceDiscovery published, newest last."""

    def topics(self) -> list[str]:
        return [m.topic for m in self]


def _discovery(prefix: str = "homeassistant") -> tuple[DeviceDiscovery, Sent]:
    sent = Sent()
    settings = HomeAssistantSection(discovery=True, prefix=prefix)
    return DeviceDiscovery(settings, node_id="box", version="0.1.0", publish=sent.append), sent


SAT = "homeassistant/device/orac_satellite_kitchen/config"
TRANSCRIPT = "orac/device/kitchen/transcript"


def test_the_node_config_is_published_retained() -> None:
    found, sent = _discovery("ha/test")
    found.publish_node()
    (message,) = sent
    assert message.topic == "ha/test/device/orac_node_box/config"
    assert message.retain and message.qos == 1
    assert _payload(message) == node_config("box", version="0.1.0")


def test_a_satellite_is_published_at_its_first_online_heartbeat_once() -> None:
    found, sent = _discovery()
    found.satellite("kitchen", "online")
    found.satellite("kitchen", "online")
    found.satellite("kitchen", "offline")
    assert sent.topics() == [SAT]
    assert sent[0].retain and _payload(sent[0]) == satellite_config("kitchen", heartbeat=True)


def test_an_offline_satellite_not_seen_before_is_not_published() -> None:
    # a retired satellite's Last Will stays retained: a restarted node must not bring it back
    found, sent = _discovery()
    found.satellite("attic", "offline")
    assert sent == []


def test_a_device_without_heartbeats_is_published_at_its_first_accepted_final() -> None:
    found, sent = _discovery()
    found.final(final(device="kitchen", text="", rejected="no_speech"))
    assert sent == []
    found.final(final(device="kitchen", text="Lights on."))
    found.final(final(device="kitchen", text="Lights off."))
    assert sent.topics() == [SAT, TRANSCRIPT, TRANSCRIPT]
    assert "availability" not in _payload(sent[0])  # it would show unavailable forever
    assert all(m.retain for m in sent)
    assert _payload(sent[2])["text"] == "Lights off."
    assert _payload(sent[2])["event_type"] == "transcript"


def test_a_heartbeat_after_finals_adds_the_availability() -> None:
    found, sent = _discovery()
    found.final(final(device="kitchen", text="Hello."))
    found.satellite("kitchen", "offline")  # it does send heartbeats after all
    found.final(final(device="kitchen", text="Hello again."))
    assert sent.topics() == [SAT, TRANSCRIPT, SAT, TRANSCRIPT]
    assert "availability" in _payload(sent[2])


def test_a_final_from_a_satellite_known_offline_publishes_it_with_availability() -> None:
    found, sent = _discovery()
    found.satellite("kitchen", "offline")
    found.final(final(device="kitchen", text="Hello."))
    assert sent.topics() == [SAT, TRANSCRIPT]
    assert _payload(sent[0]) == satellite_config("kitchen", heartbeat=True)


def test_a_cleared_heartbeat_removes_the_satellite_and_its_transcript() -> None:
    found, sent = _discovery()
    found.satellite("kitchen", "online")
    found.satellite("kitchen", None)
    assert sent.topics() == [SAT, SAT, TRANSCRIPT]
    assert sent[1:] == satellite_removal("homeassistant", "kitchen")
    found.satellite("kitchen", "online")  # it came back: published again
    assert sent.topics()[-1] == SAT and sent[-1].payload


def test_after_a_lost_broker_session_everything_is_published_again() -> None:
    found, sent = _discovery()
    found.session_lost()
    assert sent == []  # not ready yet: the node's config goes out when it is
    found.publish_node()
    found.satellite("kitchen", "online")
    sent.clear()
    found.session_lost()
    assert sent.topics() == ["homeassistant/device/orac_node_box/config"]
    found.satellite("kitchen", "online")  # the broker re-sends the retained heartbeat
    assert sent.topics()[-1] == SAT


def test_the_number_of_satellites_is_bounded(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(discovery, "MAX_SATELLITES", 2)
    found, sent = _discovery()
    for device in ("a", "b", "c", "d"):
        found.final(final(device=device, text="Hi."))
    assert [t for t in sent.topics() if t.endswith("/config")] == [
        "homeassistant/device/orac_satellite_a/config",
        "homeassistant/device/orac_satellite_b/config",
    ]
    assert "orac/device/c/transcript" not in sent.topics()
    assert caplog.text.count("publishing no more") == 1


def test_the_registry_reports_heartbeats_and_their_removal() -> None:
    seen: list[tuple[str, SatelliteState | None]] = []
    registry = Registry(
        RegistrySection(register_topics=False),
        on_heartbeat=lambda device, state: seen.append((device, state)),
    )
    topic = satellite_status_topic("kitchen")
    registry.on_message(topic, _heartbeat("online"), now=2.0)
    registry.on_message(topic, b"not json", now=2.0)  # refused: not reported
    registry.on_message(satellite_status_topic("hall"), _heartbeat("online"), now=2.0)  # other
    registry.on_message(topic, _heartbeat("offline"), now=2.0)
    registry.on_message(topic, b"", now=2.0)
    assert seen == [("kitchen", "online"), ("kitchen", "offline"), ("kitchen", None)]


# -- configuration ---------------------------------------------------------------------------------


def test_discovery_is_off_by_default_and_the_environment_turns_it_on() -> None:
    assert NodeConfig().homeassistant == HomeAssistantSection(
        discovery=False, prefix="homeassistant"
    )
    config = load_config(environ={"ORAC_NODE_HOMEASSISTANT__DISCOVERY": "true"})
    assert config.homeassistant.discovery
    config = load_config(environ={"ORAC_NODE_HOMEASSISTANT__PREFIX": "ha/house"})
    assert config.homeassistant.prefix == "ha/house"


@pytest.mark.parametrize("prefix", ["", "home/#", "+", "ha//x", "/ha", "ha/", "h\0a"])
def test_a_prefix_with_wildcards_or_empty_levels_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigError, match=r"homeassistant\.prefix"):
        load_config(overrides={"homeassistant": {"prefix": prefix}}, environ={})
    with pytest.raises(ConfigError):
        check_input("box", prefix)


def test_the_forget_commands_refuse_names_no_node_would_use() -> None:
    check_input("kitchen.left", "homeassistant")
    for name in ("", "a/b", "kit chen", "#"):
        with pytest.raises(ConfigError):
            check_input(name, "homeassistant")


# -- wired into the node ---------------------------------------------------------------------------


def _node(tmp_path: Path, **homeassistant: Any) -> Node:
    config = NodeConfig.model_validate(
        {
            "node": {"id": "box"},
            "spool": {"dir": str(tmp_path / "spool")},
            "webhooks": {"dir": str(tmp_path / "webhooks")},
            "homeassistant": homeassistant,
        }
    )
    return Node(config, model_name="tiny.en", load_engines=list)


def _outbox(node: Node) -> list[Outgoing]:
    return list(node.bus._outbox)


def test_the_node_wires_heartbeats_and_finals_to_discovery(tmp_path: Path) -> None:
    node = _node(tmp_path, discovery=True, prefix="ha")
    node.on_message(_message(satellite_status_topic("kitchen"), _heartbeat("online")))
    node._publisher.final(final(device="kitchen", text="Lights on.", latency_ms=17.5))
    topics = [m.topic for m in _outbox(node) if not m.topic.startswith("orac/config/")]
    assert topics == [
        "ha/device/orac_satellite_kitchen/config",
        "transcript/bench-hooks-1",
        "orac/device/kitchen/transcript",
    ]
    assert node._publisher.last_final_ms == 17.5
    node._publish_status()
    status = NodeStatus.decode(_outbox(node)[-1].payload)
    assert status.last_final_ms == 17.5


def test_with_discovery_off_nothing_goes_to_home_assistant(tmp_path: Path) -> None:
    node = _node(tmp_path)
    assert node.discovery is None
    node.on_message(_message(satellite_status_topic("kitchen"), _heartbeat("online")))
    node._publisher.final(final(device="kitchen", text="Lights on."))
    topics = [m.topic for m in _outbox(node) if not m.topic.startswith("orac/config/")]
    assert topics == ["transcript/bench-hooks-1"]
    assert node._publisher.last_final_ms == 1.0  # the status still shows it


def test_a_failing_discovery_never_fails_the_final(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    node = _node(tmp_path, discovery=True)
    assert node.discovery is not None

    def broken(_: object) -> None:
        raise RuntimeError("outbox gone")

    monkeypatch.setattr(node.discovery, "_publish", broken)
    node._publisher.final(final(device="kitchen", text="Lights on."))  # does not raise
    assert [m.topic for m in _outbox(node)] == ["transcript/bench-hooks-1"]
    assert "outbox gone" in caplog.text


def test_the_status_is_republished_when_the_load_changed_at_most_once_a_second(
    tmp_path: Path,
) -> None:
    node = _node(tmp_path)
    node._publish_status()
    at = node._status_at
    assert not node._status_stale(at + 10)  # nothing changed: the 30 s refresh will do
    node._publisher.last_final_ms = 12.0
    assert not node._status_stale(at + STATUS_MIN_INTERVAL_S / 2)
    assert node._status_stale(at + STATUS_MIN_INTERVAL_S)
    node._publish_status()
    assert not node._status_stale(node._status_at + 10)
