"""The topics registry as one node sees it: topic configs and satellites' heartbeats.

Two kinds of retained message feed it (contract.py):

- ``orac/config/topic/<topic>``: a topic's config, the JSON of
  :class:`~orac_node.config.TopicConfig`, shared by every node; an empty
  payload means it was removed. A config applies from the next utterance of
  its topic (the node asks :meth:`Registry.topic` at each session and final),
  so changing a topic needs no restart. An invalid config is refused and the
  last valid one stays in force: one typo must not switch a topic's
  webhooks or wake words off.
- ``orac/satellite/<device>/status``: a satellite's heartbeat, online with the
  topics it uses, or offline (its Last Will, so a dead satellite shows as
  such).
- ``orac/config/room/<group>``: a room group, the satellites that hear the
  same room (:class:`~orac_node.wire.RoomGroup`); config.yaml's
  ``registry.room_groups`` holds the same, and a retained group of the same
  name replaces it. The pipeline's arbitration asks :meth:`Registry.room_group`.

What applies to a topic, first found wins: its retained config, its entry in
config.yaml's ``registry.topics``, the defaults of :class:`TopicConfig`.

Lazy registration: a topic an online satellite names that has no config at
all gets a default config published (retained), so every topic in use shows
in ``orac-node topics list`` and can be edited there. The node must subscribe
to the configs before the heartbeats (:attr:`Registry.subscriptions` is in
that order): the broker then delivers every retained config before any
heartbeat, and a topic is never registered over a config that exists but has
not arrived yet.

This module does no I/O: messages come in through :meth:`Registry.on_message`
and the one message it sends goes out through the ``publish`` callback, so the
rules are unit-tested exactly. The CLI (topicadmin.py) reads the registry with
the same class.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pydantic import ValidationError

from orac_node.config import RegistrySection
from orac_node.errors import ContractError
from orac_node.mqtt.bus import Outgoing
from orac_node.wire import (
    ROOM_GROUP_FILTER,
    SATELLITE_STATUS_FILTER,
    TOPIC_CONFIG_FILTER,
    RoomGroup,
    SatelliteState,
    SatelliteStatus,
    TopicConfig,
    is_valid_name,
    room_group_topic,
    satellite_status_topic,
    topic_config_topic,
)

log = logging.getLogger(__name__)

MAX_TOPICS = 10_000
"""Retained topic configs held at once. A home has tens of topics; the bound is
what a broker full of junk configs (a buggy script, a hostile client) can cost
a node: about 10 MB. Beyond it new topics are refused (counted in
:attr:`Registry.invalid`) rather than old ones forgotten, since forgetting a
config in force would silently change what a topic does."""
MAX_DEVICES = 10_000
"""Satellites remembered at once (a home has a handful). Beyond it the device
heard from least recently is forgotten: a satellite that was renamed or retired
long ago is the one worth losing."""
MAX_ROOM_GROUPS = 1_000
"""Retained room groups held at once: a home has a few rooms; the bound caps
what junk on the broker can cost, as :data:`MAX_TOPICS` does."""
MAX_TOPICS_PER_DEVICE = 64
"""Topics one heartbeat may name: a satellite uses one or a few, and
:meth:`Registry.topics` walks every device's list."""
MAX_CONFIG_BYTES = 65_536
"""Largest topic config accepted: the 4,000-character prompt, dozens of wake
words and webhooks fit many times over; parsing megabytes on the node's event
loop for one message does not."""
_LOGGED_REFUSALS = 100
"""Refusals logged one by one; after that only every 1,000th, so a client
sending junk in a loop cannot flood the journal."""

_DEFAULT = TopicConfig()
REGISTERED = b"{}"
"""What lazy registration publishes: a config that sets nothing (see Registry.topic)."""


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the registry knows of one satellite, from its latest heartbeat."""

    device: str
    state: SatelliteState
    topics: tuple[str, ...]
    last_seen: float
    """Unix time the satellite was last known alive: the latest heartbeat's ``ts``
    (capped at the receiver's clock), never moved back by a Last Will, whose
    ``ts`` was fixed when the satellite connected."""


def validation_summary(exc: ValidationError) -> str:
    """Where each error is and what is wrong, without the input.

    pydantic's own message quotes the input, and a topic config holds webhook
    secrets: this text goes to the journal and to terminals.
    """
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '(config)'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    )


def _parse(topic: str) -> tuple[str, str] | None:
    """``("config", topic)``, ``("room", group)`` or ``("satellite", device)``; None for others."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "orac":
        return None
    if parts[1:3] == ["config", "topic"]:
        return "config", parts[3]
    if parts[1:3] == ["config", "room"]:
        return "room", parts[3]
    if parts[1] == "satellite" and parts[3] == "status":
        return "satellite", parts[2]
    return None


class Registry:
    """Topic configs and satellite heartbeats, applied as they arrive."""

    def __init__(
        self,
        settings: RegistrySection,
        *,
        publish: Callable[[Outgoing], None] | None = None,
        log_refusals: bool = True,
        on_heartbeat: Callable[[str, SatelliteState | None], None] | None = None,
    ) -> None:
        self.subscriptions = [TOPIC_CONFIG_FILTER, ROOM_GROUP_FILTER, SATELLITE_STATUS_FILTER]
        """Subscribe in this order: configs first (see the module docstring)."""
        self._rooms_yaml = dict(settings.room_groups)
        self._rooms_retained: dict[str, RoomGroup] = {}
        self._device_room: dict[str, str] = {}
        self._index_rooms()
        self._yaml = dict(settings.topics)
        self._register = settings.register_topics and publish is not None
        self._publish = publish
        self._log_refusals = log_refusals  # the CLI shows refusals itself
        # each valid heartbeat's device and state; None: its retained heartbeat was
        # cleared (Home Assistant discovery shows and removes satellites by these)
        self._on_heartbeat_seen = on_heartbeat
        self._retained: dict[str, TopicConfig] = {}
        self._refused: dict[str, str] = {}  # topic → why its latest retained config was refused
        self._devices: dict[str, DeviceInfo] = {}
        self._registered: set[str] = set()
        self.invalid = 0
        self.changes = 0

    # -- queries ----------------------------------------------------------------

    def handles(self, topic: str) -> bool:
        """Whether a message on ``topic`` is for the registry."""
        return _parse(topic) is not None

    def topic(self, name: str) -> TopicConfig:
        """The config in force for topic ``name``: retained > config.yaml > defaults.

        A retained ``{}`` (what lazy registration publishes) sets nothing, so it
        does not hide config.yaml's entry: a node that registered a topic it did
        not know must not switch off another node's configured webhooks.
        """
        config = self._retained.get(name)
        if config is not None and config.model_fields_set:
            return config
        return self._yaml.get(name) or config or _DEFAULT

    def topics(self) -> dict[str, TopicConfig]:
        """Every known topic (config.yaml, retained, named by a heartbeat), sorted by name."""
        names = set(self._yaml) | set(self._retained)
        for info in self._devices.values():
            names.update(info.topics)
        return {name: self.topic(name) for name in sorted(names)}

    def room_group(self, device: str) -> tuple[str, RoomGroup] | None:
        """The room group ``device`` belongs to, with its name; None for a device in none."""
        name = self._device_room.get(device)
        if name is None:
            return None
        return name, self.room_groups()[name]

    def room_groups(self) -> dict[str, RoomGroup]:
        """Every room group in force (retained over config.yaml's), sorted by name."""
        groups = self._rooms_yaml | self._rooms_retained
        return dict(sorted(groups.items()))

    def _index_rooms(self) -> None:
        """Device → group; a device listed by two groups belongs to the first by name."""
        index: dict[str, str] = {}
        for name, group in self.room_groups().items():
            for device in group.devices:
                index.setdefault(device, name)
        self._device_room = index

    def devices(self) -> dict[str, DeviceInfo]:
        """Every satellite heard from, by device name."""
        return dict(sorted(self._devices.items()))

    @property
    def retained(self) -> Mapping[str, TopicConfig]:
        """The valid retained configs only (what ``orac-node topics`` manages)."""
        return MappingProxyType(self._retained)

    @property
    def refused(self) -> Mapping[str, str]:
        """Topics whose latest retained config was refused, with why (no input quoted)."""
        return MappingProxyType(self._refused)

    def forget_retained(self) -> None:
        """Drop everything learnt from retained messages (the broker lost our session).

        The broker re-sends what it still holds when the node subscribes again; a
        config or heartbeat it no longer holds (a broker restarted without
        persistence, a removal missed while away) must not live on in this node.
        """
        self._retained.clear()
        self._refused.clear()
        self._devices.clear()
        self._registered.clear()
        self._rooms_retained.clear()
        self._index_rooms()
        self.changes += 1

    # -- input ------------------------------------------------------------------

    def on_message(self, topic: str, payload: bytes, *, now: float | None = None) -> None:
        """Apply one message from :attr:`subscriptions`; bad input is logged and counted.

        Never raises for what a client sent: the node's intake must go on.
        """
        parsed = _parse(topic)
        if parsed is None:
            return
        kind, name = parsed
        if not is_valid_name(name):
            self._refuse(topic, "not a valid topic or device name")
        elif kind == "config":
            self._on_config(name, payload)
        elif kind == "room":
            self._on_room(name, payload)
        else:
            self._on_heartbeat(name, payload, time.time() if now is None else now)

    def _on_config(self, name: str, payload: bytes) -> None:
        topic = topic_config_topic(name)
        if not payload:
            self._refused.pop(name, None)
            if self._retained.pop(name, None) is not None:
                self.changes += 1
                log.info("topic %s: retained config removed; %s applies", name, self._source(name))
            # An admin removed it while we watched: do not put a default back at
            # the next heartbeat (a node started later will, if a satellite still uses it).
            self._registered.add(name)
            return
        if len(payload) > MAX_CONFIG_BYTES:
            self._refuse(topic, f"config of {len(payload)} bytes (limit {MAX_CONFIG_BYTES})", name)
            return
        try:
            config = TopicConfig.model_validate_json(payload)
        except ValidationError as exc:
            self._refuse(topic, validation_summary(exc), name)
            return
        if name not in self._retained and len(self._retained) >= MAX_TOPICS:
            self._refuse(topic, f"over {MAX_TOPICS} topic configs", name)
            return
        self._refused.pop(name, None)
        current = self._retained.get(name)
        # A re-delivery on reconnect changes nothing; {} and its explicit defaults differ.
        if current != config or (current and current.model_fields_set != config.model_fields_set):
            self._retained[name] = config
            self.changes += 1
            log.info("topic %s: retained config applied", name)

    def _on_room(self, name: str, payload: bytes) -> None:
        topic = room_group_topic(name)
        if not payload:
            if self._rooms_retained.pop(name, None) is not None:
                self._index_rooms()
                log.info("room group %s: retained config removed", name)
            return
        if len(payload) > MAX_CONFIG_BYTES:
            self._refuse(topic, f"config of {len(payload)} bytes (limit {MAX_CONFIG_BYTES})")
            return
        try:
            group = RoomGroup.model_validate_json(payload)
        except ValidationError as exc:
            self._refuse(topic, validation_summary(exc))
            return
        if name not in self._rooms_retained and len(self._rooms_retained) >= MAX_ROOM_GROUPS:
            self._refuse(topic, f"over {MAX_ROOM_GROUPS} room groups")
            return
        if self._rooms_retained.get(name) != group:
            self._rooms_retained[name] = group
            self._index_rooms()
            log.info("room group %s: %s", name, ", ".join(group.devices))

    def _on_heartbeat(self, device: str, payload: bytes, now: float) -> None:
        topic = satellite_status_topic(device)
        if not payload:  # the retained heartbeat was cleared: forget the satellite
            self._devices.pop(device, None)
            if self._on_heartbeat_seen is not None:
                self._on_heartbeat_seen(device, None)
            return
        try:
            status = SatelliteStatus.decode(payload)
        except ContractError as exc:
            self._refuse(topic, exc.message)
            return
        ts = status.ts
        if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
            self._refuse(topic, "ts must be a finite number")
        elif status.device != device:
            self._refuse(topic, "device field differs from the topic's device")
        elif len(status.topics) > MAX_TOPICS_PER_DEVICE:
            self._refuse(topic, f"over {MAX_TOPICS_PER_DEVICE} topics")
        else:
            self._record(status, now)

    def _record(self, status: SatelliteStatus, now: float) -> None:
        previous = self._devices.pop(status.device, None)
        # A satellite without a clock sends ts 0; one whose clock runs ahead is capped.
        seen = min(float(status.ts), now) if status.ts > 0 else now
        if previous is not None:
            seen = max(seen, previous.last_seen)
        elif len(self._devices) >= MAX_DEVICES:
            oldest = min(self._devices.values(), key=lambda info: info.last_seen)
            del self._devices[oldest.device]
        topics = tuple(dict.fromkeys(status.topics))
        # Re-inserted last: dict order is also the order devices were heard from.
        self._devices[status.device] = DeviceInfo(status.device, status.state, topics, seen)
        if previous is None or previous.state != status.state:
            log.info("satellite %s is %s (topics: %s)", status.device, status.state, topics)
        if self._on_heartbeat_seen is not None:
            self._on_heartbeat_seen(status.device, status.state)
        if status.state == "online":
            for name in topics:
                self._maybe_register(name)

    def _maybe_register(self, name: str) -> None:
        """Publish a default config for a topic in use that has none (once per process)."""
        if (
            not self._register
            or self._publish is None
            or name in self._registered
            or name in self._retained
            or name in self._yaml
            or name in self._refused  # a config exists, only an invalid one
            or len(self._registered) >= MAX_TOPICS
        ):
            return
        self._registered.add(name)
        payload = REGISTERED  # sets nothing: every node's config.yaml entry still applies
        self._publish(Outgoing(topic_config_topic(name), payload, qos=1, retain=True))
        log.info("topic %s: registered with the default config", name)

    def _source(self, name: str) -> str:
        return "config.yaml's registry.topics" if name in self._yaml else "the defaults"

    def _refuse(self, topic: str, why: str, config_of: str | None = None) -> None:
        """Count and log a refused message by topic and reason, never its payload."""
        self.invalid += 1
        if config_of is not None and (
            config_of in self._refused or len(self._refused) < MAX_TOPICS
        ):
            self._refused[config_of] = why
        if self._log_refusals and (self.invalid <= _LOGGED_REFUSALS or self.invalid % 1000 == 0):
            kept = " (the previous config stays in force)" if config_of in self._retained else ""
            log.warning("refused %s: %s%s [%d refused]", topic, why, kept, self.invalid)
