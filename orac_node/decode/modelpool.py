"""The models a node can decode with: its own, and others loaded on first use.

Topic configs (``model``) and requests (``retranscribe`` with a bigger model)
may name another model. Only names the operator listed in ``model.extra`` (or
the main model's own name) can be loaded: a request must not make the node
download or open arbitrary files. An extra model is loaded on first use (in a
thread, probed first like the main one, see modelfiles.check_loadable) and then
kept: it gets one engine in the node's one :class:`InferenceScheduler`, whose
slots bound the decodes of all models together. Loading happens once even when
several requests ask at once.

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
from collections.abc import Callable, Sequence
from pathlib import Path

from orac_node.decode.engine import WhisperEngine
from orac_node.decode.modelfiles import check_loadable
from orac_node.decode.scheduler import Decoder, InferenceScheduler
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
    """The node's model plus lazily loaded extra models, by name, all in one scheduler.

    The main model's engines are handed over by :meth:`start` once loaded and warm
    (the node does that before it takes input).
    """

    def __init__(
        self,
        main_name: str,
        *,
        extra: dict[str, Path],
        threads: int,
        use_gpu: bool,
        cache_dir: Path,
        slots: int = 1,
        load_engine: Callable[[Path], Decoder] | None = None,
    ) -> None:
        self.main_name = main_name
        self._extra = dict(extra)
        self._threads = threads
        self._use_gpu = use_gpu
        self._cache_dir = cache_dir
        self._slots = slots
        self._load_engine = load_engine or self._load_whisper
        self._scheduler: InferenceScheduler | None = None
        self._loaded: set[str] = set()
        self._loading: dict[str, asyncio.Task[None]] = {}
        self._failed: dict[str, tuple[str, float]] = {}  # name -> (why, retry at)

    def start(self, engines: Sequence[Decoder]) -> InferenceScheduler:
        """The main model is loaded: the scheduler that serves every model from now on."""
        self._scheduler = InferenceScheduler(
            engines, cores=self._threads, slots=self._slots, model=self.main_name
        )
        self._loaded.add(self.main_name)
        return self._scheduler

    @property
    def scheduler(self) -> InferenceScheduler:
        """The node's scheduler (set by :meth:`start`)."""
        assert self._scheduler is not None, "the main model is not loaded yet"
        return self._scheduler

    @property
    def queued(self) -> int:
        """Decode jobs waiting for a worker, every model's."""
        return 0 if self._scheduler is None else self._scheduler.queued

    @property
    def names(self) -> list[str]:
        """Every model this node can decode with."""
        return [self.main_name, *(n for n in self._extra if n != self.main_name)]

    @property
    def loaded(self) -> list[str]:
        """Models loaded now."""
        return [name for name in self.names if name in self._loaded]

    async def ensure(self, name: str | None) -> str:
        """Model ``name`` (None: the main one), loaded on first use; its name.

        Raises :class:`UnknownModelError` for a name not listed, and
        :class:`ModelUnavailableError` for one whose file does not load.
        """
        name = name or self.main_name
        if name in self._loaded:
            return name
        if name not in self._extra:
            raise UnknownModelError(f"model {name!r} is not available; try one of {self.names}")
        failed = self._failed.get(name)
        if failed is not None and time.monotonic() < failed[1]:
            raise ModelUnavailableError(name, failed[0], fresh=False)
        task = self._loading.get(name)
        if task is None:
            task = self._loading[name] = asyncio.create_task(self._load(name), name=f"load-{name}")
        try:
            await asyncio.shield(task)
        finally:
            if task.done():
                self._loading.pop(name, None)
        return name

    async def _load(self, name: str) -> None:
        path = self._extra[name].expanduser()
        log.info("loading model %s from %s", name, path)
        try:
            engine = await asyncio.to_thread(self._load_engine, path)
        except ModelError as exc:
            self._failed[name] = (str(exc), time.monotonic() + RETRY_LOAD_S)
            log.warning(
                "model %s cannot be loaded (tried again in %.0f s): %s", name, RETRY_LOAD_S, exc
            )
            raise ModelUnavailableError(name, str(exc), fresh=True) from exc
        self._failed.pop(name, None)
        self.scheduler.add_model(name, [engine])
        self._loaded.add(name)

    def _load_whisper(self, path: Path) -> Decoder:
        """Probe, load and warm a whisper.cpp model (blocking: in a thread)."""
        check_loadable(path, stamp_dir=self._cache_dir)
        engine = WhisperEngine(path, threads=self._threads, use_gpu=self._use_gpu)
        engine.warm_up()
        return engine
