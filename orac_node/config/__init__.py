"""Node configuration: one pydantic section per area, loaded from YAML, env and flags.

Where each setting lives::

    base.py       the Section base (unknown keys are errors), state_dir
    broker.py     broker: the URL (BrokerUrl, also the CLI's and SDK's), login, TLS
    model.py      model, decode: which model, how many copies, decode options
    ingest.py     ingest, endpoint, partials, gate: audio coming in
    service.py    node, logging, spool, metrics, cache
    consumers.py  requests, context, registry
    webhooks.py   webhooks, and the Allowlist of where they may go
    homeassistant.py  wyoming, homeassistant: Home Assistant's STT protocol served by
                      the node, and its MQTT discovery
    jobs.py       jobs: long recordings queued in Redis, taken by any node
    console.py    console: the live web page and its browser microphone
    load.py       NodeConfig (the tree) and load_config (file, environment, flags)
    template.py   config.yaml, written from the descriptions in these classes
"""

from orac_node.config.base import Section, state_dir
from orac_node.config.broker import BrokerSection, BrokerUrl
from orac_node.config.console import ConsoleSection
from orac_node.config.consumers import ContextSection, RegistrySection, RequestsSection
from orac_node.config.homeassistant import HomeAssistantSection, WyomingSection
from orac_node.config.ingest import EndpointSection, GateSection, IngestSection, PartialsSection
from orac_node.config.jobs import JobsSection
from orac_node.config.load import ENV_PREFIX, NodeConfig, env_overrides, load_config
from orac_node.config.model import CORES_PER_WORKER, DecodeSection, ModelSection
from orac_node.config.service import (
    CacheSection,
    FleetSection,
    LoggingSection,
    MetricsSection,
    NodeSection,
    SpoolSection,
)
from orac_node.config.webhooks import Allowlist, IPAddress, WebhooksSection

__all__ = [
    "CORES_PER_WORKER",
    "ENV_PREFIX",
    "Allowlist",
    "BrokerSection",
    "BrokerUrl",
    "CacheSection",
    "ConsoleSection",
    "ContextSection",
    "DecodeSection",
    "EndpointSection",
    "FleetSection",
    "GateSection",
    "HomeAssistantSection",
    "IPAddress",
    "IngestSection",
    "JobsSection",
    "LoggingSection",
    "MetricsSection",
    "ModelSection",
    "NodeConfig",
    "NodeSection",
    "PartialsSection",
    "RegistrySection",
    "RequestsSection",
    "Section",
    "SpoolSection",
    "WebhooksSection",
    "WyomingSection",
    "env_overrides",
    "load_config",
    "state_dir",
]
