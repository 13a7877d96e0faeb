"""What goes into a decode and what comes out, with no model attached.

The scheduler, the cache, the pipeline and the answers to Core's requests pass
these around; only engine.py touches whisper.cpp.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orac_node.config import DecodeSection, PartialsSection
from orac_node.decode.gate import VERIFY_BELOW_S
from orac_node.wire import Segment, Word


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """What may change from one decode to the next."""

    language: str = "en"
    beam_size: int = 1
    window_margin_s: float = 6.0
    prompt: str = ""
    timestamps: bool = True
    temperature_fallback: bool = False
    language_p: bool = False  # with language auto: also measure the detected one's probability
    threads: int = 0  # 0: the engine's own count; the scheduler sets it per decode

    @classmethod
    def final(
        cls,
        decode: DecodeSection,
        *,
        language: str | None = None,
        prompt: str = "",
        beam_size: int | None = None,
        speech_s: float | None = None,
    ) -> DecodeOptions:
        """A final's decode: the accurate one (beam search, the wider window).

        Every final (a live session's, a file's, a request's, the bench's
        baseline) is built here, so they cannot drift apart. An utterance with
        under ``VERIFY_BELOW_S`` of speech (``speech_s``, the VAD's) is decoded
        greedily unless ``beam_size`` asks otherwise: with a word or two there is
        nothing for beam search to weigh, and at beam 5 tiny.en turned clearly
        spoken "Oh." into "oh" at confidence 0.09 (withheld) and into "So..."
        where greedy decoding heard "Oh." (docs/DECODING.md).
        """
        default = 1 if speech_s is not None and speech_s < VERIFY_BELOW_S else decode.beam_size
        return cls(
            language=language or decode.language,
            beam_size=beam_size or default,
            window_margin_s=decode.window_margin_s,
            prompt=prompt,
            timestamps=True,
            temperature_fallback=decode.temperature_fallback,
            language_p=True,
        )

    @classmethod
    def partial(cls, partials: PartialsSection, *, language: str) -> DecodeOptions:
        """A partial's decode: cheap (greedy, the narrower window, no word timestamps).

        Partials are replaced half a second later; what they must be is fast.
        """
        return cls(
            language=language,
            beam_size=1,
            window_margin_s=partials.window_margin_s,
            timestamps=False,
        )


@dataclass(frozen=True, slots=True)
class Decoding:
    """Result of one decode; ``confidence`` is from token probabilities.

    ``language_p`` is the probability of ``language`` when the model detected it
    (``auto`` on a multilingual model, finals only); None when it was given.
    """

    text: str
    language: str
    confidence: float
    decode_ms: float
    words: list[Word] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    aborted: bool = False
    language_p: float | None = None


@dataclass(frozen=True, slots=True)
class FinalDecoding:
    """A final's decoding, the model that made it, and how long it waited for a worker.

    ``fallback`` says why ``model`` is not the one asked for, the first time a
    model asked for turns out not to load (then it is quietly the node's own).
    ``check`` is the text of a second decode of the speech alone, made for short
    utterances (decode/gate.py): the gate believes the text only if it agrees.
    """

    decoding: Decoding
    queue_ms: float
    model: str = ""
    fallback: str | None = None
    check: str | None = None  # the second decode of the speech alone (decode/gate.py)
