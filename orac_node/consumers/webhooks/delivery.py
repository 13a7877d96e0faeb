"""Webhook delivery: each final with text POSTed to its topic's receivers, at least once.

The flow: :meth:`WebhookDelivery.submit` writes one outbox row per (event, receiver)
to SQLite before it returns (outbox.py). :meth:`WebhookDelivery.run` claims rows
that are due and makes one attempt each (attempt.py: destination checked against
``webhooks.allow``, the JSON body POSTed with one pooled ``httpx.AsyncClient``). A
2xx deletes the row; a timeout, connection error, 408, 429 or 5xx reschedules it
with capped, jittered exponential backoff; any other answer, a refused destination,
or ``max_attempts`` failures move it to the dead letters. A receiver can therefore
see an event twice (a 2xx lost on the way back): ``X-Orac-Event-Id`` is the same on
every attempt, so receivers deduplicate on it.

Order: rows are tried oldest-due first, up to a few at a time per receiver, and
retries go back by their backoff, so a receiver can see events out of order; each
body carries its ``timestamp``. docs/WEBHOOKS.md is the receiver's side: headers,
``verify``, retries and the allowlist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from orac_node import __version__
from orac_node.config import WebhooksSection
from orac_node.consumers.webhooks.attempt import Outcome, attempt, backoff_delay, origin_of
from orac_node.consumers.webhooks.outbox import MAX_IN_FLIGHT, DeadLetter, Outbox, Row, shown
from orac_node.errors import ConfigError
from orac_node.wire import TranscriptionEvent, WebhookTarget

log = logging.getLogger("orac_node.consumers.webhooks")


class WebhookDelivery:
    """The outbox of webhook deliveries and the loop that drains it (module docstring).

    Counters (read by the metrics collector): ``delivered`` events accepted with a
    2xx; ``failed_attempts`` POSTs that did not get one; ``retries`` attempts
    rescheduled; ``dead`` rows dead-lettered (refused, failed ``max_attempts`` times, or
    dropped as the oldest of a full outbox); ``lost`` rows that could not be written to
    the outbox at all (disk errors, logged).
    """

    def __init__(
        self,
        settings: WebhooksSection,
        state_dir: Path,
        *,
        user_agent: str = f"orac-node/{__version__}",
    ) -> None:
        self._settings = settings
        try:
            self._allow = settings.allowlist
        except ValueError as exc:
            raise ConfigError(f"webhooks.allow: {exc}") from None
        self._outbox = Outbox(state_dir, max_rows=settings.outbox_max)
        # Redirects are not followed (a redirect could lead past the allowlist) and the
        # environment's proxy settings are ignored (the allowlist checks where a POST
        # really goes).
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout_s),
            limits=httpx.Limits(
                max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT
            ),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": user_agent},
        )
        self._wakeup = asyncio.Event()
        self._down: set[str] = set()  # origins whose last attempt got no answer
        self._closed = False
        self.delivered = 0
        self.failed_attempts = 0
        self.retries = 0
        self.lost = 0

    @property
    def queued(self) -> int:
        """Rows in the outbox (waiting or in flight)."""
        return self._outbox.queued

    @property
    def dead(self) -> int:
        """Rows dead-lettered since start."""
        return self._outbox.dead

    def submit(self, event: TranscriptionEvent, targets: Sequence[WebhookTarget]) -> None:
        """Queue ``event`` for each target; the rows are on disk when this returns.

        Raises nothing for a target or the disk: a target whose URL cannot be used is
        dead-lettered at once, and an outbox that cannot be written is logged and
        counted in ``lost``, because webhooks must not stop the node publishing
        transcripts.
        """
        if not targets:
            return
        body, now = event.encode(), time.time()
        outbox = self._outbox
        dead_before = outbox.dead
        try:
            with outbox.transaction():
                for target in targets:
                    origin = origin_of(target.url)
                    if origin is None:
                        reason = "invalid webhook url"
                        url = str(target.url)
                        outbox.add_dead(DeadLetter(event.id, url, 0, reason, now, now, body))
                        log.warning(
                            "webhook %s to %s dead-lettered: %s", event.id, shown(url), reason
                        )
                        continue
                    outbox.add(event.id, target.url, origin, target.secret, body)
                outbox.trim(now)
        except sqlite3.Error:
            outbox.recount()
            outbox.dead = dead_before
            self.lost += len(targets)
            log.exception("webhook outbox write failed: event %s lost", event.id)
            return
        self._wakeup.set()

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters, newest first."""
        return self._outbox.dead_letters(limit)

    async def run(self) -> None:
        """Deliver until cancelled, starting with rows an earlier process left behind.

        An outbox that can no longer be written (``sqlite3.Error``) ends it: retrying
        without recording attempts would POST the same rows in a tight loop.
        """
        async with asyncio.TaskGroup() as deliveries:
            while True:
                self._wakeup.clear()
                for row in self._outbox.claim_due():
                    deliveries.create_task(self._deliver(row), name=f"webhook-{row.id}")
                delay = self._outbox.until_next_due()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), delay)

    async def close(self) -> None:
        """Close the HTTP client and the database (after ``run`` has been cancelled)."""
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()
        self._outbox.close()

    async def _deliver(self, row: Row) -> None:
        try:
            deadline_s = self._settings.timeout_s
            outcome = await attempt(self._client, self._allow, row, deadline_s=deadline_s)
            self._settle(row, outcome)
        finally:
            self._outbox.release(row)
            self._wakeup.set()

    def _settle(self, row: Row, outcome: Outcome) -> None:
        """Record an attempt's outcome: delete, reschedule or dead-letter the row."""
        now = time.time()
        outbox = self._outbox
        if outcome.ok:
            with outbox.transaction():
                outbox.delete(row)
                if row.origin in self._down:
                    # The receiver is back: what waited out its outage goes now, not
                    # after each row's remaining backoff.
                    outbox.hurry(row.origin, now)
            self.delivered += 1
            if row.origin in self._down:
                self._down.discard(row.origin)
                log.info("webhook receiver %s is answering again", row.origin)
            log.debug("webhook %s delivered to %s", row.event_id, shown(row.url))
            return
        attempts = row.attempts + (1 if outcome.sent else 0)
        if outcome.sent:
            self.failed_attempts += 1
        if outcome.unreachable and row.origin not in self._down:
            self._down.add(row.origin)
            log.warning(
                "webhook receiver %s not answering (%s); retrying", row.origin, outcome.error
            )
        reason = f"{outcome.error}: {outcome.detail}" if outcome.detail else outcome.error
        if outcome.retry and attempts < self._settings.max_attempts:
            delay = backoff_delay(
                attempts,
                self._settings.backoff_initial_s,
                self._settings.backoff_max_s,
                retry_after_s=outcome.retry_after_s,
            )
            with outbox.transaction():
                outbox.reschedule(row, attempts, now + delay, reason)
            self.retries += 1
            log.debug(
                "webhook %s to %s: %s; attempt %d in %.2f s",
                row.event_id,
                shown(row.url),
                outcome.error,
                attempts + 1,
                delay,
            )
            return
        with outbox.transaction():
            outbox.bury(row, reason, attempts, now, logged=outcome.error)
