"""The whole config tree, loaded from YAML, the environment and flags.

Precedence, lowest first: the defaults of the sections, ``config.yaml`` (or
``--config``), environment variables ``ORAC_NODE_<SECTION>__<KEY>`` (e.g.
``ORAC_NODE_BROKER__URL=mqtt://box:1883``), then command-line flags. Every
section forbids unknown keys so a typo fails at start instead of being ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from orac_node.config.base import Section
from orac_node.config.broker import BrokerSection
from orac_node.config.console import ConsoleSection
from orac_node.config.consumers import ContextSection, RegistrySection, RequestsSection
from orac_node.config.homeassistant import HomeAssistantSection, WyomingSection
from orac_node.config.ingest import EndpointSection, GateSection, IngestSection, PartialsSection
from orac_node.config.jobs import JobsSection
from orac_node.config.model import DecodeSection, ModelSection
from orac_node.config.service import (
    CacheSection,
    FleetSection,
    LoggingSection,
    MetricsSection,
    NodeSection,
    SpoolSection,
)
from orac_node.config.webhooks import WebhooksSection
from orac_node.errors import ConfigError

ENV_PREFIX = "ORAC_NODE_"


class NodeConfig(Section):
    """Everything ``orac-node run`` needs."""

    node: NodeSection = Field(default_factory=NodeSection)
    fleet: FleetSection = Field(default_factory=FleetSection)
    broker: BrokerSection = Field(default_factory=BrokerSection)
    model: ModelSection = Field(default_factory=ModelSection)
    decode: DecodeSection = Field(default_factory=DecodeSection)
    ingest: IngestSection = Field(default_factory=IngestSection)
    endpoint: EndpointSection = Field(default_factory=EndpointSection)
    partials: PartialsSection = Field(default_factory=PartialsSection)
    gate: GateSection = Field(default_factory=GateSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)
    spool: SpoolSection = Field(default_factory=SpoolSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    cache: CacheSection = Field(default_factory=CacheSection)
    requests: RequestsSection = Field(default_factory=RequestsSection)
    context: ContextSection = Field(default_factory=ContextSection)
    registry: RegistrySection = Field(default_factory=RegistrySection)
    webhooks: WebhooksSection = Field(default_factory=WebhooksSection)
    wyoming: WyomingSection = Field(default_factory=WyomingSection)
    homeassistant: HomeAssistantSection = Field(default_factory=HomeAssistantSection)
    jobs: JobsSection = Field(default_factory=JobsSection)
    console: ConsoleSection = Field(default_factory=ConsoleSection)


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``ORAC_NODE_SECTION__KEY=value`` variables into a nested mapping.

    Only names with a ``__`` separator count, so other ``ORAC_NODE_*``
    variables (``ORAC_NODE_MODEL`` in the Justfile, ``ORAC_NODE_SHARED`` in the
    tests) are not mistaken for settings. Values stay strings; pydantic
    converts them to the field's type. Values that look like YAML collections
    (``[...]``/``{...}``) are parsed as YAML.
    """
    result: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name[len(ENV_PREFIX) :]:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = result
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = yaml.safe_load(value) if value[:1] in "[{" else value
    return result


def load_config(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> NodeConfig:
    """Build the config from file, environment and explicit overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        data = loaded
    data = _deep_merge(data, env_overrides(os.environ if environ is None else environ))
    data = _deep_merge(data, overrides or {})
    try:
        return NodeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration:\n{_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    """Where each error is and what is wrong, without the offending value.

    pydantic's own message quotes the input, and the input may be a password
    (``password: 12345678`` is an int in YAML): this text ends up in the journal.
    """
    return "\n".join(
        f"  {'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    )
