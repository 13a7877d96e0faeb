"""Webhooks: each final with text, signed and POSTed to its topic's receivers, at least once.

delivery.py  WebhookDelivery: submit (persisted at once), the delivery loop
outbox.py    the SQLite outbox and dead letters
attempt.py   one POST: allowlist check, the request, what the answer means, backoff
signing.py   X-Orac-Signature, and verify() for receivers
"""

from orac_node.consumers.webhooks.attempt import backoff_delay, parse_retry_after
from orac_node.consumers.webhooks.delivery import WebhookDelivery
from orac_node.consumers.webhooks.outbox import DeadLetter

__all__ = ["DeadLetter", "WebhookDelivery", "backoff_delay", "parse_retry_after"]
