"""orac-node: a streaming speech-to-text node for home voice assistants.

Satellites publish microphone audio on MQTT (``audio/<device>/chunk``); the node
assembles utterances, runs whisper.cpp and publishes partial and final
transcripts on ``transcript/<topic>``. The wire contract lives in
:mod:`orac_node.wire`; the flow from message to transcript starts in
:mod:`orac_node.node`.

This module must stay free of third-party imports: ``python3 -m
orac_node.bootstrap`` imports it before any dependency is installed.
"""

__version__ = "0.1.0"
