"""Config: defaults, forbidden extras, bounds, env overrides and precedence."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from orac_node.config import NodeConfig, env_overrides, load_config
from orac_node.errors import ConfigError, OracNodeError

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.yaml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_valid() -> None:
    config = load_config(environ={})
    assert config == NodeConfig()
    assert config.broker.host == "127.0.0.1"
    assert config.broker.port == 1883
    assert config.model.name == "tiny.en"
    assert config.endpoint.silence_ms == 700
    assert config.node.id.startswith("orac-")
    assert config.model.resolved_threads() >= 1


@pytest.mark.parametrize(
    "overrides",
    [
        {"brokr": {"url": "mqtt://x:1"}},
        {"broker": {"urll": "mqtt://x:1"}},
        {"endpoint": {"silence": 500}},
        {"model": {"workers": 1, "gpu": True}},
    ],
)
def test_unknown_keys_are_rejected(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        load_config(overrides=overrides, environ={})


def test_config_error_is_an_orac_node_error() -> None:
    with pytest.raises(OracNodeError):
        load_config(overrides={"nope": 1}, environ={})


@pytest.mark.parametrize(
    ("section", "key", "bad", "good"),
    [
        ("broker", "keepalive_s", 4, 5),
        ("broker", "keepalive_s", 3601, 3600),
        ("broker", "reconnect_min_s", 0, 0.01),
        ("broker", "outbox_size", 99, 100),
        ("model", "workers", -1, 0),
        ("model", "workers", 17, 16),
        ("model", "threads", -1, 0),
        ("model", "device", "tpu", "cuda"),
        ("decode", "beam_size", 9, 8),
        ("ingest", "reorder_window", 1025, 1024),
        ("ingest", "reorder_window", -1, 0),
        ("ingest", "default_topic", "a/b", "home_assistant"),
        ("endpoint", "vad_threshold", 0.0, 0.01),
        ("endpoint", "vad_threshold", 1.0, 0.99),
        ("endpoint", "silence_ms", -1, 0),
        ("endpoint", "max_duration_s", 0.5, 1),
        ("partials", "interval_ms", 99, 100),
        ("gate", "min_confidence", 1.5, 1.0),
        ("logging", "level", "TRACE", "DEBUG"),
        ("node", "id", "has/slash", "kitchen-box"),
    ],
)
def test_bounds(section: str, key: str, bad: object, good: object) -> None:
    with pytest.raises(ConfigError):
        load_config(overrides={section: {key: bad}}, environ={})
    config = load_config(overrides={section: {key: good}}, environ={})
    assert getattr(getattr(config, section), key) == good


@pytest.mark.parametrize(
    "url", ["http://box:1883", "mqtt://", "box:1883", "", "tcp://127.0.0.1:1883"]
)
def test_bad_broker_url(url: str) -> None:
    with pytest.raises(ConfigError):
        load_config(overrides={"broker": {"url": url}}, environ={})


def test_broker_url_parts() -> None:
    config = load_config(overrides={"broker": {"url": "mqtt://box.lan"}}, environ={})
    assert (config.broker.host, config.broker.port) == ("box.lan", 1883)


def test_env_overrides() -> None:
    environ = {
        "ORAC_NODE_BROKER__URL": "mqtt://box:1884",
        "ORAC_NODE_MODEL__WORKERS": "2",
        "ORAC_NODE_MODEL__CACHE_DIR": "/var/cache/orac",
        "ORAC_NODE_PARTIALS__ENABLED": "false",
        "ORAC_NODE_INGEST__DEVICE_TOPICS": "{kitchen: home_assistant}",
        "HOME": "/root",
    }
    config = load_config(environ=environ)
    assert (config.broker.host, config.broker.port) == ("box", 1884)
    assert config.model.workers == 2
    assert config.model.cache_dir == Path("/var/cache/orac")
    assert config.partials.enabled is False
    assert config.ingest.topic_for("kitchen") == "home_assistant"
    assert config.ingest.topic_for("hall") == "general"


def test_env_override_with_a_bad_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        load_config(environ={"ORAC_NODE_MODEL__WORKERS": "many"})
    with pytest.raises(ConfigError):
        load_config(environ={"ORAC_NODE_BROKER__UR": "mqtt://box:1"})


def test_env_variables_not_in_section_key_form_are_ignored() -> None:
    # The project itself uses ORAC_NODE_SHARED (test data) and ORAC_NODE_MODEL
    # (the Justfile's model path); they are not ORAC_NODE_<SECTION>__<KEY> overrides
    # and must not break the node's config when exported.
    environ = {"ORAC_NODE_SHARED": "/work/shared", "ORAC_NODE_MODEL": "/m/ggml-tiny.en.bin"}
    assert env_overrides(environ) == {}
    assert load_config(environ=environ) == load_config(environ={})


def test_precedence_defaults_file_env_overrides(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "broker:\n  url: mqtt://from-file:1883\n  keepalive_s: 40\n  outbox_size: 500\n"
        "endpoint:\n  silence_ms: 900\n",
    )
    from_file = load_config(path, environ={})
    assert from_file.broker.url == "mqtt://from-file:1883"
    assert from_file.broker.keepalive_s == 40
    assert from_file.endpoint.silence_ms == 900
    assert from_file.endpoint.min_speech_ms == 160  # untouched default

    environ = {
        "ORAC_NODE_BROKER__URL": "mqtt://from-env:1883",
        "ORAC_NODE_BROKER__KEEPALIVE_S": "50",
    }
    with_env = load_config(path, environ=environ)
    assert with_env.broker.url == "mqtt://from-env:1883"
    assert with_env.broker.keepalive_s == 50
    assert with_env.broker.outbox_size == 500  # file value kept beside env in one section

    with_flags = load_config(path, overrides={"broker": {"keepalive_s": 60}}, environ=environ)
    assert with_flags.broker.keepalive_s == 60
    assert with_flags.broker.url == "mqtt://from-env:1883"
    assert with_flags.broker.outbox_size == 500
    assert with_flags.endpoint.silence_ms == 900


def test_unreadable_or_malformed_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_config(tmp_path / "missing.yaml", environ={})
    with pytest.raises(ConfigError):
        load_config(_write(tmp_path, "broker: [unclosed\n"), environ={})
    with pytest.raises(ConfigError):
        load_config(_write(tmp_path, "- a list\n- not a mapping\n"), environ={})
    with pytest.raises(ConfigError):
        load_config(_write(tmp_path, "brokr:\n  url: mqtt://x:1\n"), environ={})


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, "# nothing set\n"), environ={}) == NodeConfig()


def test_repository_config_yaml_is_the_defaults() -> None:
    if not REPO_CONFIG.is_file():
        pytest.skip(f"{REPO_CONFIG} does not exist yet")
    loaded = load_config(REPO_CONFIG, environ={})
    defaults = NodeConfig()
    assert loaded.model_dump(exclude={"node": {"id"}}) == defaults.model_dump(
        exclude={"node": {"id"}}
    )
    assert loaded.node.id


def test_auto_workers_follow_the_cores_and_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    for cores, workers, threads in ((2, 1, 2), (4, 1, 4), (8, 2, 4), (16, 4, 4), (1, 1, 1)):
        monkeypatch.setattr(os, "cpu_count", lambda n=cores: n)
        model = load_config(None, {}).model
        assert (model.resolved_workers(), model.resolved_threads()) == (workers, threads)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    cuda = load_config(None, {"model": {"device": "cuda"}}).model
    assert cuda.resolved_workers() == 1 and cuda.resolved_threads() == 16
    fixed = load_config(None, {"model": {"workers": 3, "threads": 2}}).model
    assert (fixed.resolved_workers(), fixed.resolved_threads()) == (3, 2)
