"""The blocking wrapper: :class:`SyncClient`, a :class:`~orac_node.client.Client` in a thread."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Iterable, Iterator
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar, cast

from orac_node.client.core import Client
from orac_node.errors import ClientError
from orac_node.mqtt.options import BrokerLogin

P = ParamSpec("P")
R = TypeVar("R")
Y = TypeVar("Y")


def _blocking(
    method: Callable[Concatenate[Client, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[SyncClient, P], R]:
    @functools.wraps(method)
    def call(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._run(method(self.client, *args, **kwargs))

    return call


def _blocking_iter(
    method: Callable[Concatenate[Client, P], AsyncIterable[Y]],
) -> Callable[Concatenate[SyncClient, P], Iterator[Y]]:
    @functools.wraps(method)
    def call(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[Y]:
        return self._iterate(aiter(method(self.client, *args, **kwargs)))

    return call


_END = object()


async def _next_or_end(iterator: AsyncIterator[Y]) -> Y | object:
    try:
        return await anext(iterator)
    except StopAsyncIteration:
        return _END


class SyncClient:
    """:class:`Client` for scripts that do not use asyncio: the same calls, blocking.

    The client runs on its own event loop in a background thread; each call
    waits for its result, and :meth:`stream` and :meth:`transcripts` return
    plain iterators. Use it as ``with SyncClient(url, ...) as c``. The
    arguments are :class:`Client`'s.
    """

    def __init__(
        self,
        broker: str | BrokerLogin,
        *,
        device: str | None = None,
        client_id: str | None = None,
        topics: Iterable[str] = (),
        heartbeat: bool = True,
        timeout: float = 30.0,
    ) -> None:
        self.client = Client(
            broker,
            device=device,
            client_id=client_id,
            topics=topics,
            heartbeat=heartbeat,
            timeout=timeout,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        loop = asyncio.new_event_loop()
        # A daemon thread, so an interrupted script can always exit.
        thread = threading.Thread(target=loop.run_forever, name="orac-client", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._run(self.client.__aenter__())
        except BaseException:
            self._shut_down()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._run(self.client.__aexit__(exc_type, exc, tb))
        finally:
            self._shut_down()

    def _shut_down(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    def _run(self, coroutine: Coroutine[Any, Any, R]) -> R:
        loop = self._loop
        if loop is None:
            coroutine.close()
            raise ClientError("the client is not connected: use it in `with SyncClient(...)`")
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. Ctrl-C while waiting: stop the work too
            raise

    def _iterate(self, iterator: AsyncIterator[Y]) -> Iterator[Y]:
        try:
            while True:
                item = self._run(_next_or_end(iterator))
                if item is _END:
                    return
                yield cast(Y, item)
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None and self._loop is not None:
                self._run(close())

    @property
    def device(self) -> str | None:
        """The device name this client streams as (None: it does not stream)."""
        return self.client.device

    describe = _blocking(Client.describe)
    transcribe = _blocking(Client.transcribe)
    retranscribe = _blocking(Client.retranscribe)
    set_context = _blocking(Client.set_context)
    clear_context = _blocking(Client.clear_context)
    stream = _blocking_iter(Client.stream)
    transcripts = _blocking_iter(Client.transcripts)
