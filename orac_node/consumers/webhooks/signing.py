"""Webhook signatures: how the node signs a POST and how a receiver checks it.

Receivers import :func:`verify` (docs/WEBHOOKS.md); the node signs with :func:`sign`.
The scheme is Stripe's: ``X-Orac-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>." + body>``, so a captured request cannot be replayed once the timestamp is
older than the receiver's tolerance.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Orac-Signature"
EVENT_HEADER = "X-Orac-Event"
EVENT_ID_HEADER = "X-Orac-Event-Id"
ATTEMPT_HEADER = "X-Orac-Delivery-Attempt"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Orac-Signature`` value: ``t=<unix s>,v1=<hex HMAC-SHA256>``.

    The timestamp is signed with the body so a captured request cannot be replayed
    later than :func:`verify`'s tolerance (the scheme Stripe uses).
    """
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str, header: str, body: bytes, *, tolerance_s: float = 300, now: float | None = None
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` within ``tolerance_s`` of now.

    For receivers. Several ``v1=`` values are accepted (any one may match) so a sender
    can sign with an old and a new secret while they rotate. A malformed header is
    simply not valid.
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isascii() and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).rpartition("v1=")[2]
    # compare_digest on every candidate, no early exit: timing reveals nothing.
    matches = [hmac.compare_digest(expected.encode(), c.encode()) for c in candidates]
    return any(matches)
