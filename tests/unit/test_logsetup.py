"""Log records as JSON with session keys; secrets kept out of config errors and reprs."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from orac_node.config import NodeConfig, load_config
from orac_node.errors import ConfigError
from orac_node.ingest.session import log_fields
from orac_node.ops.logsetup import JsonFormatter

SECRET = "hunter2-0123456789"


def _record(msg: str, *args: object, extra: dict[str, object] | None = None) -> logging.LogRecord:
    record = logging.makeLogRecord(
        {"name": "orac_node.node", "levelno": logging.INFO, "levelname": "INFO"}
    )
    record.msg, record.args = msg, args
    for key, value in (extra or {}).items():
        setattr(record, key, value)
    return record


def test_json_line_has_the_fixed_fields_and_the_session() -> None:
    extra = log_fields("kitchen", "abc123")
    line = JsonFormatter().format(_record("final %s", "ok", extra=extra))
    entry = json.loads(line)
    assert entry["level"] == "info"
    assert entry["logger"] == "orac_node.node"
    assert entry["message"] == "final ok"
    assert entry["device"] == "kitchen"
    assert entry["session"] == "abc123"
    assert isinstance(entry["ts"], float)
    assert "\n" not in line


def test_json_line_without_extras_has_no_session_keys() -> None:
    entry = json.loads(JsonFormatter().format(_record("plain")))
    assert set(entry) == {"ts", "level", "logger", "message"}
    assert log_fields("kitchen") == {"device": "kitchen"}


def test_json_line_carries_the_exception() -> None:
    try:
        int("boom")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: invalid literal" in entry["exception"]


@pytest.mark.parametrize("value", ["text", "json"])
def test_logging_format_choices(value: str) -> None:
    assert load_config(overrides={"logging": {"format": value}}, environ={}).logging.format == value


def test_unknown_logging_format_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"logging\.format"):
        load_config(overrides={"logging": {"format": "xml"}}, environ={})


def test_password_is_hidden_in_the_config_repr() -> None:
    config = load_config(overrides={"broker": {"username": "u", "password": SECRET}}, environ={})
    assert config.broker.password is not None
    assert config.broker.password.get_secret_value() == SECRET
    assert SECRET not in repr(config) and SECRET not in str(config.model_dump())


def test_config_errors_do_not_quote_the_password() -> None:
    # A numeric password is an int in YAML: pydantic's own message would quote it.
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"broker": {"password": 1234567890}}, environ={})
    message = str(caught.value)
    assert "broker.password" in message
    assert "1234567890" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_credentials_in_the_broker_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"broker": {"url": f"mqtt://u:{SECRET}@box:1883"}}, environ={})
    assert "broker.username and broker.password" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_defaults_still_load() -> None:
    assert load_config(environ={}) == NodeConfig()
