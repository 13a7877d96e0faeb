"""Decode: audio to text with whisper.cpp, and what decides whether text is believed.

engine.py      one whisper.cpp model and its decode call (the only module touching it)
decoding.py    DecodeOptions, Decoding: what goes in and comes out, no model attached
scheduler.py   model workers shared by every session: live, partial and batch lanes
modelpool.py   the node's model and model.extra models loaded on first use
modelfiles.py  finding, downloading and probing ggml model files
finals.py      a final's decode: model choice, fallback, lane, response cache
longform.py    audio longer than a window: cut at pauses, decoded in the batch lane
cache.py       the response cache (memory or Redis)
gate.py        rejecting silence, noise and Whisper's inventions
stabilize.py   LocalAgreement for partials, buffer trimming
offline.py     a whole recording transcribed in-process with the node's rules
"""
