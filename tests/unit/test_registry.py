"""The topics registry's rules (registry.py) and the admin's config edits (topicadmin.py).

Pure logic: messages go in as (topic, payload), the one message the registry
sends comes out through its publish callback. The broker round trips are in
tests/integration/test_topics.py.
"""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orac_node.config import RegistrySection
from orac_node.consumers import registry as registry_module
from orac_node.consumers.registry import MAX_DEVICES, MAX_TOPICS, MAX_TOPICS_PER_DEVICE, Registry
from orac_node.errors import ConfigError
from orac_node.mqtt.bus import Outgoing
from orac_node.ops.topics import MASK, ConfigEdit, apply_edit, masked, parse_config_json
from orac_node.wire import (
    RoomGroup,
    SatelliteStatus,
    TopicConfig,
    WebhookTarget,
    room_group_topic,
    satellite_status_topic,
    topic_config_topic,
)

SECRET = "hunter2-webhook-key"
NOW = 1_700_000_000.0


def _config(**fields: object) -> bytes:
    return TopicConfig.model_validate(fields).model_dump_json().encode()


def _heartbeat(device: str, state: str, topics: list[str], ts: float = NOW) -> bytes:
    return SatelliteStatus(device, state, topics, ts).encode()  # type: ignore[arg-type]


def _registry(
    yaml: dict[str, TopicConfig] | None = None, *, register: bool = True
) -> tuple[Registry, list[Outgoing]]:
    sent: list[Outgoing] = []
    settings = RegistrySection(topics=yaml or {}, register_topics=register)
    return Registry(settings, publish=sent.append), sent


# -- topic configs --------------------------------------------------------------------


def test_subscriptions_put_configs_before_heartbeats() -> None:
    registry, _ = _registry()
    assert registry.subscriptions == [
        "orac/config/topic/+",
        "orac/config/room/+",
        "orac/satellite/+/status",
    ]
    assert registry.handles("orac/config/topic/kitchen")
    assert registry.handles("orac/config/room/kitchen")
    assert registry.handles("orac/satellite/pi-1/status")
    for other in (
        "orac/config/topic",
        "orac/config/topic/a/b",
        "orac/config/rooms/kitchen",
        "orac/satellite/pi-1/other",
        "orac/node/n1/status",
        "audio/kitchen/chunk",
        "transcript/kitchen",
    ):
        assert not registry.handles(other), other


def test_retained_beats_yaml_beats_defaults() -> None:
    registry, _ = _registry({"kitchen": TopicConfig(model="small.en")})
    assert registry.topic("hall") == TopicConfig()
    assert registry.topic("kitchen").model == "small.en"
    registry.on_message(topic_config_topic("kitchen"), _config(model="base.en", language="en"))
    assert registry.topic("kitchen") == TopicConfig(model="base.en", language="en")
    registry.on_message(topic_config_topic("hall"), _config(enabled=False))
    assert registry.topic("hall").enabled is False
    assert registry.changes == 2 and registry.invalid == 0


def test_removal_falls_back_to_yaml_then_defaults() -> None:
    registry, _ = _registry({"kitchen": TopicConfig(model="small.en")})
    for name in ("kitchen", "hall"):
        registry.on_message(topic_config_topic(name), _config(prompt="Alexa"))
    registry.on_message(topic_config_topic("kitchen"), b"")
    registry.on_message(topic_config_topic("hall"), b"")
    assert registry.topic("kitchen") == TopicConfig(model="small.en")
    assert registry.topic("hall") == TopicConfig()
    assert registry.changes == 4
    registry.on_message(topic_config_topic("garage"), b"")  # nothing to remove: no change
    assert registry.changes == 4 and registry.invalid == 0


def test_a_redelivered_config_is_not_a_change() -> None:
    registry, _ = _registry()
    for _ in range(3):  # the broker sends retained configs again after each reconnect
        registry.on_message(topic_config_topic("kitchen"), _config(prompt="lights"))
    assert registry.changes == 1


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b'{"enabled": "maybe"}',
        b'{"unknown_key": 1}',  # extra="forbid": a typo fails loudly
        b'{"wake_words": [""]}',
        b'{"webhooks": [{"url": "ftp://example.com"}]}',
        b"\xff\xfe",
        b"[" * 100_000,
        b'{"prompt": "' + b"x" * 70_000 + b'"}',  # over MAX_CONFIG_BYTES
    ],
)
def test_an_invalid_config_keeps_the_previous_one(payload: bytes) -> None:
    registry, _ = _registry()
    good = _config(webhooks=[{"url": "https://example.com/hook", "secret": SECRET}])
    registry.on_message(topic_config_topic("kitchen"), good)
    registry.on_message(topic_config_topic("kitchen"), payload)
    assert registry.topic("kitchen") == TopicConfig.model_validate_json(good)
    assert registry.invalid == 1 and registry.changes == 1
    assert "kitchen" in registry.refused
    registry.on_message(topic_config_topic("kitchen"), good)  # fixed: no longer refused
    assert "kitchen" not in registry.refused


def test_a_refusal_is_logged_by_topic_and_reason_never_the_payload(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry, _ = _registry()
    payload = json.dumps(
        {"webhooks": [{"url": "https://example.com/hook", "secret": SECRET}], "enabld": True}
    ).encode()
    with caplog.at_level(logging.WARNING, logger="orac_node.consumers.registry"):
        registry.on_message(topic_config_topic("kitchen"), payload)
    assert registry.invalid == 1
    (record,) = caplog.records
    assert "orac/config/topic/kitchen" in record.getMessage()
    assert "enabld" in record.getMessage()  # the field that is wrong...
    assert SECRET not in caplog.text and "example.com" not in caplog.text  # ...not its values
    assert SECRET not in registry.refused["kitchen"]


def test_an_invalid_topic_level_is_refused() -> None:
    registry, _ = _registry()
    registry.on_message("orac/config/topic/bad name", _config())
    registry.on_message("orac/satellite/bad name/status", _heartbeat("bad name", "online", []))
    assert registry.invalid == 2 and registry.topics() == {} and registry.devices() == {}


def test_a_quiet_registry_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    quiet = Registry(RegistrySection(), log_refusals=False)
    with caplog.at_level(logging.WARNING, logger="orac_node.consumers.registry"):
        quiet.on_message(topic_config_topic("kitchen"), b"{")
    assert quiet.invalid == 1 and not caplog.records


# -- heartbeats ------------------------------------------------------------------------


def test_heartbeats_record_state_topics_and_last_seen() -> None:
    registry, _ = _registry()
    topic = satellite_status_topic("pi-1")
    registry.on_message(topic, _heartbeat("pi-1", "online", ["kitchen", "timers"], NOW), now=NOW)
    info = registry.devices()["pi-1"]
    assert (info.state, info.topics, info.last_seen) == ("online", ("kitchen", "timers"), NOW)
    # The Last Will was written when the satellite connected: its older ts
    # must not move last_seen back.
    registry.on_message(topic, _heartbeat("pi-1", "offline", ["kitchen"], NOW - 600), now=NOW + 5)
    info = registry.devices()["pi-1"]
    assert (info.state, info.topics, info.last_seen) == ("offline", ("kitchen",), NOW)
    assert set(registry.topics()) == {"kitchen"}


def test_last_seen_is_capped_at_our_clock_and_defaults_to_it() -> None:
    registry, _ = _registry()
    registry.on_message(
        satellite_status_topic("ahead"), _heartbeat("ahead", "online", [], NOW + 3600), now=NOW
    )
    registry.on_message(
        satellite_status_topic("no-clock"), _heartbeat("no-clock", "online", [], 0), now=NOW
    )
    assert {d.last_seen for d in registry.devices().values()} == {NOW}


def test_a_heartbeat_for_another_device_is_refused() -> None:
    registry, _ = _registry()
    registry.on_message(satellite_status_topic("pi-1"), _heartbeat("pi-2", "online", ["kitchen"]))
    assert registry.invalid == 1 and registry.devices() == {}


@pytest.mark.parametrize(
    "payload",
    [
        b"{",
        b'{"device": "pi-1", "state": "asleep", "topics": [], "ts": 1}',
        b'{"device": "pi-1", "state": "online", "topics": ["a b"], "ts": 1}',
        b'{"device": "pi-1", "state": "online", "topics": [], "ts": "now"}',
        b'{"device": "pi-1", "state": "online", "topics": [], "ts": true}',
        b'{"device": "pi-1", "state": "online", "topics": []}',
        b'{"device": "pi-1", "state": "online", "topics": "kitchen", "ts": 1}',
    ],
)
def test_a_malformed_heartbeat_is_refused(payload: bytes) -> None:
    registry, sent = _registry()
    registry.on_message(satellite_status_topic("pi-1"), payload)
    assert registry.invalid == 1 and registry.devices() == {} and sent == []


def test_an_empty_heartbeat_forgets_the_device() -> None:
    registry, _ = _registry()
    registry.on_message(satellite_status_topic("pi-1"), _heartbeat("pi-1", "online", ["a"]))
    registry.on_message(satellite_status_topic("pi-1"), b"")
    assert registry.devices() == {} and registry.topics() == {}


def test_topics_lists_yaml_retained_and_announced_topics() -> None:
    registry, _ = _registry({"yaml-topic": TopicConfig()}, register=False)
    registry.on_message(topic_config_topic("retained-topic"), _config(language="de"))
    registry.on_message(satellite_status_topic("pi"), _heartbeat("pi", "online", ["used"]))
    topics = registry.topics()
    assert list(topics) == ["retained-topic", "used", "yaml-topic"]
    assert topics["retained-topic"].language == "de" and topics["used"] == TopicConfig()


# -- lazy registration ------------------------------------------------------------------


def test_a_topic_in_use_without_config_is_registered_once() -> None:
    registry, sent = _registry({"yaml-topic": TopicConfig()})
    registry.on_message(topic_config_topic("retained-topic"), _config())
    for device in ("pi-1", "pi-2"):
        for _ in range(2):
            registry.on_message(
                satellite_status_topic(device),
                _heartbeat(device, "online", ["new", "yaml-topic", "retained-topic"]),
            )
    assert len(sent) == 1
    (message,) = sent
    assert (message.topic, message.qos, message.retain) == (topic_config_topic("new"), 1, True)
    assert message.payload == b"{}"  # sets nothing
    assert TopicConfig.model_validate_json(message.payload) == TopicConfig()


def test_a_registration_does_not_hide_a_config_yaml_entry_but_a_real_config_does() -> None:
    mine = TopicConfig(wake_words=["computer"])
    registry, _ = _registry({"kitchen": mine})
    registry.on_message(topic_config_topic("kitchen"), b"{}")  # another node registered it
    assert registry.topic("kitchen") == mine
    assert "kitchen" in registry.retained  # still listed by orac-node topics
    registry.on_message(topic_config_topic("kitchen"), b'{"enabled": true}')  # an admin set it
    assert registry.topic("kitchen") == TopicConfig()
    registry.on_message(topic_config_topic("other"), b"{}")
    assert registry.topic("other") == TopicConfig()


@pytest.mark.parametrize("case", ["setting off", "no publisher", "offline", "removed", "refused"])
def test_no_registration(case: str) -> None:
    registry, sent = _registry(register=case != "setting off")
    if case == "no publisher":
        registry = Registry(RegistrySection())
    if case == "removed":  # an admin removed it while we watched: do not undo that
        registry.on_message(topic_config_topic("t"), _config())
        registry.on_message(topic_config_topic("t"), b"")
    if case == "refused":  # a config exists, just an invalid one
        registry.on_message(topic_config_topic("t"), b"{")
    state = "offline" if case == "offline" else "online"
    registry.on_message(satellite_status_topic("pi"), _heartbeat("pi", state, ["t"]))
    assert sent == []


# -- bounds ------------------------------------------------------------------------------


def test_retained_configs_are_bounded_and_configs_in_force_stay() -> None:
    registry, _ = _registry()
    payload = _config()
    for i in range(MAX_TOPICS):
        registry.on_message(topic_config_topic(f"t{i}"), payload)
    registry.on_message(topic_config_topic("one-too-many"), payload)
    assert registry.invalid == 1 and registry.topic("one-too-many") == TopicConfig()
    assert len(registry.retained) == MAX_TOPICS
    registry.on_message(topic_config_topic("t0"), _config(prompt="still changeable"))
    assert registry.topic("t0").prompt == "still changeable"


def test_devices_are_bounded_forgetting_the_least_recently_seen() -> None:
    registry, _ = _registry(register=False)
    for i in range(MAX_DEVICES + 1):
        device = f"pi-{i}"
        registry.on_message(
            satellite_status_topic(device),
            _heartbeat(device, "online", ["t"], NOW + i),
            now=NOW + i,
        )
    devices = registry.devices()
    assert len(devices) == MAX_DEVICES and "pi-0" not in devices and f"pi-{MAX_DEVICES}" in devices


def test_a_heartbeat_naming_too_many_topics_is_refused() -> None:
    registry, _ = _registry()
    topics = [f"t{i}" for i in range(MAX_TOPICS_PER_DEVICE + 1)]
    registry.on_message(satellite_status_topic("pi"), _heartbeat("pi", "online", topics))
    assert registry.invalid == 1 and registry.devices() == {}


def test_registrations_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "MAX_TOPICS", 3)
    registry, sent = _registry()
    for i in range(3):
        topics = [f"d{i}-t{j}" for j in range(2)]
        registry.on_message(satellite_status_topic(f"d{i}"), _heartbeat(f"d{i}", "online", topics))
    assert len(sent) == 3


@given(
    level=st.sampled_from(["orac/config/topic/x", "orac/satellite/x/status"]),
    payload=st.binary(max_size=300)
    | st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=12,
    ).map(lambda value: json.dumps(value).encode()),
)
def test_no_payload_makes_it_raise(level: str, payload: bytes) -> None:
    registry, _ = _registry()
    registry.on_message(level, payload)
    assert registry.invalid + registry.changes + len(registry.devices()) <= 1


# -- the admin's config edits (topicadmin) -----------------------------------------------


def test_an_edit_merges_into_the_base() -> None:
    base = TopicConfig(model="base.en", wake_words=["computer"], prompt="rooms")
    edited = apply_edit(base, ConfigEdit(enabled=False, language="en", wake_words=["jarvis"]))
    assert edited == TopicConfig(
        enabled=False, model="base.en", language="en", wake_words=["jarvis"], prompt="rooms"
    )
    assert apply_edit(edited, ConfigEdit(model="", wake_words=[])).model is None
    assert apply_edit(edited, ConfigEdit(model="", wake_words=[])).wake_words == []


def test_a_secret_applies_to_the_given_webhooks_or_the_existing_ones() -> None:
    edit = ConfigEdit(webhooks=["https://a.example/h", "https://b.example/h"], secret=SECRET)
    config = apply_edit(TopicConfig(), edit)
    assert [hook.secret for hook in config.webhooks] == [SECRET, SECRET]
    rotated = apply_edit(config, ConfigEdit(secret="new-key"))
    assert [hook.secret for hook in rotated.webhooks] == ["new-key", "new-key"]
    assert apply_edit(config, ConfigEdit(secret="")).webhooks[0].secret is None
    with pytest.raises(ConfigError, match="--secret needs --webhook"):
        apply_edit(TopicConfig(), ConfigEdit(secret=SECRET))


def test_a_whole_config_is_the_base_of_the_other_options() -> None:
    base = parse_config_json('{"prompt": "lights", "enabled": false}')
    config = apply_edit(TopicConfig(model="x"), ConfigEdit(base=base, enabled=True))
    assert config == TopicConfig(prompt="lights", enabled=True)


def test_invalid_input_names_the_field_not_the_value() -> None:
    with pytest.raises(ConfigError) as caught:
        apply_edit(TopicConfig(), ConfigEdit(webhooks=[f"ftp://{SECRET}.example"]))
    assert "webhooks.0.url" in str(caught.value) and SECRET not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        parse_config_json(json.dumps({"webhooks": [{"url": "x", "secret": SECRET}]}))
    assert SECRET not in str(caught.value)
    with pytest.raises(ConfigError, match="Invalid JSON"):
        parse_config_json(f"{{{SECRET}")


def test_masked_hides_every_secret() -> None:
    config = TopicConfig(
        webhooks=[
            WebhookTarget(url="https://a.example/h", secret=SECRET),
            WebhookTarget(url="https://b.example/h"),
        ]
    )
    data = masked(config)
    assert [hook["secret"] for hook in data["webhooks"]] == [MASK, None]
    assert SECRET not in json.dumps(data)
    assert config.webhooks[0].secret == SECRET  # the config itself is untouched


def test_forgetting_retained_state_keeps_config_yaml() -> None:
    mine = TopicConfig(prompt="Kitchen.")
    registry, _ = _registry({"kitchen": mine})
    registry.on_message(topic_config_topic("kitchen"), _config(prompt="Retained."))
    registry.on_message(satellite_status_topic("pi"), _heartbeat("pi", "online", ["kitchen"]))
    registry.forget_retained()  # the broker lost the node's session
    assert registry.topic("kitchen") == mine
    assert registry.retained == {} and registry.devices() == {}


# -- room groups --------------------------------------------------------------


def _room(*devices: str, **fields: object) -> bytes:
    return RoomGroup.model_validate({"devices": list(devices), **fields}).model_dump_json().encode()


def test_room_groups_from_yaml_then_retained_then_removed() -> None:
    yaml_group = RoomGroup(devices=["k1", "k2"])
    registry = Registry(RegistrySection(room_groups={"kitchen": yaml_group}))
    assert registry.room_group("k1") == ("kitchen", yaml_group)
    assert registry.room_group("hall") is None
    registry.on_message(room_group_topic("kitchen"), _room("k1", "k3", window_ms=500))
    name, group = registry.room_group("k3") or ("", yaml_group)
    assert name == "kitchen" and group.window_ms == 500
    assert registry.room_group("k2") is None  # the retained group replaced the file's
    registry.on_message(room_group_topic("hall"), _room("h1"))
    assert list(registry.room_groups()) == ["hall", "kitchen"]
    registry.on_message(room_group_topic("kitchen"), b"")
    assert registry.room_group("k2") == ("kitchen", yaml_group)  # the file's applies again
    registry.forget_retained()
    assert registry.room_group("h1") is None


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'{"devices": []}',
        b'{"devices": ["a/b"]}',
        b'{"devices": ["k1", "k1"]}',
        b'{"devices": ["k1"], "window_ms": -1}',
        b'{"devices": ["k1"], "colour": "red"}',
    ],
)
def test_an_invalid_room_group_is_refused_and_the_previous_stays(payload: bytes) -> None:
    registry = Registry(RegistrySection())
    registry.on_message(room_group_topic("kitchen"), _room("k1", "k2"))
    registry.on_message(room_group_topic("kitchen"), payload)
    assert registry.invalid == 1
    assert registry.room_group("k2") is not None


def test_a_device_in_two_groups_belongs_to_the_first_by_name() -> None:
    registry = Registry(RegistrySection())
    registry.on_message(room_group_topic("upstairs"), _room("landing", "bedroom"))
    registry.on_message(room_group_topic("hall"), _room("landing", "door"))
    found = registry.room_group("landing")
    assert found is not None and found[0] == "hall"
