"""What the node needs of MQTT that aiomqtt 2.x does not expose, reached for in this one place.

aiomqtt wraps a paho-mqtt client (its private ``_client``) and offers no way to

- acknowledge QoS 1 messages by hand (the node acknowledges a chunk only once
  it is in the spool: paho's ``manual_ack_set`` and ``ack``);
- read CONNACK: whether the broker still had the node's session (its
  session-present flag: a broker that lost it may have lost retained state
  too), and its Receive Maximum (how many QoS 1 messages the node may have in
  flight towards it);
- read more than one packet each time the socket is readable
  (:func:`read_eagerly`).

Everything else goes through aiomqtt's public API. :func:`check` names what is
missing when an aiomqtt release moves these internals; the node calls it on
every connection and tests/unit/test_mqtt_adapter.py runs it against the
installed release, so the break shows at once and not as lost acknowledgements.
"""

from __future__ import annotations

import fcntl
import inspect
import sys
import termios
from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from orac_node.errors import BrokerError

_NEEDED = {
    "manual_ack_set": ["on"],
    "ack": ["mid", "qos"],
    "on_connect": [],
    "loop_read": ["max_packets"],
    "socket": [],
}
"""paho client members used here, with the parameters each method is called with."""


def _paho(client: aiomqtt.Client) -> mqtt.Client:
    inner = getattr(client, "_client", None)
    if not isinstance(inner, mqtt.Client):
        raise BrokerError(
            "aiomqtt.Client no longer wraps a paho client as _client: manual acknowledgements"
            " and CONNACK's flags cannot be reached (orac_node/mqtt/paho.py needs updating)"
        )
    return inner


def check(client: aiomqtt.Client) -> None:
    """Raise :class:`BrokerError` naming what is missing, if this aiomqtt moved it."""
    inner = _paho(client)
    for name, parameters in _NEEDED.items():
        if not hasattr(inner, name):
            raise BrokerError(f"paho client has no {name}: orac_node/mqtt/paho.py needs updating")
        member = getattr(type(inner), name)
        if parameters and list(inspect.signature(member).parameters)[1:3] != parameters:
            raise BrokerError(
                f"paho client's {name} no longer takes {parameters}:"
                " orac_node/mqtt/paho.py needs updating"
            )


def enable_manual_acks(client: aiomqtt.Client) -> None:
    """QoS 1 messages are acknowledged by :func:`acknowledge`, not on receipt.

    Call before connecting: paho reads it when the connection is made.
    """
    _paho(client).manual_ack_set(True)


def read_eagerly(client: aiomqtt.Client, most: int) -> None:
    """Read up to ``most`` packets each time the socket is readable, not one.

    paho reads one packet per call when nothing of the node's is in flight,
    and aiomqtt calls it once per readiness of the socket, so under load the
    backlog waited in the kernel's socket buffer, where the node could neither
    see how far behind it ran nor screen out what it would drop anyway
    (measured at 200 devices: refused sessions told up to 2.6 s late). Read
    eagerly, the backlog moves into the node's incoming queue, which is
    bounded, measured and screened on arrival (mqtt/bus.py).
    """
    inner = _paho(client)
    read_one = inner.loop_read

    def loop_read(max_packets: int = 1) -> MQTTErrorCode:
        rc = read_one(max_packets)
        for _ in range(most - 1):
            sock = inner.socket()
            if rc != mqtt.MQTT_ERR_SUCCESS or sock is None or not _unread(sock):
                break
            rc = read_one(max_packets)
        return rc

    inner.loop_read = loop_read  # type: ignore[method-assign]


def _unread(sock: Any) -> int:  # noqa: ANN401 - a socket or paho's SSL wrapper
    """Bytes waiting in the socket's receive buffer (0 when it cannot say)."""
    pending = getattr(sock, "pending", None)
    if callable(pending) and pending():
        return 1  # decrypted bytes held by the SSL layer
    try:
        waiting = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return int.from_bytes(waiting, sys.byteorder)


def socket_closed(client: aiomqtt.Client) -> bool:
    """Whether paho has closed the connection's socket (it sets it to None when it does)."""
    return _paho(client).socket() is None


def acknowledge(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    """Send the PUBACK of a QoS 1 message (with manual acknowledgements on)."""
    if message.qos > 0:
        _paho(client).ack(message.mid, message.qos)


def on_connack(client: aiomqtt.Client, callback: Callable[[bool, int | None], None]) -> None:
    """Call ``callback(session_present, receive_maximum)`` on every CONNACK.

    ``receive_maximum`` is None when the broker did not say (MQTT v5: 65,535).
    aiomqtt's own handler still runs after it.
    """
    inner = _paho(client)
    forward = inner.on_connect

    def on_connect(*args: Any) -> None:  # noqa: ANN401 - paho's callback signature
        flags, properties = args[2], args[4] if len(args) > 4 else None
        present = bool(getattr(flags, "session_present", False))
        callback(present, getattr(properties, "ReceiveMaximum", None))
        if forward is not None:
            forward(*args)

    inner.on_connect = on_connect


def session_properties(expiry_s: int, *, receive_maximum: int) -> Properties:
    """CONNECT properties: keep the session for ``expiry_s``; flow control.

    Receive Maximum bounds the QoS 1 messages the broker sends before the
    client acknowledges them.
    """
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = expiry_s
    properties.ReceiveMaximum = receive_maximum
    return properties
