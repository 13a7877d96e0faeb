"""The connection half of a :class:`~orac_node.client.Client`: heartbeat, subscriptions, routing.

A :class:`~orac_node.client.Client` holds one MQTT v5 connection and one reader
task that hands each incoming message to whoever waits for it: a request's
response (matched on its correlation data), a stream's transcripts, a
transcript feed. :class:`Connection` is that part; the calls built on it
(requests, context, streaming) are in core.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any, Self

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from orac_node.client.inbox import Inbox
from orac_node.client.link import connect, payload_bytes
from orac_node.client.sources import check_name
from orac_node.errors import BrokerError, ClientError, ContractError
from orac_node.mqtt.options import BrokerLogin
from orac_node.wire import (
    Response,
    SatelliteState,
    SatelliteStatus,
    response_topic,
    satellite_status_topic,
)

log = logging.getLogger("orac_node.client")


def _failed(code: Any) -> bool:  # noqa: ANN401 - paho gives ReasonCode (v5) or int (v3)
    """Whether a SUBACK code refuses the subscription.

    Mosquitto grants every subscription and filters deliveries by its ACL, but
    other brokers refuse unreadable filters here, and then we say so at once.
    """
    return bool(getattr(code, "is_failure", False)) or (isinstance(code, int) and code >= 0x80)


async def cancel(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it (our own cancellation still propagates)."""
    task.cancel()
    await asyncio.wait({task})


class Connection:
    """One broker connection for a :class:`~orac_node.client.Client`, and its message routing.

    It takes :class:`~orac_node.client.Client`'s arguments (documented there), keeps
    the heartbeat, subscribes each topic filter once for all its readers and
    hands every incoming message to them.
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
        self._login = BrokerLogin.of(broker)
        try:
            parsed = self._login.parsed()
        except ValueError as exc:
            raise BrokerError(str(exc)) from None
        if device is not None:
            check_name("device", device)
        self.topics = [check_name("topic", t) for t in topics]
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        self.device = device
        self.timeout = timeout
        self._where = parsed.redacted()
        self.client_id = client_id or f"orac-client-{uuid.uuid4().hex[:8]}"
        self._heartbeat = heartbeat and device is not None
        # Responses come to the MQTT user name (the ACL's orac/response/<user>/#),
        # under a level of this instance's own so clients sharing a user name
        # are not sent each other's responses.
        self.owner = parsed.username or self.client_id
        self._reply_level = uuid.uuid4().hex[:12]
        self._response_filter = response_topic(self.owner, f"{self._reply_level}/#")
        self._mqtt: aiomqtt.Client | None = None
        self._stack: AsyncExitStack | None = None
        self._failure: BrokerError | None = None
        self._inboxes: list[Inbox] = []
        self._pending: dict[bytes, asyncio.Future[Response]] = {}
        self._refs: dict[str, int] = {}  # subscribed filter -> readers using it
        self._filter_ids: dict[str, int] = {}
        self._id_filters: dict[int, str] = {}
        self._next_id = 1
        self._sub_lock = asyncio.Lock()
        self._responses_ready = False
        self._entered = False

    # -- connection ---------------------------------------------------------

    def _status(self, state: SatelliteState) -> SatelliteStatus:
        assert self.device is not None
        return SatelliteStatus(self.device, state, list(self.topics), time.time())

    async def __aenter__(self) -> Self:
        if self._entered:
            # Its subscriptions and waiters belong to the old connection.
            raise ClientError("a Client is entered once: make a new one to reconnect")
        self._entered = True
        will = None
        if self._heartbeat:
            offline = self._status("offline").encode()
            will = aiomqtt.Will(
                satellite_status_topic(self.device or ""), offline, qos=1, retain=True
            )
        async with AsyncExitStack() as stack:
            stack.callback(self._forget_connection)  # undone by pop_all once all went well
            self._mqtt = await stack.enter_async_context(
                connect(self._login, client_id=self.client_id, will=will)
            )
            stack.callback(self._close_waiters)
            reader = asyncio.create_task(self._read(), name=f"orac-client-{self.client_id}")
            stack.push_async_callback(cancel, reader)
            if self._heartbeat:
                await self._publish(
                    satellite_status_topic(self.device or ""),
                    self._status("online").encode(),
                    retain=True,
                )
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        try:
            if self._heartbeat and self._failure is None:
                await self._publish(
                    satellite_status_topic(self.device or ""),
                    self._status("offline").encode(),
                    retain=True,
                )
        finally:
            await stack.aclose()

    def _forget_connection(self) -> None:
        self._mqtt = None

    def _connected(self) -> aiomqtt.Client:
        if self._failure is not None:
            raise self._failure
        if self._mqtt is None:
            raise ClientError("the client is not connected: use it in `async with Client(...)`")
        return self._mqtt

    def _close_waiters(self) -> None:
        closed = ClientError("the client was closed")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(closed)
        for inbox in self._inboxes:
            inbox.put(closed)

    async def _publish(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        try:
            await self._connected().publish(
                topic, payload, qos=1, retain=retain, properties=properties
            )
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"{self._where}: publishing on {topic} failed: {exc}") from exc

    # -- routing ------------------------------------------------------------

    async def _read(self) -> None:
        """Hand every incoming message to its readers, until the connection ends."""
        assert self._mqtt is not None
        try:
            async for message in self._mqtt.messages:
                try:
                    self._route(message)
                except Exception:  # one odd message must not stop every reader
                    log.exception("could not route a message on %s", message.topic)
        except aiomqtt.MqttError as exc:
            self._failure = BrokerError(f"{self._where}: connection lost: {exc}")
            log.warning("%s", self._failure)
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(self._failure)
            for inbox in self._inboxes:
                inbox.put(self._failure)

    def _route(self, message: aiomqtt.Message) -> None:
        # Mosquitto sends one copy of a message per matching subscription, each
        # with that subscription's identifier: a copy goes only to the readers of
        # that subscription, so overlapping readers (transcript/# and
        # transcript/general) each see a message once.
        ids = getattr(message.properties, "SubscriptionIdentifier", None)
        if ids:
            filters = {self._id_filters[i] for i in ids if i in self._id_filters}
        else:  # a broker that sends no identifiers: match on the topic
            filters = {f for f in self._refs if message.topic.matches(f)}
        if self._response_filter in filters:
            self._on_response(message)
        for inbox in self._inboxes:
            if filters.intersection(inbox.filters):
                inbox.put(message)

    def _on_response(self, message: aiomqtt.Message) -> None:
        correlation = getattr(message.properties, "CorrelationData", None)
        future = self._pending.get(bytes(correlation)) if correlation else None
        if future is None or future.done():
            log.debug("a response on %s that nobody waits for", message.topic)
            return
        try:
            future.set_result(Response.decode(payload_bytes(message)))
        except ContractError as exc:
            future.set_exception(exc)

    async def _subscribe(self, topic_filter: str) -> None:
        async with self._sub_lock:
            if topic_filter in self._refs:
                self._refs[topic_filter] += 1
                return
            ident, self._next_id = self._next_id, self._next_id + 1
            properties = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]
            properties.SubscriptionIdentifier = ident
            self._id_filters[ident] = topic_filter  # before retained messages can arrive
            try:
                codes = await self._connected().subscribe(
                    topic_filter, qos=1, properties=properties
                )
            except aiomqtt.MqttError as exc:
                del self._id_filters[ident]
                raise BrokerError(f"{self._where}: subscribing to {topic_filter}: {exc}") from exc
            if any(_failed(code) for code in codes):
                del self._id_filters[ident]
                raise ClientError(
                    f"the broker refused a subscription to {topic_filter}: "
                    f"{codes[0]} (see docs/CLIENT.md for the permissions)"
                )
            self._refs[topic_filter] = 1
            self._filter_ids[topic_filter] = ident

    async def _unsubscribe(self, topic_filter: str) -> None:
        async with self._sub_lock:
            self._refs[topic_filter] -= 1
            if self._refs[topic_filter]:
                return
            del self._refs[topic_filter]
            ident = self._filter_ids.pop(topic_filter)
            if self._mqtt is not None and self._failure is None:
                try:
                    await self._mqtt.unsubscribe(topic_filter)
                except aiomqtt.MqttError as exc:
                    log.debug("unsubscribing from %s: %s", topic_filter, exc)
            self._id_filters.pop(ident, None)

    @asynccontextmanager
    async def _listen(self, *filters: str) -> AsyncIterator[Inbox]:
        """An inbox for ``filters``, subscribed while the block runs."""
        inbox = Inbox(filters)
        self._inboxes.append(inbox)
        subscribed: list[str] = []
        try:
            for topic_filter in filters:
                await self._subscribe(topic_filter)
                subscribed.append(topic_filter)
            yield inbox
        finally:
            self._inboxes.remove(inbox)
            for topic_filter in subscribed:
                await self._unsubscribe(topic_filter)

    @property
    def subscriptions(self) -> frozenset[str]:
        """The topic filters this client is subscribed to now."""
        return frozenset(self._refs)
