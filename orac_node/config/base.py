"""What every config section shares: unknown keys are errors, values never change."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

from orac_node.wire import is_valid_name

T = TypeVar("T")


class Section(BaseModel):
    """A config section: typos fail loudly at start, settings are read-only once loaded.

    The class docstring's first paragraph heads the section in config.yaml, and
    each field's description is its comment there (template.py writes the file).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


def state_dir(node_id: str) -> Path:
    """Where a node keeps state by default: $XDG_STATE_HOME/orac-node/<node id>."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "orac-node" / node_id


def one_level_names(value: dict[str, T], what: str) -> dict[str, T]:
    """The keys of ``value`` are names used in topics: one level of plain characters."""
    for name in value:
        if not is_valid_name(name):
            raise ValueError(f"{what} must be one topic level of [A-Za-z0-9_.-]")
    return value
