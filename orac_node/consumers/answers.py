"""The node's answers to ORAC Core's requests: the :class:`~orac_node.mqtt.rpc.Backend`.

mqtt/rpc.py is the protocol (parsing, the in-flight bound, replies); this is the
work, done with the node's own pipeline so a request's text is what a streamed
session's would be: ``transcribe`` turns the file into a whole-file utterance and
finalizes it like any session (gate, topic settings, wake words, publish);
``retranscribe`` decodes audio from the recent-sessions ring (recent.py) through
the pipeline's final decode (response cache, model pool) with the request's
model, prompt and beam. What is needed of the pipeline is the :class:`Transcriber`
protocol, so this module knows nothing above it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from orac_node import __version__
from orac_node.audio import decode_file_bytes_async
from orac_node.config import NodeConfig
from orac_node.consumers.context import build_prompt
from orac_node.consumers.recent import RecentAudio
from orac_node.consumers.wakewords import strip_transcript, strip_words
from orac_node.decode.decoding import DecodeOptions
from orac_node.decode.finals import FinalDecoder
from orac_node.decode.gate import GateRules, judge
from orac_node.decode.languages import model_languages
from orac_node.decode.modelpool import ModelPool, ModelUnavailableError, UnknownModelError
from orac_node.decode.scheduler import Lane
from orac_node.errors import AudioDecodeError
from orac_node.ingest.endpoint import EndReason
from orac_node.ingest.session import Utterance, UtteranceKey
from orac_node.jobs.store import JobError, JobStore
from orac_node.jobs.submit import submit_request
from orac_node.mqtt.rpc import RequestFailedError
from orac_node.wire import (
    MAX_PROMPT_CHARS,
    SAMPLE_RATE,
    ErrorCode,
    Final,
    JobRequest,
    Method,
    NodeState,
    RetranscribeRequest,
    TopicConfig,
    TranscribeRequest,
    Transcription,
)


@dataclass(frozen=True, slots=True)
class RequestOverrides:
    """What a transcribe request changes about its file's final.

    Its own prompt and model, and whether the final also goes on the transcript topic.
    """

    prompt: str = ""
    model: str | None = None
    publish: bool = True


class Transcriber(Protocol):
    """What answering needs of the node's pipeline (pipeline/pipeline.py)."""

    config: NodeConfig
    decoder: FinalDecoder
    gate: GateRules

    def topic(self, name: str) -> TopicConfig:
        """The settings of a transcript topic."""
        ...

    def prompt_for(self, device: str, topic_name: str, topic: TopicConfig, extra: str = "") -> str:
        """The prompt a final of this device and topic is decoded with."""
        ...

    def file_utterance(
        self, key: UtteranceKey, *, topic: str, language: str | None, samples: int
    ) -> Utterance:
        """An utterance for a whole file."""
        ...

    async def finalize(
        self, utt: Utterance, request: RequestOverrides | None = None, *, lane: Lane = Lane.LIVE
    ) -> Final:
        """Decode an ended utterance and publish its final."""
        ...


class Answers:
    """Serves describe, transcribe and retranscribe for one node."""

    def __init__(
        self,
        node_id: str,
        transcriber: Transcriber,
        recent: RecentAudio,
        *,
        state: Callable[[], NodeState],
        jobs: JobStore | None = None,
        claimant: Callable[[str, str], str | None] | None = None,
    ) -> None:
        self._node_id = node_id
        self._claimant = claimant  # the live node whose claim counted (the fleet's; None: alone)
        self._pipeline = transcriber
        self._config = transcriber.config
        self._recent = recent
        self._state = state
        self._jobs = jobs

    async def submit_job(self, request: JobRequest) -> dict[str, Any]:
        """A long recording, queued for whichever node takes it (jobs/)."""
        if self._jobs is None:
            raise RequestFailedError(
                ErrorCode.NO_JOBS, "this node takes no jobs (jobs.enabled is false)"
            )
        if len(request.audio) > self._config.ingest.max_file_bytes:
            raise RequestFailedError(ErrorCode.TOO_LARGE, "file is over ingest.max_file_bytes")
        try:
            job = await submit_request(
                self._jobs, request, max_audio_s=self._config.jobs.max_audio_s
            )
        except AudioDecodeError as exc:
            raise RequestFailedError(ErrorCode.DECODE_FAILED, str(exc)) from None
        except JobError as exc:
            raise RequestFailedError(ErrorCode.TOO_LARGE, str(exc)) from None
        return {"job": job}

    def describe(self) -> dict[str, Any]:
        """What this node offers: ``describe`` requests."""
        ingest, endpoint = self._config.ingest, self._config.endpoint
        pool = self._pipeline.decoder.pool
        return {
            "node": self._node_id,
            "version": __version__,
            "state": self._state(),
            "model": pool.main_name,
            "models": pool.names,
            "loaded": pool.loaded,
            "tiers": {"partials": pool.partials, "finals": pool.finals},
            # what a session without a topic model may ask for: English-only (*.en)
            # models decode English only (other languages are refused)
            "languages": model_languages(
                all(pool.multilingual(name) for name in (pool.partials, pool.finals))
            ),
            "model_details": {name: _model_details(pool, name) for name in pool.names},
            "experiment": pool.ab.report(),  # the A/B test's figures here (models ab report)
            "methods": [
                m.value for m in Method if m != Method.SUBMIT_JOB or self._jobs is not None
            ],
            "limits": {
                "max_file_bytes": ingest.max_file_bytes,
                "max_file_s": ingest.max_file_s,
                "max_utterance_s": endpoint.max_duration_s,
                "max_prompt_chars": MAX_PROMPT_CHARS,
                "max_in_flight": self._config.requests.max_in_flight,
                "recent_sessions": self._config.requests.recent_sessions,
                "recent_ttl_s": self._config.requests.recent_ttl_s,
            },
        }

    async def transcribe(self, request: TranscribeRequest) -> Transcription:
        """A submitted file, decoded as one utterance; its final is also published if asked."""
        ingest = self._config.ingest
        topic_name = request.topic or ingest.topic_for(request.device)
        topic = self._pipeline.topic(topic_name)
        if not topic.enabled:
            raise RequestFailedError(ErrorCode.TOPIC_DISABLED, f"topic {topic_name} is disabled")
        pool = self._pipeline.decoder.pool
        if request.model is not None and request.model not in pool.names:
            raise RequestFailedError(ErrorCode.UNKNOWN_MODEL, f"no model {request.model!r} here")
        language = request.language or topic.language or self._config.decode.language
        _check_language(pool, language, request.model or topic.model)
        limit_s = ingest.max_file_s
        if len(request.audio) > ingest.max_file_bytes:
            raise RequestFailedError(ErrorCode.TOO_LARGE, "file is over ingest.max_file_bytes")
        try:
            samples = await decode_file_bytes_async(request.audio, max_s=limit_s + 1)
        except AudioDecodeError as exc:
            raise RequestFailedError(ErrorCode.DECODE_FAILED, str(exc)) from None
        if samples.size > limit_s * SAMPLE_RATE:
            raise RequestFailedError(ErrorCode.TOO_LARGE, f"file is over {limit_s:g} s of audio")
        key = UtteranceKey(request.device, f"request-{uuid.uuid4().hex[:12]}")
        utt = self._pipeline.file_utterance(
            key, topic=topic_name, language=request.language, samples=samples.size
        )
        overrides = RequestOverrides(request.prompt or "", request.model, request.publish)
        await asyncio.to_thread(utt.append_samples, samples, time.monotonic())
        utt.end_now(EndReason.END, time.monotonic())
        utt.start_final()
        final = await self._pipeline.finalize(utt, overrides, lane=Lane.BATCH)
        prompt = self._pipeline.prompt_for(request.device, topic_name, topic, overrides.prompt)
        used = DecodeOptions.final(self._config.decode, speech_s=utt.endpointer.speech_s)
        return _transcription(final, prompt=prompt, beam_size=used.beam_size)

    def holder(self, request: RetranscribeRequest) -> str | None:
        """The other node that decoded the session, when this one does not hold its audio."""
        if self._claimant is None:
            return None
        if self._recent.get(request.device, request.session, now=time.monotonic()) is not None:
            return None
        node = self._claimant(request.device, request.session)
        return None if node in (None, self._node_id) else node

    async def retranscribe(self, request: RetranscribeRequest) -> Transcription:
        """A recent session's audio decoded again, with the request's model, prompt, beam."""
        now = time.monotonic()
        recent = self._recent.get(request.device, request.session, now=now)
        if recent is None:
            ttl = self._config.requests.recent_ttl_s
            raise RequestFailedError(
                ErrorCode.NOT_FOUND,
                f"no audio of {request.device}/{request.session} on this node (kept {ttl:g} s,"
                " newest sessions only, and no live node claimed it)",
            )
        topic = self._pipeline.topic(recent.topic)
        if request.prompt is not None:
            prompt = build_prompt(topic.prompt, request.prompt)
        else:
            prompt = self._pipeline.prompt_for(recent.device, recent.topic, topic)
        options = DecodeOptions.final(
            self._config.decode,
            language=request.language or recent.language,
            prompt=prompt,
            beam_size=request.beam_size,
            speech_s=recent.speech_s,
        )
        beam = options.beam_size
        _check_language(self._pipeline.decoder.pool, options.language, request.model or topic.model)
        try:
            result = await self._pipeline.decoder.decode(
                recent.samples(),
                options,
                request.model or topic.model,
                strict=True,
                verify=recent.speech_window,
            )
        except UnknownModelError as exc:
            raise RequestFailedError(ErrorCode.UNKNOWN_MODEL, str(exc)) from None
        except ModelUnavailableError as exc:
            raise RequestFailedError(ErrorCode.MODEL_UNAVAILABLE, str(exc)) from None
        decoding, model = result.decoding, result.model
        text, rejection = judge(
            decoding.text, decoding.confidence, self._pipeline.gate, check=result.check
        )
        stripped, rejection = strip_transcript(text, rejection, topic.wake_words)
        # Core's retry of a doubtful final: how often it agrees is an A/B test's figure
        self._pipeline.decoder.pool.ab.retranscribed(recent.device, recent.session, stripped.text)
        return Transcription(
            node=self._node_id,
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
            language_p=decoding.language_p,
        )


def _check_language(pool: ModelPool, language: str, model: str | None) -> None:
    """Refuse a request whose language its model cannot decode (unsupported_language)."""
    if why := pool.language_refusal(language, [pool.resolve(model)]):
        raise RequestFailedError(ErrorCode.UNSUPPORTED_LANGUAGE, why)


def _model_details(pool: ModelPool, name: str) -> dict[str, Any]:
    """One model as ``describe`` lists it: file, languages, and what loading it cost."""
    path = pool.file(name)
    cost = pool.costs.get(name)
    memory = cost.memory_bytes if cost is not None else None
    return {
        "file": str(path) if path is not None else None,
        "multilingual": pool.multilingual(name),
        "languages": pool.languages(name),
        "loaded": name in pool.loaded,
        "load_s": cost.load_s if cost is not None else None,
        "memory_mb": round(memory / 1e6, 1) if memory is not None else None,
    }


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
        language_p=final.language_p,
    )
