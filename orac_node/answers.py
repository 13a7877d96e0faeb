"""The node's answers to ORAC Core's requests: rpc.py's :class:`~orac_node.rpc.Backend`.

rpc.py is the protocol (parsing, the in-flight bound, replies); this is the work,
done with the node's own machinery so a request's text is what a streamed
session's would be: ``transcribe`` turns the file into a whole-file utterance and
finalizes it like any session (gate, topic settings, wake words, publish);
``retranscribe`` decodes audio from the recent-sessions ring (recent.py) through
the node's final decode path (response cache, model pool) with the request's
model, prompt and beam.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any

from orac_node import __version__
from orac_node.audio import decode_file_bytes_async
from orac_node.context import build_prompt
from orac_node.contract import (
    MAX_PROMPT_CHARS,
    SAMPLE_RATE,
    ErrorCode,
    Final,
    Method,
    RetranscribeRequest,
    TranscribeRequest,
    Transcription,
)
from orac_node.endpoint import EndReason
from orac_node.engine import DecodeOptions, whisper_languages
from orac_node.errors import AudioDecodeError
from orac_node.gate import judge
from orac_node.modelpool import UnknownModelError
from orac_node.rpc import RequestFailedError
from orac_node.session import UtteranceKey
from orac_node.wakeword import strip_transcript, strip_words

if TYPE_CHECKING:
    from orac_node.node import Node


class NodeBackend:
    """Serves describe, transcribe and retranscribe for one node."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def describe(self) -> dict[str, Any]:
        """What this node offers: ``describe`` requests."""
        ingest, endpoint = self._node.config.ingest, self._node.config.endpoint
        pool = self._node.pool
        return {
            "node": self._node.node_id,
            "version": __version__,
            "state": self._node.state,
            "model": pool.main_name,
            "models": pool.names,
            "loaded": pool.loaded,
            # English-only models (whisper.cpp's *.en) always decode English.
            "languages": (
                ["en"] if pool.main_name.endswith(".en") else ["auto", *whisper_languages()]
            ),
            "methods": [m.value for m in Method],
            "limits": {
                "max_file_bytes": ingest.max_file_bytes,
                "max_file_s": ingest.max_file_s,
                "max_utterance_s": endpoint.max_duration_s,
                "max_prompt_chars": MAX_PROMPT_CHARS,
                "max_in_flight": self._node.config.requests.max_in_flight,
                "recent_sessions": self._node.config.requests.recent_sessions,
                "recent_ttl_s": self._node.config.requests.recent_ttl_s,
            },
        }

    async def transcribe(self, request: TranscribeRequest) -> Transcription:
        """A submitted file, decoded as one utterance; its final is also published if asked."""
        topic_name = request.topic or self._node.config.ingest.topic_for(request.device)
        topic = self._node.topic_config(topic_name)
        if not topic.enabled:
            raise RequestFailedError(ErrorCode.TOPIC_DISABLED, f"topic {topic_name} is disabled")
        if request.model is not None and request.model not in self._node.pool.names:
            raise RequestFailedError(ErrorCode.UNKNOWN_MODEL, f"no model {request.model!r} here")
        limit_s = self._node.config.ingest.max_file_s
        if len(request.audio) > self._node.config.ingest.max_file_bytes:
            raise RequestFailedError(ErrorCode.TOO_LARGE, "file is over ingest.max_file_bytes")
        try:
            samples = await decode_file_bytes_async(request.audio, max_s=limit_s + 1)
        except AudioDecodeError as exc:
            raise RequestFailedError(ErrorCode.DECODE_FAILED, str(exc)) from None
        if samples.size > limit_s * SAMPLE_RATE:
            raise RequestFailedError(ErrorCode.TOO_LARGE, f"file is over {limit_s:g} s of audio")
        key = UtteranceKey(request.device, f"request-{uuid.uuid4().hex[:12]}")
        utt = self._node.intake.whole_file(
            key, topic=topic_name, language=request.language, samples=samples.size
        )
        utt.request_prompt = request.prompt or ""
        utt.request_model = request.model
        utt.publish = request.publish
        await asyncio.to_thread(utt.append_samples, samples, time.monotonic())
        utt.end_now(EndReason.END, time.monotonic())
        utt.start_final()
        final = await self._node.finalize(utt)
        prompt = self._node.prompt_for(request.device, topic_name, topic, utt.request_prompt)
        return _transcription(final, prompt=prompt, beam_size=self._node.config.decode.beam_size)

    async def retranscribe(self, request: RetranscribeRequest) -> Transcription:
        """A recent session's audio decoded again, with the request's model, prompt, beam."""
        now = time.monotonic()
        recent = self._node.recent.get(request.device, request.session, now=now)
        if recent is None:
            ttl = self._node.config.requests.recent_ttl_s
            raise RequestFailedError(
                ErrorCode.NOT_FOUND,
                f"no audio of {request.device}/{request.session} on this node (kept {ttl:g} s,"
                " newest sessions only; send retranscribe to the node named in the final)",
            )
        topic = self._node.topic_config(recent.topic)
        if request.prompt is not None:
            prompt = build_prompt(topic.prompt, request.prompt)
        else:
            prompt = self._node.prompt_for(recent.device, recent.topic, topic)
        beam = request.beam_size or self._node.config.decode.beam_size
        decode = self._node.config.decode
        options = DecodeOptions(
            language=request.language or recent.language,
            beam_size=beam,
            window_margin_s=decode.window_margin_s,
            prompt=prompt,
            timestamps=True,
            temperature_fallback=decode.temperature_fallback,
        )
        try:
            model, result = await self._node.decode_final(
                recent.samples(), options, request.model or topic.model, strict=True
            )
        except UnknownModelError as exc:
            raise RequestFailedError(ErrorCode.UNKNOWN_MODEL, str(exc)) from None
        decoding = result.decoding
        text, rejection = judge(
            decoding.text, decoding.confidence, recent.speech_s, self._node.gate
        )
        stripped, rejection = strip_transcript(text, rejection, topic.wake_words)
        return Transcription(
            node=self._node.node_id,
            model=model,
            device=recent.device,
            session=recent.session,
            topic=recent.topic,
            text="" if rejection else stripped.text,
            language=decoding.language,
            confidence=decoding.confidence,
            rejected=rejection,
            audio_s=round(recent.audio_s, 3),
            decode_ms=decoding.decode_ms,
            prompt=prompt,
            beam_size=beam,
            ts=time.time(),
            words=[] if rejection else strip_words(decoding.words, stripped.words_removed),
            segments=[] if rejection else list(decoding.segments),
        )


def _transcription(final: Final, *, prompt: str, beam_size: int) -> Transcription:
    """A transcribe request's answer, from the final its file produced."""
    return Transcription(
        node=final.node,
        model=final.model,
        device=final.device,
        session=final.session,
        topic=final.topic,
        text=final.text,
        language=final.language,
        confidence=final.confidence,
        rejected=final.rejected,
        audio_s=final.audio_s,
        decode_ms=final.decode_ms,
        prompt=prompt,
        beam_size=beam_size,
        ts=final.ts,
        words=final.words,
        segments=final.segments,
    )
