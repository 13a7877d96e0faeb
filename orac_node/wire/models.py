"""The model every node decodes with: the retained :class:`ModelSelection`.

``orac-node models promote`` and ``rollback`` publish it retained on
``orac/config/models``; every node on the broker follows it (consumers/
modelswap.py), loading the named models from its model store
(``model.store_dir``) and switching between decodes, without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from orac_node.errors import ContractError
from orac_node.wire.base import PROTOCOL_VERSION, ErrorCode, JsonPayload, build, is_valid_name

MODEL_SELECTION_TOPIC = "orac/config/models"


@dataclass(frozen=True, slots=True)
class ModelSelection(JsonPayload):
    """The store models of the finals and partials tiers (null: each node's own config).

    ``previous_*`` is the selection this one replaced: what ``rollback`` goes back to.
    """

    finals: str | None = None
    partials: str | None = None
    previous_finals: str | None = None
    previous_partials: str | None = None
    ts: float = 0.0
    v: int = PROTOCOL_VERSION

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build and check the names (a bad selection is refused, never half-applied)."""
        selection = build(cls, data)
        for name in (selection.finals, selection.partials):
            if name is not None and not (isinstance(name, str) and is_valid_name(name)):
                raise ContractError(ErrorCode.BAD_FIELD, f"invalid model name {name!r}")
        return selection
