"""A final's decode: the model asked for (or the node's), from the cache when decoded alike before.

Finals of live sessions, files and Core's requests all decode through
:meth:`FinalDecoder.decode`, so a request's text is what a streamed session's
would be. Live finals queue in the scheduler's live lane; files and transcribe
requests in the batch lane, a window at a time (longform.py), so no live
session waits behind them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from orac_node.audio import Samples
from orac_node.decode.cache import TranscriptCache, cache_key
from orac_node.decode.decoding import DecodeOptions, FinalDecoding
from orac_node.decode.gate import strip_annotations
from orac_node.decode.longform import SpeechProbabilities, decode_long
from orac_node.decode.modelpool import ModelPool, ModelUnavailableError, UnknownModelError
from orac_node.decode.scheduler import Lane
from orac_node.wire import SAMPLE_RATE

log = logging.getLogger(__name__)


class FinalDecoder:
    """Decodes finals with the node's models and its response cache."""

    def __init__(
        self, pool: ModelPool, cache: TranscriptCache | None, *, speech: SpeechProbabilities
    ) -> None:
        self.pool = pool
        self._cache = cache
        self._speech = speech
        self._stores: set[asyncio.Task[None]] = set()
        self.cache_hits = self.cache_misses = 0

    async def choose(
        self, model: str | None, *, strict: bool = False, tier: str = "finals"
    ) -> tuple[str, str | None]:
        """The model to decode with, and why it is not the one asked for.

        ``model`` None: the node's model for the ``tier`` (``partials`` or
        ``finals``, model.partials / model.finals). A topic config naming a model
        this node cannot load must not cost the user their final: not
        ``strict``, it falls back to the main model (the reason is returned the
        first time, for the sender to be told once). A request asked for that
        model explicitly: ``strict`` raises.
        """
        pool = self.pool
        if model is None:
            model = pool.partials if tier == "partials" else pool.finals
        try:
            return await pool.ensure(model), None
        except (UnknownModelError, ModelUnavailableError) as exc:
            if strict:
                raise
            fresh = isinstance(exc, ModelUnavailableError) and exc.fresh
            if isinstance(exc, UnknownModelError):
                log.warning("model %r is not available here; using %s", model, pool.main_name)
            fallback = f"{exc}; decoded with {pool.main_name}" if fresh else None
            return pool.main_name, fallback

    async def decode(
        self,
        audio: Samples,
        options: DecodeOptions,
        model: str | None = None,
        *,
        strict: bool = False,
        lane: Lane = Lane.LIVE,
        verify: tuple[float, float] | None = None,
    ) -> FinalDecoding:
        """A final's decoding (from the response cache when decoded alike before).

        ``lane`` BATCH: a file or a request's audio, decoded behind live work.
        ``verify``: seconds of ``audio`` holding its speech (a short utterance's,
        gate.verify_window): decoded again alone, the text in ``check``.
        """
        name, fallback = await self.choose(model, strict=strict)
        result = await self._decode(audio, options, name, lane)
        check = None
        if verify is not None and strip_annotations(result.decoding.text):
            start, end = (round(s * SAMPLE_RATE) for s in verify)
            again = await self._decode(audio[start:end], options, name, lane)
            check = again.decoding.text
        return dataclasses.replace(result, fallback=fallback, check=check)

    async def _decode(
        self, audio: Samples, options: DecodeOptions, model: str, lane: Lane
    ) -> FinalDecoding:
        cache = self._cache
        key = cache_key(audio, model=model, options=options) if cache is not None else ""
        if cache is not None:
            cached = await cache.get(key)
            if cached is not None:
                self.cache_hits += 1
                return FinalDecoding(cached, queue_ms=0.0, model=model)
            self.cache_misses += 1
        scheduler = self.pool.scheduler
        if lane is Lane.BATCH:
            result = await decode_long(scheduler, audio, options, model=model, speech=self._speech)
        else:
            result = await scheduler.final(audio, options, model=model, lane=lane)
        if cache is not None and not result.decoding.aborted:
            # Stored in the background: a slow cache must not hold back the final.
            store = asyncio.create_task(cache.put(key, result.decoding), name="cache-put")
            self._stores.add(store)
            store.add_done_callback(self._stores.discard)
        return result

    async def close(self) -> None:
        """Wait for results being stored, and release the cache's connections."""
        if self._cache is not None:
            await asyncio.gather(*self._stores, return_exceptions=True)
            await self._cache.close()
