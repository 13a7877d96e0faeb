"""Home Assistant MQTT discovery: the node and each satellite as a Home Assistant device.

Home Assistant's *device-based* discovery (its MQTT integration's docs, "Device
discovery payload"): one retained JSON config per device on
``<prefix>/device/<object id>/config``, holding ``device`` (with
``identifiers``), ``origin`` (with ``name``) and ``components``, each component
with its ``platform`` and ``unique_id``. Options at the root (``state_topic``,
``availability``, ``qos``) are inherited by every component that does not set
its own. An empty retained payload on the same topic removes the device and its
entities. Keys are written in full (``device``, not ``dev``) so a person can
read them in ``mosquitto_sub``.

- The node: a device whose entities all read its retained status
  (``orac/node/<id>/status``): Ready, Open sessions, Queue, Last final latency.
  It is available unless the status says ``offline`` (also its Last Will).
- A satellite: a Transcript ``event`` fired by each accepted final, and a Last
  transcript ``sensor``, both reading ``orac/device/<device>/transcript``
  (wire/homeassistant.py). It has an availability only when it sends
  heartbeats (``orac/satellite/<device>/status``): a device that never does (a
  Wyoming client) would otherwise show unavailable forever.

The builders are pure; :class:`DeviceDiscovery` decides what to publish when,
through a ``publish`` callback as the topics registry does, so the rules are
unit-tested exactly (tests/unit/test_ha_discovery.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from orac_node.config import HomeAssistantSection
from orac_node.mqtt.bus import Outgoing
from orac_node.wire import (
    TRANSCRIPT_EVENT,
    DeviceTranscript,
    Final,
    SatelliteState,
    device_transcript_topic,
    discovery_config_topic,
    discovery_object_id,
    is_transcript_event,
    satellite_status_topic,
    status_topic,
)

log = logging.getLogger(__name__)

ORIGIN = "orac-node"
"""``origin.name``: what Home Assistant's log names as the source of the configs."""
MANUFACTURER = "ORAC"
STATE_MAX_CHARS = 255
"""Home Assistant refuses an entity state longer than this (its MAX_LENGTH_STATE_STATE);
the Last transcript sensor shows the first 255 characters, its attributes the rest."""
MAX_SATELLITES = 10_000
"""Satellites this process publishes configs for (as many as the topics registry
remembers, consumers/registry.py): bounds what finals from ever-new device names
(a buggy or hostile client) can cost the node and Home Assistant."""
AVAILABLE, NOT_AVAILABLE = "online", "offline"
"""Home Assistant's default availability payloads, written out so the templates
below visibly produce them."""


# -- templates (Home Assistant renders them with Jinja, value_json = the JSON payload) --


def field_template(field: str) -> str:
    """The payload's ``field`` as it is."""
    return f"{{{{ value_json.{field} }}}}"


def truncated_template(field: str, chars: int) -> str:
    """The payload's ``field``, cut to its first ``chars`` characters."""
    return f"{{{{ value_json.{field}[:{chars}] }}}}"


def choice_template(field: str, equals: str, then: str, otherwise: str) -> str:
    """``then`` when the payload's ``field`` is ``equals``, else ``otherwise``."""
    return f"{{{{ '{then}' if value_json.{field} == '{equals}' else '{otherwise}' }}}}"


# -- payloads ------------------------------------------------------------------------


def node_object_id(node_id: str) -> str:
    """The node's object id in its discovery topic, also its device identifier."""
    return discovery_object_id("node", node_id)


def satellite_object_id(device: str) -> str:
    """A satellite's object id in its discovery topic, also its device identifier."""
    return discovery_object_id("satellite", device)


def node_config(node_id: str, *, version: str) -> dict[str, Any]:
    """The node's device config: four entities reading its retained status."""
    object_id = node_object_id(node_id)
    status = status_topic(node_id)
    return {
        "device": {
            "identifiers": [object_id],
            "name": f"orac-node {node_id}",
            "manufacturer": MANUFACTURER,
            "model": "orac-node",
            "sw_version": version,
        },
        "origin": {"name": ORIGIN, "sw_version": version},
        "state_topic": status,
        "qos": 1,
        "availability": [
            {
                "topic": status,
                # starting and draining are up (Ready says whether it takes audio)
                "value_template": choice_template("state", "offline", NOT_AVAILABLE, AVAILABLE),
                "payload_available": AVAILABLE,
                "payload_not_available": NOT_AVAILABLE,
            }
        ],
        "components": {
            "ready": {
                "platform": "binary_sensor",
                "unique_id": f"{object_id}_ready",
                "name": "Ready",
                "device_class": "running",
                "value_template": choice_template("state", "ready", "ON", "OFF"),
                "payload_on": "ON",
                "payload_off": "OFF",
            },
            "sessions": {
                "platform": "sensor",
                "unique_id": f"{object_id}_sessions",
                "name": "Open sessions",
                "value_template": field_template("sessions"),
                "state_class": "measurement",
            },
            "queued": {
                "platform": "sensor",
                "unique_id": f"{object_id}_queued",
                "name": "Queue",
                "value_template": field_template("queued"),
                "state_class": "measurement",
            },
            "last_final_ms": {
                "platform": "sensor",
                "unique_id": f"{object_id}_last_final_ms",
                "name": "Last final latency",
                # null before the first final: renders None, which Home Assistant shows as unknown
                "value_template": field_template("last_final_ms"),
                "unit_of_measurement": "ms",
                "device_class": "duration",
                "state_class": "measurement",
            },
        },
    }


def satellite_config(device: str, *, heartbeat: bool) -> dict[str, Any]:
    """A satellite's device config: its Transcript event and Last transcript sensor.

    ``heartbeat``: the satellite sends heartbeats, so its availability follows them.
    The payload names no node and no node version, so every node publishes the
    same bytes and they do not overwrite each other with differences.
    """
    object_id = satellite_object_id(device)
    transcripts = device_transcript_topic(device)
    config: dict[str, Any] = {
        "device": {
            "identifiers": [object_id],
            "name": device,
            "manufacturer": MANUFACTURER,
            "model": "satellite",
        },
        "origin": {"name": ORIGIN},
        "state_topic": transcripts,
        "qos": 1,
        "components": {
            "transcript": {
                "platform": "event",
                "unique_id": f"{object_id}_transcript",
                "name": "Transcript",
                "event_types": [TRANSCRIPT_EVENT],
            },
            "last_transcript": {
                "platform": "sensor",
                "unique_id": f"{object_id}_last_transcript",
                "name": "Last transcript",
                "value_template": truncated_template("text", STATE_MAX_CHARS),
                "json_attributes_topic": transcripts,
            },
        },
    }
    if heartbeat:
        config["availability"] = [
            {
                "topic": satellite_status_topic(device),
                "value_template": field_template("state"),  # online | offline
                "payload_available": AVAILABLE,
                "payload_not_available": NOT_AVAILABLE,
            }
        ]
    return config


def encode_config(config: dict[str, Any]) -> bytes:
    """A config as its retained payload, compact.

    Keys stay in the order built: the same config is the same bytes, so a republish
    changes nothing in Home Assistant.
    """
    return json.dumps(config, ensure_ascii=False, separators=(",", ":")).encode()


def retained(topic: str, payload: bytes) -> Outgoing:
    """A retained QoS 1 message; an empty payload clears what the broker holds."""
    return Outgoing(topic, payload, qos=1, retain=True)


def node_removal(prefix: str, node_id: str) -> Outgoing:
    """The empty retained config that removes the node's device from Home Assistant."""
    return retained(discovery_config_topic(prefix, node_object_id(node_id)), b"")


def satellite_removal(prefix: str, device: str) -> list[Outgoing]:
    """Remove a satellite's device, then clear its retained transcript (nothing reads it)."""
    return [
        retained(discovery_config_topic(prefix, satellite_object_id(device)), b""),
        retained(device_transcript_topic(device), b""),
    ]


# -- what to publish when ------------------------------------------------------------


class DeviceDiscovery:
    """The configs one node publishes, each once per process (and per broker session).

    - the node's own, when it is ready (:meth:`publish_node`);
    - a satellite's, at its first online heartbeat (the topics registry calls
      :meth:`satellite`), or at its first accepted final when it sends no
      heartbeats; republished with an availability once a heartbeat shows it sends
      them;
    - removed when its retained heartbeat is cleared (an empty payload on
      ``orac/satellite/<device>/status``).

    Every accepted final is also published on its device's transcript topic.
    """

    def __init__(
        self,
        settings: HomeAssistantSection,
        *,
        node_id: str,
        version: str,
        publish: Callable[[Outgoing], None],
    ) -> None:
        self._prefix = settings.prefix
        self._node_id = node_id
        self._version = version
        self._publish = publish
        self._node_published = False
        self._published: dict[str, bool] = {}  # device -> its config has an availability
        self._heartbeats: set[str] = set()  # devices known to send heartbeats
        self._over_limit_logged = False

    def publish_node(self) -> None:
        """Publish the node's device config (the node is ready)."""
        topic = discovery_config_topic(self._prefix, node_object_id(self._node_id))
        payload = encode_config(node_config(self._node_id, version=self._version))
        self._publish(retained(topic, payload))
        self._node_published = True

    def satellite(self, device: str, state: SatelliteState | None) -> None:
        """A heartbeat of ``device`` arrived (``None``: its retained heartbeat was cleared)."""
        if state is None:
            self._heartbeats.discard(device)
            self._published.pop(device, None)
            for message in satellite_removal(self._prefix, device):
                self._publish(message)
            log.info("home assistant: satellite %s removed (its heartbeat was cleared)", device)
            return
        if device not in self._heartbeats and len(self._heartbeats) < MAX_SATELLITES:
            self._heartbeats.add(device)
        # An offline satellite not yet published this run keeps the config it had (a
        # removed satellite stays offline for good: it must not come back at a restart).
        if state == "online" or device in self._published:
            self._ensure(device)

    def final(self, final: Final) -> None:
        """A final was published: an accepted one becomes its device's transcript event."""
        if not is_transcript_event(final):
            return
        if not self._ensure(final.device):
            return
        topic = device_transcript_topic(final.device)
        self._publish(retained(topic, DeviceTranscript.of(final).encode()))

    def session_lost(self) -> None:
        """The broker lost our session, maybe its retained messages too: publish afresh.

        Satellites are published again as their heartbeats (re-sent on resubscribing)
        and finals arrive.
        """
        self._published.clear()
        self._heartbeats.clear()
        if self._node_published:
            self.publish_node()

    def _ensure(self, device: str) -> bool:
        """Publish the satellite's config unless it is published as it should be."""
        heartbeat = device in self._heartbeats
        current = self._published.get(device)  # None: not published; else: with availability
        if current is not None and (current or not heartbeat):
            return True
        if device not in self._published and len(self._published) >= MAX_SATELLITES:
            if not self._over_limit_logged:
                log.warning(
                    "home assistant: over %d satellites, publishing no more", MAX_SATELLITES
                )
                self._over_limit_logged = True
            return False
        topic = discovery_config_topic(self._prefix, satellite_object_id(device))
        payload = encode_config(satellite_config(device, heartbeat=heartbeat))
        self._publish(retained(topic, payload))
        self._published[device] = heartbeat
        log.info("home assistant: satellite %s published", device)
        return True
