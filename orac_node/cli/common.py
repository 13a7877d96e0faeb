"""What several commands share: the config from flags, the model file, broker options."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, TypeAlias

from orac_node.config import NodeConfig, load_config
from orac_node.decode.engine import WhisperEngine, seeded_sampling
from orac_node.decode.modelfiles import resolve_model
from orac_node.models.store import ModelStore
from orac_node.mqtt.options import BrokerLogin
from orac_node.ops.topics import OK, Outcome

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
PASSWORD_ENV = "ORAC_NODE_BROKER__PASSWORD"  # noqa: S105 - a variable name, not a secret
CA_FILE_ENV = "ORAC_NODE_BROKER__CA_FILE"

log = logging.getLogger(__name__)

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def config_from(args: argparse.Namespace) -> NodeConfig:
    """The node config: ``--config``, the environment, then the flags that override them."""
    overrides: dict[str, Any] = {}
    if getattr(args, "broker", None):
        overrides.setdefault("broker", {})["url"] = args.broker
    if getattr(args, "model", None):
        overrides.setdefault("model", {})["path"] = args.model
    if getattr(args, "node_id", None):
        overrides.setdefault("node", {})["id"] = args.node_id
    return load_config(args.config, overrides)


def model_path(config: NodeConfig) -> Path:
    """The model file the config asks for (downloaded by name when needed).

    A model downloaded by name lands in the model store's directory and is
    recorded there (checksum, kind, source), so ``orac-node models list``
    shows it like an imported one.
    """
    model = config.model
    path = resolve_model(model.path or model.name, cache_dir=model.cache_dir, hub_url=model.hub_url)
    store = ModelStore(model.cache_dir)
    if model.path is None and path == store.path(model.name):
        store.adopt(model.name, f"download:{model.hub_url.rstrip('/')}/{path.name}")
    return path


def load_engines(config: NodeConfig, path: Path) -> list[WhisperEngine]:
    """Load and warm up one engine per worker (blocking: run it in a thread)."""
    if not seeded_sampling():
        log.warning(
            "this whisper.cpp build is not orac-node's patched one: beam search and"
            " temperature fallback will depend on earlier decodes"
            " (python -m orac_node.whisperbuild installs the patched build)"
        )
    use_gpu = config.model.device != "cpu"
    engines = []
    for _ in range(config.model.resolved_workers()):
        engine = WhisperEngine(path, threads=config.model.resolved_threads(), use_gpu=use_gpu)
        engine.warm_up()
        engines.append(engine)
    return engines


def node_options(p: argparse.ArgumentParser) -> None:
    """``--config`` and ``--model``, for commands that run the node's machinery."""
    p.add_argument("--config", type=Path, help="YAML config file (see config.yaml)")
    p.add_argument("--model", help="ggml model file or name (tiny.en, base.en, ...)")


def broker_options(p: argparse.ArgumentParser) -> None:
    """``--broker`` and ``--ca-file``, for commands that connect as a client."""
    p.add_argument(
        "--broker",
        default=DEFAULT_BROKER,
        help=f"mqtt://[user@]host:port, or mqtts://[user@]host:8883 for TLS (default"
        f" {DEFAULT_BROKER}); the password comes from ${PASSWORD_ENV}",
    )
    ca_file = os.environ.get(CA_FILE_ENV)
    p.add_argument(
        "--ca-file",
        type=Path,
        default=Path(ca_file) if ca_file else None,
        help=f"CA certificate of an mqtts:// broker (default ${CA_FILE_ENV}, else the"
        " system's trust store)",
    )


def login(args: argparse.Namespace) -> BrokerLogin:
    """The client login ``--broker`` and ``--ca-file`` describe.

    When the URL names a user but no password, the password comes from
    ORAC_NODE_BROKER__PASSWORD (the node's own setting), which keeps it out of
    ``ps`` and shell history.
    """
    return BrokerLogin(url=args.broker, password=os.environ.get(PASSWORD_ENV), ca_file=args.ca_file)


def retained_edit_options(p: argparse.ArgumentParser) -> None:
    """``--json`` and ``--timeout`` of the commands that read and edit retained configs."""
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--timeout",
        type=float,
        default=3.0,
        help="longest wait for retained messages and for the broker to confirm (s)",
    )


def print_outcome(command: str, outcome: Outcome, *, as_json: bool) -> int:
    """Print an operation's outcome (errors to stderr, prefixed); return its exit code."""
    if outcome.code != OK:
        print(f"orac-node {command}: {outcome.text}", file=sys.stderr)
    else:
        print(json.dumps(outcome.data) if as_json else outcome.text)
    return outcome.code
