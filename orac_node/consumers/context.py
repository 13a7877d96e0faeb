"""Conversation context from ORAC Core, and the prompt a final is decoded with.

Core knows what the conversation is about ("set a timer" after "how long do
eggs boil?"), the names of the household's devices and rooms; given to
whisper as the *initial prompt*, that vocabulary steers the decode towards
it. Measured on the shared commands (docs/DECODING.md): prompted with a short
list of household commands, tiny.en heard "Play the radio in the bedroom." instead of
"Play the raid in the mad room." and "Switch off the television." instead of
"We're chaff in the television.".

Core publishes a :class:`~orac_node.wire.Context` per device or per topic,
retained; each holds until its ``ttl_s`` (or the MQTT message expiry, if
sooner) runs out, so a forgotten context stops colouring a device's
utterances. At most ``context.max_entries`` are held; the oldest go first.

The prompt of a final is, in this order: the topic's vocabulary (topics
registry), the topic's context, the device's context, a request's own prompt;
cut from the front to :data:`~orac_node.wire.MAX_PROMPT_CHARS`, because
whisper keeps the *end* of a long prompt and the most recent context matters most.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from orac_node.wire import MAX_PROMPT_CHARS, Context, parse_context_topic


@dataclass(frozen=True, slots=True)
class _Held:
    prompt: str
    expires_at: float


class ContextStore:
    """Per-device and per-topic context with expiry, bounded in count."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._held: OrderedDict[tuple[str, str], _Held] = OrderedDict()
        self.updates = 0

    def __len__(self) -> int:
        return len(self._held)

    def on_message(
        self, topic: str, payload: bytes, *, now: float, expiry_s: float | None = None
    ) -> None:
        """Apply one message from ``orac/context/...``; raises ContractError when malformed.

        An empty payload clears (a retained message being deleted). ``expiry_s``
        is the MQTT message expiry left, when the publisher set one.
        """
        key = parse_context_topic(topic)
        if not payload:
            self._held.pop(key, None)
            return
        context = Context.decode(payload)
        ttl = context.ttl_s if expiry_s is None else min(context.ttl_s, expiry_s)
        self._held.pop(key, None)
        if not context.prompt.strip():
            return
        self._held[key] = _Held(context.prompt.strip(), now + ttl)
        self.updates += 1
        while len(self._held) > self._max:
            self._held.popitem(last=False)

    def clear(self) -> None:
        """Forget every context (the broker lost our session; it re-sends what it holds)."""
        self._held.clear()

    def get(self, *, device: str | None = None, topic: str | None = None, now: float) -> str:
        """The live context of a device or a topic ("" when none or expired)."""
        key = ("device", device) if device is not None else ("topic", topic or "")
        held = self._held.get(key)
        if held is None:
            return ""
        if now >= held.expires_at:
            del self._held[key]
            return ""
        return held.prompt


def build_prompt(*parts: str) -> str:
    """Join prompt parts and keep the last :data:`MAX_PROMPT_CHARS`, cut at a word."""
    prompt = " ".join(p.strip() for p in parts if p and p.strip())
    if len(prompt) <= MAX_PROMPT_CHARS:
        return prompt
    tail = prompt[-MAX_PROMPT_CHARS:]
    space = tail.find(" ")
    return tail[space + 1 :] if 0 <= space < len(tail) - 1 else tail
