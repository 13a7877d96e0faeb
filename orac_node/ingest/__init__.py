"""Ingest: audio messages in, whole utterances out.

intake.py     validating messages, the open-session table; returns an Outcome per message
session.py    Utterance: one session's audio, VAD, endpoint and state
endpoint.py   when an utterance is over, in audio time
reorder.py    seq order, duplicates, gaps
rawstream.py  cutting bare PCM streams into utterances at speech
limits.py     per-device rate limits (token buckets)
admission.py  who may open a session (rates, counts, topics), and what a device is told
closed.py     ended sessions, and the audio that still comes for them
spool.py      in-flight sessions on disk, replayed after a crash; the finished log
refusal.py    Refusal: what a sender is told when its audio is not taken
"""
