"""What ``orac-node topics`` does: read, add, change and remove topic configs.

A topic's config is a retained message on ``orac/config/topic/<topic>``
(registry.py), so the broker is the registry's only store: these operations
read the retained messages, validate a new config with
:class:`~orac_node.config.TopicConfig` before anything is published, publish
it retained, and wait for the broker to pass it back: proof that it was
accepted (an MQTT v5 broker that refuses a publish under its ACL only says so
in a PUBACK reason code the client library drops).

Each operation returns an :class:`Outcome`, whose ``code`` is the exit code:

- 0: done;
- 1: the topic is not in the state the command needs (``add``: it already has
  a config; ``rm``/``show``: there is nothing; ``set``: its config is invalid);
- 2: invalid input, or the broker could not be reached or did not take the change.

Reading and then publishing is not atomic: two admins adding the same topic at
the same moment both succeed, and the later publish wins.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from pydantic import ValidationError

from orac_node.client.link import payload_bytes
from orac_node.config import RegistrySection
from orac_node.consumers.registry import DeviceInfo, Registry, validation_summary
from orac_node.errors import ConfigError
from orac_node.ops.health import age
from orac_node.wire import TopicConfig, is_valid_name, topic_config_topic

OK, CONFLICT, FAILED = 0, 1, 2
SETTLE_S = 0.3
"""Retained messages arrive right after SUBACK; once none has come for this long,
all of them are in (as ``orac-node health`` does)."""
MASK = "***"
"""Shown instead of a webhook's secret: anyone who can read the terminal or a
script's log must not learn the key that signs webhooks."""
_NOT_SET = "-"


@dataclass(frozen=True)
class Outcome:
    """The result of one operation: exit code, text for people, JSON for scripts."""

    code: int
    text: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ConfigEdit:
    """Changes asked for on the command line; None leaves a field as it is."""

    enabled: bool | None = None
    model: str | None = None  # "": the node's model
    language: str | None = None  # "": the node's language
    prompt: str | None = None
    silence_ms: int | None = None  # -1: the node's endpoint.silence_ms again
    wake_words: list[str] | None = None  # replaces the list; [] empties it
    webhooks: list[str] | None = None  # replaces the list; [] empties it
    secret: str | None = None  # for the given webhooks, or else the existing ones; "": none
    base: TopicConfig | None = None  # a whole config (--config-json) the changes apply to

    @property
    def empty(self) -> bool:
        """Whether nothing at all was asked for."""
        return all(getattr(self, name) is None for name in self.__dataclass_fields__)


def check_name(name: str) -> None:
    """Refuse a topic name that nodes would refuse (raises :class:`ConfigError`)."""
    if not is_valid_name(name):
        raise ConfigError(
            f"invalid topic name {name!r}: one topic level of [A-Za-z0-9_.-], up to 64 characters"
        )


def parse_config_json(text: str) -> TopicConfig:
    """A whole config from JSON; the error names fields, never the input (a secret)."""
    try:
        return TopicConfig.model_validate_json(text)
    except ValidationError as exc:
        raise ConfigError(f"invalid topic config: {validation_summary(exc)}") from None


def apply_edit(base: TopicConfig, edit: ConfigEdit) -> TopicConfig:
    """``base`` (or ``edit.base``) with the edit's fields, validated as a whole."""
    data = (edit.base or base).model_dump()
    for name in ("enabled", "prompt", "wake_words"):
        if (value := getattr(edit, name)) is not None:
            data[name] = value
    for name in ("model", "language"):
        if (value := getattr(edit, name)) is not None:
            data[name] = value or None
    if edit.silence_ms is not None:
        data["silence_ms"] = None if edit.silence_ms < 0 else edit.silence_ms
    secret = edit.secret or None
    if edit.webhooks is not None:
        data["webhooks"] = [{"url": url, "secret": secret} for url in edit.webhooks]
    elif edit.secret is not None:
        if not data["webhooks"]:
            raise ConfigError("--secret needs --webhook, or webhooks already in the config")
        for hook in data["webhooks"]:
            hook["secret"] = secret
    try:
        return TopicConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid topic config: {validation_summary(exc)}") from None


def masked(config: TopicConfig) -> dict[str, Any]:
    """The config as JSON data with every webhook secret replaced by :data:`MASK`."""
    data = config.model_dump(mode="json")
    for hook in data["webhooks"]:
        if hook.get("secret") is not None:
            hook["secret"] = MASK
    return data


# -- reading the broker ----------------------------------------------------------


async def until_quiet(client: aiomqtt.Client, timeout_s: float) -> list[aiomqtt.Message]:
    """Messages on the client's subscriptions until none came for :data:`SETTLE_S`."""
    received: list[aiomqtt.Message] = []
    deadline = time.monotonic() + timeout_s
    messages = client.messages
    while time.monotonic() < deadline:
        try:
            async with asyncio.timeout(min(SETTLE_S, max(0.0, deadline - time.monotonic()))):
                received.append(await anext(messages))
        except TimeoutError:
            break
    return received


async def read_registry(client: aiomqtt.Client, timeout_s: float) -> Registry:
    """Every retained topic config and satellite heartbeat, in a registry of their own."""
    registry = Registry(RegistrySection(register_topics=False), log_refusals=False)
    for topic in registry.subscriptions:
        await client.subscribe(topic, qos=1)
    now = time.time()
    for message in await until_quiet(client, timeout_s):
        registry.on_message(message.topic.value, payload_bytes(message), now=now)
    return registry


async def _read_config(client: aiomqtt.Client, name: str, timeout_s: float) -> bytes | None:
    """The retained payload of topic ``name``'s config, None when there is none."""
    topic = topic_config_topic(name)
    await client.subscribe(topic, qos=1)
    found = None
    for message in await until_quiet(client, timeout_s):
        if message.topic.matches(topic) and (payload := payload_bytes(message)):
            found = payload
    return found


async def _publish(client: aiomqtt.Client, name: str, payload: bytes, timeout_s: float) -> bool:
    """Publish topic ``name``'s config retained; True once the broker passed it back."""
    return await publish_retained(client, topic_config_topic(name), payload, timeout_s)


async def publish_retained(
    client: aiomqtt.Client, topic: str, payload: bytes, timeout_s: float
) -> bool:
    """Publish retained and wait until the broker passes it back (we are subscribed)."""
    await client.publish(topic, payload, qos=1, retain=True)
    try:
        async with asyncio.timeout(timeout_s):
            async for message in client.messages:
                if message.topic.matches(topic) and payload_bytes(message) == payload:
                    return True
    except TimeoutError:
        pass
    return False


def not_taken(topic: str, timeout_s: float) -> Outcome:
    """A retained edit the broker did not pass back: most likely the ACL refused it."""
    family = topic.rpartition("/")[0]
    return Outcome(
        FAILED,
        f"the broker did not pass the change to {topic} back within {timeout_s:g} s:"
        f" is this user allowed to read and write {family}/#?",
    )


# -- the operations ----------------------------------------------------------------


async def list_topics(client: aiomqtt.Client, timeout_s: float) -> Outcome:
    """Every topic with a retained config or named by a satellite's heartbeat."""
    registry = await read_registry(client, timeout_s)
    names = sorted(set(registry.retained) | set(registry.refused) | _announced(registry))
    rows = [_row(registry, name) for name in names]
    return Outcome(OK, _table(rows), {"topics": rows})


async def show_topic(client: aiomqtt.Client, name: str, timeout_s: float) -> Outcome:
    """One topic's config (secrets masked) and the satellites using it."""
    registry = await read_registry(client, timeout_s)
    devices = _users(registry, name)
    config = registry.retained.get(name)
    refused = registry.refused.get(name)
    if config is None and refused is None and not devices:
        return Outcome(CONFLICT, f"topic {name!r} has no config and no satellite uses it")
    data = {
        "topic": name,
        "retained": config is not None,
        "config": masked(config or TopicConfig()),
        "invalid": refused,
        "devices": [
            {"device": d.device, "state": d.state, "last_seen": d.last_seen} for d in devices
        ],
    }
    return Outcome(OK, _details(data, time.time()), data)


async def add_topic(
    client: aiomqtt.Client, name: str, edit: ConfigEdit, timeout_s: float
) -> Outcome:
    """Publish a new topic's config; refused when the topic already has one."""
    config = apply_edit(TopicConfig(), edit)  # invalid input fails before the broker is read
    if await _read_config(client, name, timeout_s) is not None:
        return Outcome(
            CONFLICT, f"topic {name!r} already has a config: change it with orac-node topics set"
        )
    if not await _publish(client, name, config.model_dump_json().encode(), timeout_s):
        return not_taken(topic_config_topic(name), timeout_s)
    data = {"topic": name, "config": masked(config)}
    return Outcome(OK, f"added topic {name}", data)


async def set_topic(
    client: aiomqtt.Client, name: str, edit: ConfigEdit, timeout_s: float
) -> Outcome:
    """Merge the edit into the topic's config (or the defaults) and publish it."""
    if edit.empty:
        raise ConfigError("nothing to set: give at least one option (see --help)")
    existing = await _read_config(client, name, timeout_s)
    base = TopicConfig()
    if existing is not None and edit.base is None:
        try:
            base = TopicConfig.model_validate_json(existing)
        except ValidationError as exc:
            return Outcome(
                CONFLICT,
                f"the retained config of {name!r} is invalid ({validation_summary(exc)}):"
                " replace it with --config-json, or remove it with orac-node topics rm",
            )
    config = apply_edit(base, edit)
    if not await _publish(client, name, config.model_dump_json().encode(), timeout_s):
        return not_taken(topic_config_topic(name), timeout_s)
    data = {"topic": name, "config": masked(config)}
    return Outcome(OK, f"{'updated' if existing else 'added'} topic {name}", data)


async def remove_topic(client: aiomqtt.Client, name: str, timeout_s: float) -> Outcome:
    """Clear the topic's retained config; nodes fall back to config.yaml or the defaults."""
    if await _read_config(client, name, timeout_s) is None:
        return Outcome(CONFLICT, f"topic {name!r} has no retained config to remove")
    if not await _publish(client, name, b"", timeout_s):
        return not_taken(topic_config_topic(name), timeout_s)
    return Outcome(OK, f"removed the config of topic {name}", {"topic": name, "removed": True})


# -- presentation --------------------------------------------------------------------


def _announced(registry: Registry) -> set[str]:
    return {topic for info in registry.devices().values() for topic in info.topics}


def _users(registry: Registry, name: str) -> list[DeviceInfo]:
    return [info for info in registry.devices().values() if name in info.topics]


def _row(registry: Registry, name: str) -> dict[str, Any]:
    config = registry.retained.get(name)
    effective = config or TopicConfig()
    users = _users(registry, name)
    return {
        "topic": name,
        "retained": config is not None,
        "invalid": registry.refused.get(name),
        "enabled": effective.enabled,
        "model": effective.model,
        "language": effective.language,
        "wake_words": len(effective.wake_words),
        "webhooks": len(effective.webhooks),
        "online": [d.device for d in users if d.state == "online"],
        "offline": [d.device for d in users if d.state == "offline"],
    }


def _table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "no topic has a config and no satellite has announced one"
    lines = [
        f"{'topic':<24}{'enabled':<9}{'model':<14}{'language':<10}"
        f"{'wake':>5}{'hooks':>6}{'online':>8}{'offline':>8}"
    ]
    for row in rows:
        mark = "!" if row["invalid"] else "" if row["retained"] else "*"
        lines.append(
            f"{row['topic'] + mark:<24}{'yes' if row['enabled'] else 'no':<9}"
            f"{row['model'] or _NOT_SET:<14}{row['language'] or _NOT_SET:<10}"
            f"{row['wake_words']:>5}{row['webhooks']:>6}"
            f"{len(row['online']):>8}{len(row['offline']):>8}"
        )
    if any(not row["retained"] and not row["invalid"] for row in rows):
        lines.append("* no retained config: config.yaml's registry.topics or the defaults apply")
    if any(row["invalid"] for row in rows):
        lines.append("! the retained config is invalid and ignored: see orac-node topics show")
    return "\n".join(lines)


def _details(data: dict[str, Any], now: float) -> str:
    config = data["config"]
    lines = [f"topic {data['topic']} ({topic_config_topic(data['topic'])})"]
    if data["invalid"]:
        lines.append(f"  INVALID retained config, ignored by nodes: {data['invalid']}")
    elif not data["retained"]:
        lines.append("  no retained config: config.yaml's registry.topics or these defaults apply")
    lines += [
        f"  enabled:    {'yes' if config['enabled'] else 'no'}",
        f"  model:      {config['model'] or '- (the node model)'}",
        f"  language:   {config['language'] or '- (the session or node language)'}",
        f"  prompt:     {config['prompt'] or _NOT_SET}",
        f"  wake words: {', '.join(config['wake_words']) or _NOT_SET}",
        "  webhooks:" if config["webhooks"] else f"  webhooks:   {_NOT_SET}",
    ]
    lines += [
        f"    {hook['url']}  (secret {hook['secret'] or 'none'})" for hook in config["webhooks"]
    ]
    lines.append("devices:" if data["devices"] else "devices: none has announced this topic")
    lines += [
        f"  {d['device']:<24}{d['state']:<9}last seen {age(now - d['last_seen'])} ago"
        for d in data["devices"]
    ]
    return "\n".join(lines)
