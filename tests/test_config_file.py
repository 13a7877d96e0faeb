"""config.yaml documents every setting, with the real defaults."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from orac_node.config import NodeConfig, load_config, template
from tests.conftest import ROOT

CONFIG_FILE = ROOT / "config.yaml"


def _fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    names = set()
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= _fields(annotation, f"{prefix}{name}.")
        else:
            names.add(prefix + name)
    return names


def _keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    names = set()
    for key, value in data.items():
        if isinstance(value, dict) and value and prefix == "":
            names |= _keys(value, f"{key}.")
        else:
            names.add(prefix + key)
    return names


def test_config_yaml_lists_every_setting() -> None:
    documented = _keys(yaml.safe_load(CONFIG_FILE.read_text()))
    assert documented == _fields(NodeConfig)


def test_config_yaml_values_are_the_defaults() -> None:
    assert load_config(CONFIG_FILE, environ={}) == NodeConfig()


def test_every_setting_has_a_description() -> None:
    for section in NodeConfig.model_fields.values():
        model = section.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"


def test_config_yaml_is_what_the_config_classes_describe() -> None:
    """config.yaml is generated from the descriptions (``orac-node config template``)."""
    assert CONFIG_FILE.read_text() == template.render(), (
        "config.yaml differs from the config classes: run `orac-node config template > config.yaml`"
    )
