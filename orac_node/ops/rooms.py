"""``orac-node rooms``: the room groups in the registry (retained orac/config/room/<group>).

A room group names the satellites that hear the same room; the node
arbitrates their finals (pipeline/arbitration.py). Groups are retained on the
broker like topic configs, so every node applies the same ones and they
survive restarts; this module reads and writes them with the same rules as
``orac-node topics`` (ops/topics.py): an edit is done once the broker passes
it back.
"""

from __future__ import annotations

import aiomqtt
from pydantic import ValidationError

from orac_node.consumers.registry import validation_summary
from orac_node.errors import ConfigError
from orac_node.ops.topics import (
    CONFLICT,
    OK,
    Outcome,
    check_name,
    not_taken,
    publish_retained,
    read_registry,
)
from orac_node.wire import RoomGroup, room_group_topic


def _group(devices: list[str], window_ms: int | None, wait_ms: int | None) -> RoomGroup:
    fields: dict[str, object] = {"devices": devices}
    if window_ms is not None:
        fields["window_ms"] = window_ms
    if wait_ms is not None:
        fields["wait_ms"] = wait_ms
    try:
        return RoomGroup.model_validate(fields)
    except ValidationError as exc:
        raise ConfigError(validation_summary(exc)) from None


async def list_rooms(client: aiomqtt.Client, timeout_s: float) -> Outcome:
    """Every retained room group, its satellites and their last heartbeat's state."""
    registry = await read_registry(client, timeout_s)
    devices = registry.devices()
    rooms = {
        name: {
            **group.model_dump(),
            "online": [d for d in group.devices if d in devices and devices[d].state == "online"],
        }
        for name, group in registry.room_groups().items()
    }
    if not rooms:
        return Outcome(OK, "no room groups (orac-node rooms set NAME DEVICE...)", {"rooms": {}})
    lines = [
        f"{name}: {', '.join(room['devices'])}  (window {room['window_ms']} ms,"
        f" wait {room['wait_ms']} ms; online: {', '.join(room['online']) or 'none'})"
        for name, room in rooms.items()
    ]
    return Outcome(OK, "\n".join(lines), {"rooms": rooms})


async def set_room(
    client: aiomqtt.Client,
    name: str,
    devices: list[str],
    *,
    window_ms: int | None,
    wait_ms: int | None,
    timeout_s: float,
) -> Outcome:
    """Publish room group ``name`` (retained), replacing any group of that name."""
    check_name(name)
    group = _group(devices, window_ms, wait_ms)
    topic = room_group_topic(name)
    await client.subscribe(topic, qos=1)
    if not await publish_retained(client, topic, group.model_dump_json().encode(), timeout_s):
        return not_taken(room_group_topic(name), timeout_s)
    return Outcome(
        OK, f"room group {name}: {', '.join(group.devices)}", {"room": name, **group.model_dump()}
    )


async def remove_room(client: aiomqtt.Client, name: str, timeout_s: float) -> Outcome:
    """Clear room group ``name``'s retained config (config.yaml's, if any, applies again)."""
    check_name(name)
    registry = await read_registry(client, timeout_s)
    if name not in registry.room_groups():
        return Outcome(CONFLICT, f"room group {name!r} has no retained config to remove")
    if not await publish_retained(client, room_group_topic(name), b"", timeout_s):
        return not_taken(room_group_topic(name), timeout_s)
    return Outcome(OK, f"removed room group {name}", {"room": name, "removed": True})
