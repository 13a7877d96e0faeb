"""Wire objects with plausible defaults, for unit tests that need one but test something else."""

from __future__ import annotations

import dataclasses
from typing import Any

from orac_node.wire import Final, Partial

_FINAL = Final(
    node="bench-node",
    model="tiny.en",
    device="bench-hooks",
    session="s",
    topic="bench-hooks-1",
    text="x",
    language="en",
    confidence=0.9,
    reason="end",
    endpoint="end",
    rejected=None,
    audio_s=1.0,
    speech_s=0.8,
    chunks=50,
    gaps=0,
    duplicates=0,
    incomplete=False,
    latency_ms=1.0,
    decode_ms=100.0,
    queue_ms=0.0,
    ts=1_795_000_000.0,
)


def final(**fields: Any) -> Final:
    """A published final; ``fields`` override the defaults."""
    return dataclasses.replace(_FINAL, **fields)


_PARTIAL = Partial(
    node="bench-node",
    model="tiny.en",
    device="bench-hooks",
    session="s",
    topic="bench-hooks-1",
    text="x",
    stable="",
    unstable="x",
    seq=1,
    audio_s=0.5,
    lag_ms=10.0,
    decode_ms=50.0,
    ts=1_795_000_000.0,
)


def partial(**fields: Any) -> Partial:
    """A published partial; ``fields`` override the defaults."""
    return dataclasses.replace(_PARTIAL, **fields)
