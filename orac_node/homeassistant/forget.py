"""What ``orac-node homeassistant`` does: remove a node or a satellite from Home Assistant.

With ``homeassistant.discovery`` on, nodes publish retained device configs
(homeassistant/discovery.py). A node that stops is not gone: its entities go
unavailable through its status and come back when it starts again. A node
retired for good, or a satellite taken away, is removed here: the empty
retained config Home Assistant takes as "remove this device", and the retained
state its entities read (the node's status, the satellite's transcript).

Each operation returns an :class:`~orac_node.ops.topics.Outcome` whose code is
the exit code: 0 done; 1 refused because the node or satellite is still
running (it would only come back; ``force`` removes it anyway); 2 invalid
input, or the broker could not be reached or did not take the removal.
"""

from __future__ import annotations

import re

import aiomqtt

from orac_node.client.link import payload_bytes
from orac_node.config.homeassistant import DISCOVERY_PREFIX_PATTERN
from orac_node.errors import ConfigError, ContractError
from orac_node.homeassistant.discovery import node_removal, satellite_removal
from orac_node.mqtt.bus import Outgoing
from orac_node.ops.topics import CONFLICT, FAILED, OK, Outcome, publish_retained, until_quiet
from orac_node.wire import (
    NodeStatus,
    SatelliteStatus,
    is_valid_name,
    satellite_status_topic,
    status_topic,
)


def check_input(name: str, prefix: str) -> None:
    """Refuse a node/device name or prefix no node would publish (:class:`ConfigError`)."""
    if not is_valid_name(name):
        raise ConfigError(f"invalid name {name!r}: one topic level of [A-Za-z0-9_.-]")
    if not re.fullmatch(DISCOVERY_PREFIX_PATTERN, prefix):
        raise ConfigError(f"invalid discovery prefix {prefix!r}: topic levels without + # or //")


async def _retained_state(client: aiomqtt.Client, topic: str, timeout_s: float) -> str | None:
    """The ``state`` of a retained node status or satellite heartbeat; None if there is none."""
    await client.subscribe(topic, qos=1)
    state = None
    for message in await until_quiet(client, timeout_s):
        if not message.topic.matches(topic) or not (payload := payload_bytes(message)):
            continue
        try:
            decoded = (NodeStatus if topic.startswith("orac/node/") else SatelliteStatus).decode(
                payload
            )
        except ContractError:
            continue  # not a status any node would act on: nothing keeps it alive
        state = decoded.state
    return state


async def _remove(
    client: aiomqtt.Client, config: Outgoing, others: list[str], timeout_s: float
) -> bool:
    """Clear the config (confirmed: the broker passes the empty payload back), then ``others``."""
    await client.subscribe(config.topic, qos=1)
    if not await publish_retained(client, config.topic, b"", timeout_s):
        return False
    for topic in others:
        await client.publish(topic, b"", qos=1, retain=True)
    return True


def _not_taken(topic: str, timeout_s: float, prefix: str) -> Outcome:
    return Outcome(
        FAILED,
        f"the broker did not pass the removal on {topic} back within {timeout_s:g} s:"
        f" is this user allowed to read and write {prefix}/#?",
    )


async def forget_node(
    client: aiomqtt.Client, node_id: str, prefix: str, timeout_s: float, *, force: bool = False
) -> Outcome:
    """Remove a retired node's device from Home Assistant and clear its retained status."""
    check_input(node_id, prefix)
    state = await _retained_state(client, status_topic(node_id), timeout_s)
    if state not in (None, "offline") and not force:
        return Outcome(
            CONFLICT,
            f"node {node_id} is {state}: stop it first (a running node publishes its device"
            " again when it restarts), or use --force",
        )
    config = node_removal(prefix, node_id)
    if not await _remove(client, config, [status_topic(node_id)], timeout_s):
        return _not_taken(config.topic, timeout_s, prefix)
    data = {"node": node_id, "removed": config.topic}
    return Outcome(OK, f"removed node {node_id} from Home Assistant ({config.topic})", data)


async def forget_satellite(
    client: aiomqtt.Client, device: str, prefix: str, timeout_s: float, *, force: bool = False
) -> Outcome:
    """Remove a satellite's device from Home Assistant and clear its retained transcript.

    Its retained heartbeat is left as it is (only the satellite may write it under the
    shipped ACL): an ``offline`` one does not bring the device back; the satellite
    coming online again does, as it should.
    """
    check_input(device, prefix)
    state = await _retained_state(client, satellite_status_topic(device), timeout_s)
    if state == "online" and not force:
        return Outcome(
            CONFLICT,
            f"satellite {device} is online: stop it first (nodes publish its device again"
            " when they restart), or use --force",
        )
    config, transcript = satellite_removal(prefix, device)
    if not await _remove(client, config, [transcript.topic], timeout_s):
        return _not_taken(config.topic, timeout_s, prefix)
    data = {"device": device, "removed": config.topic}
    return Outcome(OK, f"removed satellite {device} from Home Assistant ({config.topic})", data)
