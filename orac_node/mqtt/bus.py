"""The node's one MQTT connection: connect, resubscribe, reconnect, publish.

Follows aiomqtt's documented reconnect loop (``async with Client`` inside
``try/except MqttError``, sleep with capped, jittered backoff, repeat). Every
publish goes through an in-memory outbox drained by the connection, so a final
produced while the broker is away is sent when it returns instead of being
lost; the outbox is bounded and drops partials before anything else, counting
every drop. Up to the broker's Receive Maximum (capped at :data:`SEND_WINDOW`)
of its messages are in flight at once, in order; each leaves the outbox at its
PUBACK, so what was in flight when a connection drops is sent again. Incoming
messages land in a bounded queue whose overflow is counted too (aiomqtt alone
would discard them with only a log line).

Under load (docs/FLEET.md, "Overload"):

- up to :data:`READ_BATCH` packets are read per readiness of the socket, so a
  backlog waits in the queue, where it is measured (how long each message
  waited: :meth:`Bus.take_worst_wait`, the node's lag), not in the kernel;
- the node's *screen* sees each message as it arrives and may take it at
  once (a refused session's chunks): it is acknowledged and never queued;
- publishes have no timeout of their own, and a socket paho closed without
  telling aiomqtt ends the connection within :data:`SOCKET_CHECK_S`.

Nothing is lost across broker or node restarts:

- The session is persistent (MQTT v5 clean start off, ``session_expiry_s``)
  under a client id derived from the node id, and audio is subscribed at QoS 1,
  so the broker queues the audio published while the node is away and delivers
  it when the same node returns.
- Incoming QoS 1 messages are acknowledged *manually*, after the handler has
  taken them (spooled them to disk, ingest/spool.py), not by paho on receipt: a
  message the node has not taken yet is redelivered to the next process. The
  handler may also decline a message (returns False: a new session while
  draining); it stays unacknowledged and goes to the node's next run. (aiomqtt
  2.x has no manual acknowledgements: paho.py reaches them, in one place.)
- Messages wait in the client's queue until :meth:`open_intake`, so audio the
  broker delivers right after connecting is not handled before the node is
  ready for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt
from paho.mqtt.properties import Properties

from orac_node.config import BrokerSection
from orac_node.mqtt import paho
from orac_node.mqtt.options import NO_DELAY, tls_parameters

log = logging.getLogger(__name__)

INCOMING_QUEUE = 50_000
"""Messages received but not yet handled: 5 s of the 10,000 msg/s ingest target
(each holds a ~0.7 KB chunk plus the client library's objects), enough to ride
out a stall without losing chunks. Beyond it
the node is not keeping up and dropping (counted, logged) beats unbounded
memory growth (measured: +4,100 msg/s with aiomqtt's unbounded default)."""
RECEIVE_MAXIMUM = 10_000
"""QoS 1 messages the broker may send the node before it acknowledges them (MQTT v5
Receive Maximum; 65,535 when a client does not say). Acks are manual, after intake
has taken a message, so this is the node's backpressure: 1 s of the ingest target
in flight, a fifth of :data:`INCOMING_QUEUE`, so QoS 1 audio can never overflow the
queue; when the node falls behind, the rest waits in the broker's queue for the
session instead. (Measured: with a window as large as the queue, the queue
overflowed at 10,000 msg/s, and every dropped, never-acknowledged message held a
slot of the window until the node stalled at exactly 50,000 messages.)"""
READ_BATCH = 100
"""Packets read each time the socket is readable (paho alone reads one): enough to
move a backlog into the incoming queue at once, few enough (about 4 ms of
parsing) that handling what is queued is never held up for long."""
SOCKET_CHECK_S = 0.5
"""How often the connection's socket is checked (:func:`_watch_socket`): a dead
connection is noticed within half a second instead of a keepalive."""
SEND_WINDOW = 100
"""Most of the node's own QoS 1 publishes in flight at once (fewer when the broker's
Receive Maximum says so; Mosquitto's default is 20). One at a time, the outbox sent
one message per round trip; a burst of finals and error reports now goes at once."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message waiting in the outbox."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    droppable: bool = False  # partials: worthless once stale, first to go when full
    on_sent: Callable[[], None] | None = None  # after the broker has it (PUBACK at QoS 1)
    properties: Properties | None = None  # MQTT v5 (a response's correlation data)


def _counting_queue(
    on_arrival: Callable[[aiomqtt.Message], bool],
    on_drop: Callable[[aiomqtt.Message], None],
    waits: _Waits,
) -> type[asyncio.Queue[aiomqtt.Message]]:
    """A queue class for aiomqtt's incoming messages that reports each discard and each wait.

    ``on_arrival`` sees every message first and returns True for one it dealt
    with already (the node's screen), which is then not queued.
    """

    class CountingQueue(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            if on_arrival(item):
                return
            if self.full():
                on_drop(item)
            super().put_nowait(item)  # raises QueueFull, which aiomqtt handles
            waits.put()

        def get_nowait(self) -> aiomqtt.Message:
            item = super().get_nowait()  # asyncio.Queue.get ends here too
            waits.got()
            return item

    return CountingQueue


class _Waits:
    """When each queued message arrived, to tell how long it waited (the node's lag).

    The queue is first in, first out, so the arrival times are too; a
    connection's queue starts empty and so does this.
    """

    def __init__(self) -> None:
        self._arrived: deque[float] = deque()
        self.worst = 0.0  # the longest wait since Bus.take_worst_wait last read it

    def put(self) -> None:
        self._arrived.append(time.monotonic())

    def got(self) -> None:
        if self._arrived:
            self.worst = max(self.worst, time.monotonic() - self._arrived.popleft())

    def reset(self) -> None:
        self._arrived.clear()


class Bus:
    """Owns the MQTT client for the life of the node."""

    def __init__(
        self,
        settings: BrokerSection,
        *,
        client_id: str,
        will: Outgoing,
        subscriptions: list[tuple[str, int]],
        on_message: Callable[[aiomqtt.Message], bool],
        on_connected: Callable[[], None] | None = None,
        on_session_lost: Callable[[], None] | None = None,
        screen: Callable[[aiomqtt.Message], bool] | None = None,
    ) -> None:
        self._settings = settings
        self._client_id = client_id
        self._will = will
        self._subscriptions = list(subscriptions)
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_session_lost = on_session_lost
        self._screen = screen
        self._session_present = False  # the last CONNACK's flag
        self._send_window = SEND_WINDOW  # the last CONNACK's Receive Maximum, capped
        self._outbox: deque[Outgoing] = deque()
        self._outbox_ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._consuming = asyncio.Event()  # set once the node takes input (open_intake)
        self.connected = asyncio.Event()
        self.outbox_dropped = 0
        self.incoming_dropped = 0
        self.connects = 0
        self.in_flight_peak = 0  # most publishes awaiting their PUBACK at once
        self._waits = _Waits()

    def _count_incoming_drop(self, message: aiomqtt.Message) -> None:
        client = self._client
        if client is not None:
            # lost either way; unacknowledged it would also hold a slot of the window
            paho.acknowledge(client, message)
        self.incoming_dropped += 1
        if self.incoming_dropped in (1, 10, 100) or self.incoming_dropped % 1000 == 0:
            log.warning("node behind: %d incoming messages dropped", self.incoming_dropped)

    def _arrival(self, message: aiomqtt.Message) -> bool:
        """Whether the node's screen took ``message`` as it arrived (then it is acknowledged).

        The screen drops, on arrival, what the node would drop anyway once the
        message's turn came (a refused session's chunks, another node's
        devices'), so a node behind on its input does not queue them behind the
        sessions it keeps, and refuses a new session the moment it arrives.
        """
        screen, client = self._screen, self._client
        if screen is None or client is None or not self._consuming.is_set():
            return False
        try:
            taken = screen(message)
        except Exception:  # the message goes the usual way: intake reports what is wrong
            log.exception("screening a message on %s failed", message.topic)
            return False
        if taken:
            paho.acknowledge(client, message)
        return taken

    def add_subscriptions(self, subscriptions: list[tuple[str, int]]) -> None:
        """More topic filters, subscribed with the others (before :meth:`open_intake`)."""
        self._subscriptions += subscriptions

    async def unsubscribe(self, topic: str) -> None:
        """Stop receiving ``topic`` (also after reconnects); a no-op while disconnected."""
        self._subscriptions = [(t, q) for t, q in self._subscriptions if t != topic]
        client = self._client
        if client is not None and self.connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError):
                await client.unsubscribe(topic)

    def take_worst_wait(self) -> float:
        """The longest an incoming message waited to be handled since the last call, seconds.

        How far behind the node runs (ingest/load.py): on an idle node well
        under a millisecond.
        """
        worst, self._waits.worst = self._waits.worst, 0.0
        return worst

    @property
    def outbox_size(self) -> int:
        """Messages not yet handed to the broker."""
        return len(self._outbox)

    def publish(self, message: Outgoing) -> None:
        """Queue a message for the broker; never blocks."""
        if len(self._outbox) >= self._settings.outbox_size and not self._make_room(message):
            self.outbox_dropped += 1
            log.warning("outbox full, dropped a message for %s", message.topic)
            return
        self._outbox.append(message)
        self._outbox_ready.set()

    def _make_room(self, message: Outgoing) -> bool:
        """Free one slot: the oldest partial goes first; a partial never evicts a final."""
        victim = next((i for i, queued in enumerate(self._outbox) if queued.droppable), None)
        if victim is None and message.droppable:
            return False
        del self._outbox[0 if victim is None else victim]
        self.outbox_dropped += 1
        return True

    async def open_intake(self) -> None:
        """Start handling input; subscribe once connected, and after every reconnect."""
        self._consuming.set()
        await self.connected.wait()
        client = self._client
        if client is not None:
            for topic, qos in self._subscriptions:
                await client.subscribe(topic, qos)

    async def run(self) -> None:
        """Stay connected until :meth:`stop`; returns once the outbox is flushed."""
        attempt = 0
        while not self._stopping.is_set():
            connects_before = self.connects
            error: BaseException | None = None
            try:
                await self._connection()
            except* aiomqtt.MqttError as group:
                error = _first_leaf(group)
            if error is None:
                return
            self.connected.clear()
            self._client = None
            if self.connects > connects_before:
                attempt = 0  # we were connected: start the backoff over
            delay = _backoff(attempt, self._settings)
            attempt += 1
            log.error("broker %s: %s; reconnecting in %.1f s", self._settings.url, error, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()

    async def _connection(self) -> None:
        will = self._will
        client = aiomqtt.Client(
            self._settings.host,
            self._settings.port,
            identifier=self._client_id,
            username=self._settings.username,
            password=secret.get_secret_value() if (secret := self._settings.password) else None,
            protocol=aiomqtt.ProtocolVersion.V5,
            keepalive=self._settings.keepalive_s,
            will=aiomqtt.Will(will.topic, will.payload, will.qos, will.retain),
            clean_start=False,  # resume the node's session: audio queued while away
            properties=paho.session_properties(
                self._settings.session_expiry_s, receive_maximum=RECEIVE_MAXIMUM
            ),
            tls_params=_tls(self._settings),
            socket_options=NO_DELAY,
            queue_type=_counting_queue(self._arrival, self._count_incoming_drop, self._waits),
            max_queued_incoming_messages=INCOMING_QUEUE,
            logger=logging.getLogger("orac_node.paho"),
        )
        paho.check(client)
        self._waits.reset()  # a new connection's queue is empty
        paho.enable_manual_acks(client)
        paho.read_eagerly(client, READ_BATCH)
        paho.on_connack(client, self._connack)
        async with client:
            self._client = client
            self.connects += 1
            if self.connects > 1 and not self._session_present:
                # The broker no longer had our session (it expired, or a broker without
                # persistence restarted): retained state it held may be gone too, so
                # whatever we derived from it is re-read from what it holds now.
                log.warning(
                    "broker had no session for %s: re-reading retained state", self._client_id
                )
                if self._on_session_lost is not None:
                    self._on_session_lost()
            if self._consuming.is_set():
                for topic, qos in self._subscriptions:
                    await client.subscribe(topic, qos)
            self.connected.set()
            log.info("connected to %s as %s", self._settings.url, self._client_id)
            if self._on_connected is not None:
                self._on_connected()
            async with asyncio.TaskGroup() as group:
                receiver = group.create_task(self._receive(client), name="mqtt-receive")
                group.create_task(self._send(client, receiver), name="mqtt-send")
                watch = group.create_task(_watch_socket(client), name="mqtt-socket-watch")
                receiver.add_done_callback(lambda _: watch.cancel())
        self.connected.clear()
        self._client = None

    def _connack(self, session_present: bool, receive_maximum: int | None) -> None:
        """CONNACK's session-present flag and Receive Maximum, which aiomqtt 2.x drops."""
        self._session_present = session_present
        self._send_window = min(SEND_WINDOW, receive_maximum or SEND_WINDOW)

    async def _receive(self, client: aiomqtt.Client) -> None:
        await self._consuming.wait()  # queued (bounded) until the node is ready for input
        async for message in client.messages:
            try:
                taken = self._on_message(message)
            except Exception:  # the last line of defence: one message must not stop intake
                log.exception("handling a message on %s failed", message.topic)
                taken = True  # redelivering it would only fail again
            if taken:
                paho.acknowledge(client, message)

    async def _send(self, client: aiomqtt.Client, receiver: asyncio.Task[None]) -> None:
        """Publish the outbox in order, up to the send window in flight; flush on stop."""
        window = asyncio.Semaphore(self._send_window)
        in_flight: set[int] = set()  # ids of the outbox's messages handed over on this connection
        async with asyncio.TaskGroup() as flights:  # a failed publish ends the connection
            while True:
                for message in list(self._outbox):
                    if id(message) in in_flight:
                        continue
                    await window.acquire()
                    if message not in self._outbox:  # dropped to make room meanwhile
                        window.release()
                        continue
                    in_flight.add(id(message))
                    self.in_flight_peak = max(self.in_flight_peak, len(in_flight))
                    flights.create_task(self._publish(client, message, window, in_flight))
                if self._stopping.is_set() and not self._outbox:
                    receiver.cancel()
                    return
                self._outbox_ready.clear()
                stop = asyncio.ensure_future(self._stopping.wait())
                ready = asyncio.ensure_future(self._outbox_ready.wait())
                try:
                    await asyncio.wait((stop, ready), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop.cancel()
                    ready.cancel()

    async def _publish(
        self,
        client: aiomqtt.Client,
        message: Outgoing,
        window: asyncio.Semaphore,
        in_flight: set[int],
    ) -> None:
        """One message: handed to paho at once (so in order), out of the outbox at its PUBACK."""
        try:
            await client.publish(
                message.topic,
                message.payload,
                qos=message.qos,
                retain=message.retain,
                properties=message.properties,
                # No timeout of its own: a PUBACK comes after whatever the broker sent
                # before it, seconds late when the node is behind on its input, and a
                # timeout here would drop a live connection (measured: one reconnect
                # every ~20 s under 10,000 chunks/s, each resending the backlog). A
                # dead connection is the keepalive's to find; it ends this task too.
                timeout=math.inf,
            )
        finally:
            window.release()
            in_flight.discard(id(message))
        with contextlib.suppress(ValueError):  # dropped to make room while in flight
            self._outbox.remove(message)
        self._outbox_ready.set()  # the stopping flush waits for the outbox to empty
        if message.on_sent is not None:
            try:
                message.on_sent()
            except Exception:
                log.exception("after publishing on %s", message.topic)

    def stop(self) -> None:
        """Ask :meth:`run` to flush the outbox, disconnect cleanly and return."""
        self._stopping.set()
        self._outbox_ready.set()


async def _watch_socket(client: aiomqtt.Client) -> None:
    """End the connection if paho closed its socket without saying so.

    Seen when the broker stopped: paho closed the socket while uvloop still had
    a write to start on it (``add_writer`` on a closed handle raised in a
    callback), aiomqtt was never told, and the node sat on a dead connection
    until the keepalive ran out, 20-60 s later, while its satellites' sessions
    timed out. Checked every :data:`SOCKET_CHECK_S`.
    """
    while True:
        await asyncio.sleep(SOCKET_CHECK_S)
        if paho.socket_closed(client):
            raise aiomqtt.MqttError("the connection's socket was closed")


def _first_leaf(error: BaseException) -> BaseException:
    """The first error inside nested task-group errors: the one worth logging."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _tls(settings: BrokerSection) -> aiomqtt.TLSParameters | None:
    """TLS for an mqtts:// URL, always verifying the broker (see brokerurl)."""
    if not settings.tls:
        return None
    return tls_parameters(settings.ca_file, settings.cert_file, settings.key_file)


def _backoff(attempt: int, settings: BrokerSection) -> float:
    """Capped exponential backoff with jitter, so a fleet does not reconnect in lockstep."""
    ceiling = min(settings.reconnect_max_s, settings.reconnect_min_s * 2**attempt)
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not crypto
