"""One webhook attempt: resolve, check the allowlist, POST, and judge the answer.

A 2xx delivers; a timeout, connection error, 408, 429 or 5xx is retried with
capped, jittered exponential backoff (:func:`backoff_delay`, honouring a
numeric ``Retry-After``); any other answer, and a destination the allowlist
refuses, is final.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import random
import socket
import time
from collections.abc import Callable, Sequence

import httpx

from orac_node.config import Allowlist, IPAddress
from orac_node.consumers.webhooks.outbox import Row
from orac_node.consumers.webhooks.signing import (
    ATTEMPT_HEADER,
    EVENT_HEADER,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    sign,
)
from orac_node.wire import WEBHOOK_EVENT

RESPONSE_READ_LIMIT = 64 * 1024
"""Bytes of a response read: small answers are read whole so the connection can be
reused; a receiver that streams more gets its connection closed."""
ERROR_EXCERPT = 200
"""Characters of a refusing receiver's answer kept in the dead letter (not logged: a
receiver may echo the transcript back)."""


def backoff_delay(
    attempts: int,
    initial_s: float,
    max_s: float,
    *,
    retry_after_s: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds before the next attempt, after ``attempts`` failed ones (1, 2, ...).

    The ceiling doubles from ``initial_s`` up to ``max_s``; the delay is drawn between
    half the ceiling and the ceiling so receivers' retries after an outage spread out
    instead of arriving in one burst. A receiver's ``Retry-After`` is honoured up to
    ``max_s``: it lengthens the wait, never shortens it.
    """
    ceiling = min(max_s, initial_s * 2.0 ** max(0, attempts - 1))
    delay = ceiling * (0.5 + 0.5 * rand())
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, max_s))
    return delay


def parse_retry_after(value: str | None) -> float | None:
    """A numeric ``Retry-After`` in seconds; the HTTP-date form is ignored (None)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


def origin_of(url: str) -> str | None:
    """``scheme://host:port`` of a URL, the unit of per-receiver concurrency; None if bad."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{parsed.scheme}://{parsed.host}:{port}"


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended."""

    ok: bool = False
    retry: bool = False
    sent: bool = True  # False: refused before any byte went out (not an attempt)
    unreachable: bool = False  # no HTTP answer at all: the receiver looks down
    error: str = ""  # for logs
    detail: str = ""  # the receiver's answer, for the dead letter only
    retry_after_s: float | None = None


async def attempt(
    client: httpx.AsyncClient, allow: Allowlist, row: Row, *, deadline_s: float
) -> Outcome:
    """POST one row once; every way it can end becomes an :class:`Outcome`."""
    url = httpx.URL(row.url)
    host = url.host
    port = url.port or (443 if url.scheme == "https" else 80)
    headers = {
        "Content-Type": "application/json",
        EVENT_HEADER: WEBHOOK_EVENT,
        EVENT_ID_HEADER: row.event_id,
        ATTEMPT_HEADER: str(row.attempts + 1),
    }
    if row.secret:
        headers[SIGNATURE_HEADER] = sign(row.secret, row.body, int(time.time()))
    try:
        # One deadline for resolving, connecting, sending and reading the answer:
        # httpx's own timeouts apply per phase, so a receiver that trickles bytes
        # could otherwise hold a slot for ever.
        async with asyncio.timeout(deadline_s):
            addresses = await _resolve(host, port)
            refusal = allow.refusal(host, addresses)
            if refusal is not None:
                return Outcome(sent=False, error=refusal)
            response, answer = await _post(client, url, addresses, row.body, headers)
    except TimeoutError:
        return Outcome(retry=True, unreachable=True, error=f"no answer in {deadline_s:g} s")
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
        return Outcome(error=_describe(exc))
    except (httpx.TransportError, OSError) as exc:
        return Outcome(retry=True, unreachable=True, error=_describe(exc))
    return judge(response.status_code, response.headers.get("Retry-After"), answer)


async def _post(
    client: httpx.AsyncClient,
    url: httpx.URL,
    addresses: Sequence[IPAddress],
    body: bytes,
    headers: dict[str, str],
) -> tuple[httpx.Response, bytes]:
    """POST to the addresses just checked, in the resolver's order.

    Plain HTTP connects to a checked address, not to the name again: a second
    lookup could be pointed elsewhere by the name's owner (DNS rebinding). An
    address that refuses the connection (nothing sent yet) passes to the next, as
    any client falls back from IPv6 to IPv4. HTTPS connects by name: its
    certificate must match the name, which a rebound address cannot present.
    """
    targets = [url]
    if url.scheme == "http":
        headers = {**headers, "Host": url.netloc.decode("ascii")}
        targets = [url.copy_with(host=str(address)) for address in addresses]
    for index, target in enumerate(targets):
        try:
            request = client.stream("POST", target, content=body, headers=headers)
            async with request as response:
                return response, await _read_limited(response)
        except httpx.ConnectError:
            if index == len(targets) - 1:
                raise
    raise AssertionError("unreachable: the last target returns or raises")


async def _resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in the resolver's order, without duplicates."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]))
        if address not in addresses:
            addresses.append(address)
    return addresses


async def _read_limited(response: httpx.Response) -> bytes:
    answer = b""
    async for chunk in response.aiter_raw():
        answer += chunk
        if len(answer) >= RESPONSE_READ_LIMIT:
            break
    return answer


def judge(status: int, retry_after: str | None, answer: bytes) -> Outcome:
    """What an HTTP status means for the row (module docstring)."""
    if 200 <= status < 300:
        return Outcome(ok=True)
    detail = " ".join(answer[: ERROR_EXCERPT * 4].decode("utf-8", "replace").split())
    detail = detail[:ERROR_EXCERPT]
    if status in (408, 429) or status >= 500:
        return Outcome(
            retry=True,
            error=f"HTTP {status}",
            detail=detail,
            retry_after_s=parse_retry_after(retry_after),
        )
    note = " (redirects are not followed)" if 300 <= status < 400 else ""
    return Outcome(error=f"HTTP {status}{note}", detail=detail)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
