"""The audio of recently finished sessions, kept for ``retranscribe`` requests.

ORAC Core asks for a second decode when a final's confidence is low (with a
bigger model, a prompt, beam search); the satellite has long stopped
streaming by then, so the node keeps each finished session's audio for a
while. Bounded twice: at most ``requests.recent_sessions`` sessions (oldest
evicted first) and each for ``requests.recent_ttl_s``. Audio is held as 16-bit
PCM, half the size of the float32 it was decoded from.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from orac_node.audio import Samples, float_to_s16
from orac_node.wire import SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class RecentSession:
    """One finished session's audio and what is needed to decode it again."""

    device: str
    session: str
    topic: str
    language: str
    speech_s: float
    pcm: bytes  # s16le, 16 kHz mono
    expires_at: float
    speech_window: tuple[float, float] | None = None  # a short utterance's speech (gate.py)

    @property
    def audio_s(self) -> float:
        """Seconds of audio."""
        return len(self.pcm) / 2 / SAMPLE_RATE

    def samples(self) -> Samples:
        """The audio as float32, as the engines take it."""
        return (np.frombuffer(self.pcm, dtype="<i2").astype(np.float32) / 32768.0).astype(
            np.float32
        )


class RecentAudio:
    """A bounded, expiring ring of finished sessions' audio."""

    def __init__(self, max_sessions: int, ttl_s: float) -> None:
        self._max = max_sessions
        self._ttl = ttl_s
        self._ring: OrderedDict[tuple[str, str], RecentSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ring)

    @property
    def bytes(self) -> int:
        """Audio bytes held."""
        return sum(len(s.pcm) for s in self._ring.values())

    def add(
        self,
        *,
        device: str,
        session: str,
        topic: str,
        language: str,
        speech_s: float,
        audio: Samples,
        now: float,
        speech_window: tuple[float, float] | None = None,
    ) -> None:
        """Keep a finished session's audio (replacing an older copy of the same session)."""
        if self._max == 0:
            return
        key = (device, session)
        self._ring.pop(key, None)
        self._ring[key] = RecentSession(
            device,
            session,
            topic,
            language,
            speech_s,
            float_to_s16(audio),
            now + self._ttl,
            speech_window,
        )
        self._expire(now)
        while len(self._ring) > self._max:
            self._ring.popitem(last=False)

    def get(self, device: str, session: str, *, now: float) -> RecentSession | None:
        """The session's audio, unless it was evicted or has expired."""
        self._expire(now)
        return self._ring.get((device, session))

    def _expire(self, now: float) -> None:
        # Insertion order is expiry order (one TTL for all), so expired ones are at the front.
        while self._ring:
            oldest = next(iter(self._ring.values()))
            if oldest.expires_at > now:
                return
            self._ring.popitem(last=False)
