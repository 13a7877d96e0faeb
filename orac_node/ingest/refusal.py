"""A refusal: what a device is told when the node will not take its audio as sent."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Refusal:
    """One error report owed to a device, before the node stamps and publishes it.

    ``code`` is an :class:`~orac_node.wire.ErrorCode`; ``session`` and ``seq``
    point at the message refused when there is one; ``dropped`` counts the
    messages a report stands for (rate limits, late audio).
    """

    device: str
    code: str
    message: str
    session: str | None = None
    seq: int | None = None
    dropped: int | None = None
