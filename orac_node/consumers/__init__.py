"""Consumers: what ORAC Core, webhooks and the topics registry get from the node.

answers.py     the work behind Core's requests (describe, transcribe, retranscribe)
recent.py      recent sessions' audio, kept for retranscribe
context.py     Core's conversation context, and how a final's prompt is built
registry.py    the topics registry: retained topic configs, satellite heartbeats
wakewords.py   stripping a topic's wake word from transcripts
webhooks/      signed webhook delivery from an on-disk outbox
"""
