"""Following the retained model selection: promote and rollback, without a restart.

``orac-node models promote NAME`` publishes a :class:`ModelSelection` retained
on ``orac/config/models``; every node receives it (and, being retained, every
node that starts later). For each tier the node looks the model up in its
store (``model.cache_dir``; a model the node's config offers by name works
too), loads it beside the current one, and only once it is loaded and warm
switches its tiers (ModelPool.select). Until then, and if it never loads,
decoding goes on with the models in use, so a promote never costs a
session: sessions open at the switch get their final from whichever model is
current when their final decodes, once, and nothing is decoded twice.

A selection may also carry an A/B test of the finals model (a candidate,
the share of devices that get it, shadow mode: decode/experiment.py); the
candidate is loaded like the tiers, and the test starts once it is.

The node's retained status names its finals model, which is how ``models
promote`` sees each node follow. A selection whose model cannot be used here
is logged and counted in ``refused``, and the node stays as it was.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from orac_node.decode.experiment import Experiment
from orac_node.decode.modelpool import ModelPool
from orac_node.errors import ContractError
from orac_node.models.store import ModelStore
from orac_node.wire import ModelSelection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Wanted:
    """What a selection asks of this node: its tiers, and an A/B test if any."""

    partials: str
    finals: str
    experiment: Experiment | None

    @property
    def names(self) -> list[str]:
        """Every model the selection needs loaded, once each."""
        candidate = [self.experiment.candidate] if self.experiment else []
        return list(dict.fromkeys([self.partials, self.finals, *candidate]))


class ModelSwitch:
    """Applies model selections from the bus to one node's pool (module docstring)."""

    def __init__(self, pool: ModelPool, store: ModelStore, *, switched: Callable[[], None]) -> None:
        self._pool = pool
        self._store = store
        self._switched = switched  # e.g. republish the node's status
        self._wanted: _Wanted | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = False  # the pool has its scheduler: models can be loaded
        self.refused = 0

    def on_message(self, payload: bytes) -> None:
        """A (retained) selection arrived; an empty payload is no selection: the config's."""
        try:
            selection = ModelSelection.decode(payload) if payload else ModelSelection()
        except ContractError as exc:
            self.refused += 1
            log.warning("model selection refused: %s", exc.message)
            return
        pool = self._pool
        configured_partials, configured_finals = pool.configured
        experiment = (
            Experiment(selection.candidate, selection.share, selection.shadow)
            if selection.candidate is not None
            else None
        )
        wanted = _Wanted(
            selection.partials or configured_partials,
            selection.finals or configured_finals,
            experiment,
        )
        missing = [n for n in wanted.names if n not in pool.names and not self._store.has(n)]
        if missing:
            self.refused += 1
            log.error(
                "model selection not applied, staying on %s: no model %r in the store (%s)",
                pool.finals,
                missing[0],
                self._store.root,
            )
            return
        for name in wanted.names:
            if name not in pool.names:
                pool.offer(name, self._store.path(name))
        self._wanted = wanted
        if self._started:
            self._spawn()

    async def start(self) -> None:
        """The node's own models are loaded: apply a selection that came meanwhile, and wait."""
        self._started = True
        self._spawn()
        if self._task is not None:
            await asyncio.shield(self._task)

    def _spawn(self) -> None:
        if self._wanted is not None and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._apply(), name="model-switch")

    async def _apply(self) -> None:
        """Load what the newest selection wants, then switch (a newer one may come meanwhile)."""
        while self._wanted is not None:
            wanted = self._wanted
            try:
                for name in wanted.names:
                    await self._pool.ensure(name)
            except LookupError as exc:  # ModelUnavailableError: it does not load here
                self.refused += 1
                log.error(  # noqa: TRY400 - a file that does not load: the reason, no traceback
                    "model selection not applied, staying on %s: %s", self._pool.finals, exc
                )
                if self._wanted == wanted:
                    self._wanted = None
                continue
            if self._wanted != wanted:
                continue  # a newer selection arrived while this one loaded
            self._pool.select(partials=wanted.partials, finals=wanted.finals)
            self._pool.ab.start(wanted.experiment)
            log.info("decoding with %s (finals) and %s (partials)", wanted.finals, wanted.partials)
            if wanted.experiment is not None:
                log.info("A/B test: %s", wanted.experiment)
            self._wanted = None
            self._switched()

    async def close(self) -> None:
        """Stop a load in progress (shutdown)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
