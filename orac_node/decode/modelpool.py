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

Tiers: partials and finals may use different models (``model.partials``,
``model.finals``, and a topic's ``partials_model`` / ``model``): a small fast
model keeps partials cheap while a bigger one decodes the finals. Either may
be the node's own model. The node's tiers are loaded before it takes input (a
file that does not load stops the start: a misconfigured node must say so, not
quietly decode with another model); a topic's are loaded on first use and fall
back to the node's like any ``model.extra`` model.

For each loaded model the pool keeps what loading it cost (:class:`LoadedModel`:
seconds, and how much the process grew, read from /proc), which ``describe``
reports: the figures an operator needs to choose tiers on a small box.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from orac_node.decode.engine import WhisperEngine
from orac_node.decode.experiment import CANDIDATE, CHAMPION, ExperimentStats
from orac_node.decode.languages import model_languages, unsupported
from orac_node.decode.modelfiles import check_loadable
from orac_node.decode.scheduler import Decoder, InferenceScheduler
from orac_node.errors import ConfigError, ModelError
from orac_node.models.ggml import read_hparams
from orac_node.wire import TopicConfig

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


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """What loading one model cost: seconds, and the process's growth in bytes (None: unknown).

    The growth is the resident set before and after the load, so a load that
    overlapped other work (an extra model loaded while sessions decode) is
    approximate; the node's own models load before any input.
    """

    load_s: float
    memory_bytes: int | None


def resident_bytes() -> int | None:
    """The resident set size of this process (Linux /proc), or None where it cannot be read."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


class ModelPool:
    """The node's model plus lazily loaded extra models, by name, all in one scheduler.

    The main model's engines are handed over by :meth:`start` once loaded and warm
    (the node does that before it takes input).
    """

    def __init__(
        self,
        main_name: str,
        *,
        main_path: Path | None = None,
        extra: dict[str, Path],
        threads: int,
        use_gpu: bool,
        cache_dir: Path,
        slots: int = 1,
        partials: str | None = None,
        finals: str | None = None,
        load_engine: Callable[[Path], Decoder] | None = None,
    ) -> None:
        self.main_name = main_name
        self._main_path = main_path
        self._extra = dict(extra)
        for tier, name in (("model.partials", partials), ("model.finals", finals)):
            if name is not None and name not in self.names:
                raise ConfigError(f"{tier} {name!r} is neither the node's model nor in model.extra")
        self.partials = partials or main_name
        self.finals = finals or main_name
        self.configured = (self.partials, self.finals)  # what a selection of null goes back to
        self.costs: dict[str, LoadedModel] = {}
        self.ab = ExperimentStats()  # the A/B test of the finals model, if one runs
        self._multilingual: dict[str, bool] = {}
        self._threads = threads
        self._use_gpu = use_gpu
        self._cache_dir = cache_dir
        self._slots = slots
        self._load_engine = load_engine or self._load_whisper
        self._scheduler: InferenceScheduler | None = None
        self._loaded: set[str] = set()
        self._loading: dict[str, asyncio.Task[None]] = {}
        self._failed: dict[str, tuple[str, float]] = {}  # name -> (why, retry at)

    def start(
        self, engines: Sequence[Decoder], cost: LoadedModel | None = None
    ) -> InferenceScheduler:
        """The main model is loaded: the scheduler that serves every model from now on."""
        self._scheduler = InferenceScheduler(
            engines, cores=self._threads, slots=self._slots, model=self.main_name
        )
        self._loaded.add(self.main_name)
        if cost is not None:
            self.costs[self.main_name] = cost
        return self._scheduler

    def offer(self, name: str, path: Path) -> None:
        """Make a model from the store available by name (loaded on first use)."""
        if name == self.main_name or self._extra.get(name) == path:
            return
        if name in self._loaded:
            raise ModelError(f"model {name!r} is loaded from {self._extra[name]}, not {path}")
        self._extra[name] = path
        self._failed.pop(name, None)
        self._multilingual.pop(name, None)

    def select(self, *, partials: str, finals: str) -> None:
        """Decode from now on with these loaded models (a promote or a rollback).

        Decodes already running finish on the model they started with; nothing
        else changes, so no session is dropped or decoded twice.
        """
        for name in (partials, finals):
            if name not in self._loaded:
                raise ModelError(f"model {name!r} is not loaded")
        self.partials, self.finals = partials, finals

    async def load_tiers(self) -> None:
        """Load the node's partials and finals models now (raises :class:`ModelError`)."""
        for name in dict.fromkeys((self.partials, self.finals)):
            try:
                await self.ensure(name)
            except ModelUnavailableError as exc:
                raise ModelError(f"{exc} (named by model.partials or model.finals)") from None

    def finals_for(self, device: str) -> str:
        """The finals model of ``device``: the candidate when an A/B test gives it that."""
        experiment = self.ab.experiment
        if experiment is not None and experiment.variant(device) == CANDIDATE:
            return self.resolve(experiment.candidate)
        return self.finals

    def variant_of(self, model: str) -> str | None:
        """Which side of the running A/B test a final decoded with ``model`` is on."""
        experiment = self.ab.experiment
        if experiment is None:
            return None
        return CANDIDATE if model == experiment.candidate else CHAMPION

    def tiers(self, topic: TopicConfig) -> tuple[str, str]:
        """The models a topic's partials and finals decode with, as far as known now."""
        return self.resolve(topic.partials_model, "partials"), self.resolve(topic.model, "finals")

    def resolve(self, name: str | None, tier: str = "finals") -> str:
        """The model a decode asking for ``name`` gets (None: the node's for ``tier``).

        A name this node does not offer, or one remembered as not loading, gets
        the node's own model, as its decodes will.
        """
        if name is None:
            return self.partials if tier == "partials" else self.finals
        if name not in self.names or name in self._failed:
            return self.main_name
        return name

    def file(self, name: str) -> Path | None:
        """The model file of ``name`` (None: engines handed in without one, in tests)."""
        return self._main_path if name == self.main_name else self._extra.get(name)

    def multilingual(self, name: str) -> bool:
        """Whether model ``name`` decodes other languages than English (from its file's header).

        Engines handed in without a file (tests), and files whose header cannot
        be read, follow whisper.cpp's naming: ``*.en`` models are English-only.
        The answer is kept, so a session opening reads no file; a model loaded
        or offered later is read again (:meth:`_load`, :meth:`offer`).
        """
        known = self._multilingual.get(name)
        if known is not None:
            return known
        path = self.file(name)
        multilingual = not name.endswith(".en")
        if path is not None:
            try:
                multilingual = read_hparams(path.expanduser()).multilingual
            except ModelError as exc:
                log.warning("cannot read the header of model %s: %s", name, exc)
        self._multilingual[name] = multilingual
        return multilingual

    def languages(self, name: str) -> list[str]:
        """The languages model ``name`` can be asked for."""
        return model_languages(self.multilingual(name))

    def language_refusal(self, language: str, models: Iterable[str]) -> str | None:
        """Why ``models`` cannot decode ``language`` (None: they can)."""
        return unsupported(language, {name: self.multilingual(name) for name in models})

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
        started, before = time.monotonic(), resident_bytes()
        try:
            engine = await asyncio.to_thread(self._load_engine, path)
        except ModelError as exc:
            self._failed[name] = (str(exc), time.monotonic() + RETRY_LOAD_S)
            log.warning(
                "model %s cannot be loaded (tried again in %.0f s): %s", name, RETRY_LOAD_S, exc
            )
            raise ModelUnavailableError(name, str(exc), fresh=True) from exc
        self._failed.pop(name, None)
        self._multilingual.pop(name, None)  # a file put right may say otherwise now
        after = resident_bytes()
        grown = after - before if after is not None and before is not None else None
        self.costs[name] = LoadedModel(round(time.monotonic() - started, 3), grown)
        self.scheduler.add_model(name, [engine])
        self._loaded.add(name)
        log.info("model %s loaded in %.2f s", name, self.costs[name].load_s)

    def _load_whisper(self, path: Path) -> Decoder:
        """Probe, load and warm a whisper.cpp model (blocking: in a thread)."""
        check_loadable(path, stamp_dir=self._cache_dir)
        engine = WhisperEngine(path, threads=self._threads, use_gpu=self._use_gpu)
        engine.warm_up()
        return engine
