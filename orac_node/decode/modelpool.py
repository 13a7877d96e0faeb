"""The models a node can decode with: its own, and others loaded on first use.

Topic configs (``model``) and requests (``retranscribe`` with a bigger model)
may name another model. Only names the operator listed in ``model.extra`` (or
the main model's own name) can be loaded: a request must not make the node
download or open arbitrary files. An extra model is loaded on first use (in a
thread, probed first like the main one, see models.check_loadable) and then
kept: it gets one engine and its own :class:`InferenceScheduler`, so its
decodes are serialised like the main model's and never share an engine
between threads. Loading happens once even when several requests ask at once.

An extra model whose file is missing or does not load is remembered as such
(:class:`ModelUnavailableError`) for :data:`RETRY_LOAD_S`: the finals that ask
for it meanwhile fall back at once (decode/finals.py) instead of probing the
file again each time; after that, the next one tries again, so a file put right
is picked up without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from orac_node.decode.engine import WhisperEngine
from orac_node.decode.modelfiles import check_loadable
from orac_node.decode.scheduler import InferenceScheduler
from orac_node.errors import ModelError

log = logging.getLogger(__name__)


RETRY_LOAD_S = 300.0
"""How long a model that failed to load stays failed before it is tried again: an
operator fixing the file is seen within 5 minutes, while a broken file costs one
probe (a child process, ~0.3 s) per 5 minutes instead of one per final."""


class UnknownModelError(LookupError):
    """A name that is neither the node's model nor one of ``model.extra``."""


class ModelUnavailableError(LookupError):
    """A ``model.extra`` model whose file is missing or does not load.

    ``fresh`` is true for the callers of the load that just failed, false while
    the failure is remembered: whoever reports it does so once per failure.
    """

    def __init__(self, name: str, reason: str, *, fresh: bool) -> None:
        super().__init__(f"model {name!r} cannot be loaded: {reason}")
        self.name = name
        self.reason = reason
        self.fresh = fresh


class ModelPool:
    """Main scheduler plus lazily loaded extra models, by name.

    The main model's scheduler is handed over by :meth:`start` once its engines
    are loaded and warm (the node does that before it takes input).
    """

    def __init__(
        self,
        main_name: str,
        *,
        extra: dict[str, Path],
        threads: int,
        use_gpu: bool,
        cache_dir: Path,
    ) -> None:
        self.main_name = main_name
        self._schedulers: dict[str, InferenceScheduler] = {}
        self._extra = dict(extra)
        self._threads = threads
        self._use_gpu = use_gpu
        self._cache_dir = cache_dir
        self._loading: dict[str, asyncio.Task[InferenceScheduler]] = {}
        self._failed: dict[str, tuple[str, float]] = {}  # name -> (why, retry at)
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, main: InferenceScheduler) -> None:
        """The main model is loaded: its scheduler serves from now on."""
        self._schedulers[self.main_name] = main

    @property
    def main(self) -> InferenceScheduler:
        """The main model's scheduler (partials always decode with it)."""
        scheduler = self._schedulers.get(self.main_name)
        assert scheduler is not None, "the main model is not loaded yet"
        return scheduler

    @property
    def queued(self) -> int:
        """Decode jobs waiting for a worker, every loaded model's."""
        return sum(scheduler.queued for scheduler in self._schedulers.values())

    @property
    def names(self) -> list[str]:
        """Every model this node can decode with."""
        return [self.main_name, *(n for n in self._extra if n != self.main_name)]

    @property
    def loaded(self) -> list[str]:
        """Models loaded now."""
        return list(self._schedulers)

    def schedulers(self) -> list[InferenceScheduler]:
        """Every loaded model's scheduler (queue depth, metrics)."""
        return list(self._schedulers.values())

    async def scheduler(self, name: str | None) -> InferenceScheduler:
        """The scheduler of model ``name`` (None: the main one), loading it on first use."""
        name = name or self.main_name
        if (ready := self._schedulers.get(name)) is not None:
            return ready
        if name not in self._extra:
            raise UnknownModelError(f"model {name!r} is not available; try one of {self.names}")
        failed = self._failed.get(name)
        if failed is not None and time.monotonic() < failed[1]:
            raise ModelUnavailableError(name, failed[0], fresh=False)
        task = self._loading.get(name)
        if task is None:
            task = self._loading[name] = asyncio.create_task(self._load(name), name=f"load-{name}")
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._loading.pop(name, None)

    async def _load(self, name: str) -> InferenceScheduler:
        path = self._extra[name].expanduser()
        log.info("loading model %s from %s", name, path)

        def load() -> WhisperEngine:
            check_loadable(path, stamp_dir=self._cache_dir)
            engine = WhisperEngine(path, threads=self._threads, use_gpu=self._use_gpu)
            engine.warm_up()
            return engine

        try:
            engine = await asyncio.to_thread(load)
        except ModelError as exc:
            self._failed[name] = (str(exc), time.monotonic() + RETRY_LOAD_S)
            log.warning(
                "model %s cannot be loaded (tried again in %.0f s): %s", name, RETRY_LOAD_S, exc
            )
            raise ModelUnavailableError(name, str(exc), fresh=True) from exc
        self._failed.pop(name, None)
        scheduler = InferenceScheduler([engine], cores=self._threads)
        task = asyncio.create_task(scheduler.run(), name=f"inference-{name}")
        self._tasks.add(task)
        task.add_done_callback(_log_failure)
        self._schedulers[name] = scheduler
        return scheduler

    async def close(self) -> None:
        """Stop the extra models' workers."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _log_failure(task: asyncio.Task[None]) -> None:
    """An extra model's workers stopped by an error: say so (close() only cancels)."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("%s stopped", task.get_name(), exc_info=error)
