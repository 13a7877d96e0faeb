"""One whisper.cpp model instance and the decode call the node makes on it.

Facts about pywhispercpp 1.5.1 this module is built around (measured):

- Every parameter passed to ``transcribe()`` stays set on the Model, so
  :meth:`WhisperEngine.decode` passes *every* per-utterance parameter on every
  call; a stale window left by a longer clip produced doubled sentences.
- One Model used from two threads at once aborts the process. A
  ``WhisperEngine`` is therefore owned by one scheduler worker, which calls it
  from its single dedicated thread only.
- ``transcribe()`` releases the GIL, so decoding off the event loop is real
  parallelism.
- The encoder window (``audio_ctx``, 50 frames per second, 1500 = 30 s) sized
  to the utterance plus a 6 s margin is ~3x faster than the full window and
  at least as accurate; a margin under ~3 s makes Whisper repeat sentences.
- whisper.cpp pads the cross-attention cache to a multiple of 256 frames and
  reads the padding, which still holds keys from the *previous* decode. With
  windows of arbitrary size, 16 of the 31 shared clips came out differently
  depending on what the model had decoded before; with windows rounded up to
  a multiple of 256 none did (docs/DECODING.md has the measurement).
- Beam search and temperature fallback sample with a random generator per
  decoder, and the PyPI build reseeds decoder 0's only when the model loads:
  the same audio gave other text depending on what was decoded before (11 of
  20 commands at beam 5). The project's patched build reseeds it at every call
  (orac_node/whisperbuild.py; :func:`seeded_sampling` tells which build this
  is). Temperature fallback also re-decodes up to five times (a pure 440 Hz
  tone took 7.5 s), so it is off by default (``decode.temperature_fallback``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import _pywhispercpp as pw
import numpy as np
from pywhispercpp.model import Model

from orac_node.audio import Samples
from orac_node.decode.decoding import DecodeOptions, Decoding
from orac_node.decode.languages import AUTO, ENGLISH, whisper_code
from orac_node.errors import ModelError
from orac_node.whisperbuild import MARKER
from orac_node.wire import SAMPLE_RATE, Segment, Word

FRAMES_PER_S = 50
"""Encoder frames per second of audio (one per 320 samples at 16 kHz)."""
FULL_WINDOW = 1500
"""The model's full 30 s encoder window."""
WINDOW_QUANTUM = 256
"""whisper.cpp's cross-attention padding; windows are multiples of it (see above)."""
_CENTISECOND = 0.01  # whisper.cpp timestamps are in 10 ms units
_OPENERS, _CLOSERS = "[(", "])"


def seeded_sampling() -> bool:
    """Whether this whisper.cpp reseeds every decoder at every call (the patched build).

    Without it, beam search and temperature fallback give text that depends on
    what the model decoded before.
    """
    return MARKER in pw.whisper_print_system_info()


def encoder_window(n_samples: int, margin_s: float) -> int:
    """``audio_ctx`` for an utterance: frames plus margin, rounded up to 256, capped at 30 s."""
    frames = math.ceil(n_samples / (SAMPLE_RATE / FRAMES_PER_S) + margin_s * FRAMES_PER_S)
    return min(FULL_WINDOW, math.ceil(frames / WINDOW_QUANTUM) * WINDOW_QUANTUM)


class WhisperEngine:
    """A loaded model; call :meth:`decode` from one thread at a time only."""

    def __init__(self, model_path: Path, *, threads: int, use_gpu: bool = False) -> None:
        if not model_path.is_file():
            raise ModelError(f"model file not found: {model_path}")
        self.model_path = model_path
        self.threads = threads
        try:
            self._model = Model(
                str(model_path),
                redirect_whispercpp_logs_to=None,
                context_params={"use_gpu": use_gpu},
                n_threads=threads,
                print_progress=False,
                print_realtime=False,
                print_timestamps=False,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"cannot load {model_path}: {exc}") from exc
        # Token data is only reachable through the context the Model wraps.
        ctx = getattr(self._model, "_ctx", None)
        if ctx is None:
            raise ModelError(f"whisper.cpp could not load {model_path}")
        self._ctx = ctx
        self.multilingual = bool(pw.whisper_is_multilingual(ctx))
        self._eot = pw.whisper_token_eot(ctx)

    @property
    def name(self) -> str:
        """Model name as reported in transcripts (file name without ggml- and .bin)."""
        return self.name_of(self.model_path)

    @staticmethod
    def name_of(model_path: Path) -> str:
        """The name a model file is reported and asked for by: ggml-tiny.en.bin is tiny.en."""
        return model_path.stem.removeprefix("ggml-")

    def warm_up(self) -> None:
        """Run one decode so the first real utterance does not pay for allocation."""
        rng = np.random.default_rng(0)
        self.decode(rng.normal(0, 0.01, SAMPLE_RATE).astype(np.float32), DecodeOptions())

    def decode(
        self,
        samples: Samples,
        options: DecodeOptions,
        should_abort: Callable[[], bool] | None = None,
    ) -> Decoding:
        """Transcribe ``samples`` (float32 mono 16 kHz); blocking, releases the GIL."""
        language = whisper_code(options.language) if self.multilingual else ENGLISH
        greedy = options.beam_size <= 1
        started = time.perf_counter()
        self._model.transcribe(
            samples,
            abort_callback=should_abort,
            n_threads=options.threads or self.threads,
            language=language,
            translate=False,
            audio_ctx=encoder_window(samples.size, options.window_margin_s),
            initial_prompt=options.prompt,
            no_context=True,
            single_segment=False,
            no_timestamps=False,
            token_timestamps=options.timestamps,
            temperature=0.0,
            temperature_inc=0.2 if options.temperature_fallback else 0.0,
            strategy=(
                pw.whisper_sampling_strategy.WHISPER_SAMPLING_GREEDY
                if greedy
                else pw.whisper_sampling_strategy.WHISPER_SAMPLING_BEAM_SEARCH
            ),
            beam_search={"beam_size": -1 if greedy else options.beam_size, "patience": -1.0},
        )
        decode_ms = (time.perf_counter() - started) * 1000
        aborted = should_abort is not None and should_abort()
        decoding = self._collect(decode_ms, aborted=aborted, timestamps=options.timestamps)
        if language == AUTO and options.language_p and not aborted:
            language_p = self._language_p(options.threads or self.threads)
            decode_ms = (time.perf_counter() - started) * 1000
            decoding = dataclasses.replace(
                decoding, language_p=language_p, decode_ms=round(decode_ms, 1)
            )
        return decoding

    def _language_p(self, threads: int) -> float | None:
        """The probability of the language whisper.cpp detected in the decode just made.

        whisper_full detects the language but keeps its probability to itself, so
        it is asked again: ``whisper_lang_auto_detect`` runs the encoder once more
        on the mel the decode left in the context (same window) and one decoder
        step. That costs an encoder pass, paid only by finals of ``auto`` sessions.
        """
        ctx = self._ctx
        probs = np.zeros(pw.whisper_lang_max_id() + 1, dtype=np.float32)
        if pw.whisper_lang_auto_detect(ctx, 0, threads, probs) < 0:
            return None
        detected = pw.whisper_full_lang_id(ctx)
        if not 0 <= detected < probs.size:
            return None
        return round(float(probs[detected]), 4)

    def _collect(self, decode_ms: float, *, aborted: bool, timestamps: bool) -> Decoding:
        """Read segments and tokens from the context after a decode."""
        ctx = self._ctx
        segments: list[Segment] = []
        words: list[Word] = []
        log_p: list[float] = []
        depth = 0  # inside an annotation such as [BLANK_AUDIO] or (music)
        for i in range(pw.whisper_full_n_segments(ctx)):
            text = pw.whisper_full_get_segment_text(ctx, i).decode("utf-8", "replace").strip()
            t0 = pw.whisper_full_get_segment_t0(ctx, i) * _CENTISECOND
            t1 = pw.whisper_full_get_segment_t1(ctx, i) * _CENTISECOND
            segments.append(Segment(start=round(t0, 2), end=round(t1, 2), text=text))
            current: list[tuple[str, float, float, float]] = []
            for j in range(pw.whisper_full_n_tokens(ctx, i)):
                data = pw.whisper_full_get_token_data(ctx, i, j)
                if data.id >= self._eot:
                    continue  # end/start/timestamp tokens carry no words
                piece = pw.whisper_full_get_token_text(ctx, i, j)
                piece = piece.decode("utf-8", "replace") if isinstance(piece, bytes) else piece
                opens = any(c in piece for c in _OPENERS)
                closes = any(c in piece for c in _CLOSERS)
                if depth or opens:
                    depth = 0 if closes else 1
                    continue
                p = data.p if math.isfinite(data.p) else 0.0  # a broken token counts as unlikely
                log_p.append(math.log(max(p, 1e-9)))
                if piece.startswith(" ") and current:
                    words.append(_word(current))
                    current = []
                current.append((piece, p, data.t0 * _CENTISECOND, data.t1 * _CENTISECOND))
            if current:
                words.append(_word(current))
        text = " ".join(s.text for s in segments if s.text)
        confidence = math.exp(sum(log_p) / len(log_p)) if log_p else 0.0
        language = pw.whisper_lang_str(pw.whisper_full_lang_id(ctx)) or ENGLISH
        return Decoding(
            text=text,
            language=language,
            confidence=round(confidence, 4),
            decode_ms=round(decode_ms, 1),
            words=words if timestamps else [],
            segments=segments,
            aborted=aborted,
        )


def _word(pieces: list[tuple[str, float, float, float]]) -> Word:
    text = "".join(p[0] for p in pieces).strip()
    probability = math.exp(sum(math.log(max(p[1], 1e-9)) for p in pieces) / len(pieces))
    return Word(
        word=text,
        start=round(pieces[0][2], 2),
        end=round(pieces[-1][3], 2),
        p=round(probability, 4),
    )
