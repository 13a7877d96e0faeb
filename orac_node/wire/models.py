"""The model every node decodes with: the retained :class:`ModelSelection`.

``orac-node models promote`` and ``rollback`` publish it retained on
``orac/config/models``; every node on the broker follows it (consumers/
modelswap.py), loading the named models from its model store
(``model.cache_dir``) and switching between decodes, without a restart.
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
    ``candidate``, when set, is an A/B test of the finals model: a stable
    ``share`` of devices get their finals from it (``variant: candidate``), the
    others from the champion; with ``shadow`` every final is published from the
    champion and the candidate decodes the same audio behind live work, for
    ``models ab report`` only.
    """

    finals: str | None = None
    partials: str | None = None
    previous_finals: str | None = None
    previous_partials: str | None = None
    candidate: str | None = None
    share: float = 0.0
    shadow: bool = False
    ts: float = 0.0
    v: int = PROTOCOL_VERSION

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build and check the fields (a bad selection is refused, never half-applied)."""
        selection = build(cls, data)
        for name in (selection.finals, selection.partials, selection.candidate):
            if name is not None and not (isinstance(name, str) and is_valid_name(name)):
                raise ContractError(ErrorCode.BAD_FIELD, f"invalid model name {name!r}")
        share = selection.share
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise ContractError(ErrorCode.BAD_FIELD, f"share must be 0-1, not {share!r}")
        if not isinstance(selection.shadow, bool):
            raise ContractError(ErrorCode.BAD_FIELD, "shadow must be true or false")
        return selection
