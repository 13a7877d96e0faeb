"""The data path: one audio message to its published transcript. Start reading here.

    Node.on_message ─▶ Pipeline.on_audio_message
        Intake.on_message (ingest/intake.py): topic, size, rate limits
            validate (wire) ─▶ PCM (audio) ─▶ Utterance.accept (ingest/session.py)
                reorder ─▶ resample ─▶ VAD ─▶ Endpointer
        ◀─ Outcome: the utterance that took audio, a refusal to publish, a file to decode
    ─▶ _after_audio: endpointed?        ─▶ finalize (task)
                     paused after speech? ─▶ _speculate: decode the final now
                     new speech?         ─▶ _partial (task)
    finalize: gate on VAD speech ─▶ decode (the speculation's result, or the topic's model
              with the topic's vocabulary + Core's context as prompt, response cache)
              ─▶ gate on text ─▶ messages.final (wake words stripped) ─▶ publish
              ─▶ recent audio (retranscribe), webhooks
              (a satellite of a room group: arbitration.py may hold the final for a
              peer's and publish it as a duplicate)
    _partial: the scheduler decodes the window up to the newest audio ─▶ LocalAgreement
              ─▶ publish ─▶ trim committed segments off a long window
    tick:     wall-clock endpoints (idle satellite, chunk missing after end), reports owed

Each stage's details live in its own module; this one decides what happens
when. Everything here runs on the event loop and never blocks: decodes wait
in the scheduler's worker threads, files in ffmpeg.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from orac_node.audio import Samples, speech_level
from orac_node.config import NodeConfig
from orac_node.consumers.answers import RequestOverrides
from orac_node.consumers.context import ContextStore, build_prompt
from orac_node.consumers.recent import RecentAudio
from orac_node.consumers.wakewords import strip_transcript
from orac_node.consumers.webhooks import WebhookDelivery
from orac_node.decode.decoding import DecodeOptions, Decoding, FinalDecoding
from orac_node.decode.finals import FinalDecoder
from orac_node.decode.gate import GateRules, check_audio, judge, strip_annotations, verify_window
from orac_node.decode.scheduler import Lane
from orac_node.decode.stabilize import trim_point
from orac_node.ingest.intake import Intake, Outcome, Upload
from orac_node.ingest.refusal import Refusal
from orac_node.ingest.session import Utterance, UtteranceKey, UtteranceState, log_fields
from orac_node.ingest.spool import Spool
from orac_node.mqtt.publisher import TranscriptPublisher
from orac_node.ops.metrics import NodeMetrics
from orac_node.pipeline import messages
from orac_node.pipeline.arbitration import Arbiter, Groups
from orac_node.pipeline.progress import Progress, Speculation
from orac_node.wire import SAMPLE_RATE, ErrorCode, Final, TopicConfig, TranscriptionEvent

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, object], str], None]
"""Run per-session work as a task the node tracks (its drain waits for them)."""


class Pipeline:
    """Turns audio messages into partials and finals for one node."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        intake: Intake,
        decoder: FinalDecoder,
        publisher: TranscriptPublisher,
        metrics: NodeMetrics,
        topics: Callable[[str], TopicConfig],
        context: ContextStore,
        recent: RecentAudio,
        webhooks: WebhookDelivery,
        spool: Spool | None,
        spawn: Spawn,
        rooms: Groups | None = None,
    ) -> None:
        self.config = config
        self.intake = intake
        self.decoder = decoder
        self._publisher = publisher
        self._metrics = metrics
        self.topic = topics
        self._context = context
        self._recent = recent
        self._webhooks = webhooks
        self._spool = spool
        self._spawn = spawn
        self.gate = GateRules.from_config(config.gate)
        self.arbiter = Arbiter(rooms or (lambda device: None))
        self._progress: dict[UtteranceKey, Progress] = {}
        self.errors: Counter[str] = Counter()  # error reports sent, by code
        self.finals = 0

    # -- audio in ------------------------------------------------------------

    def on_audio_message(self, topic: str, payload: bytes) -> Outcome:
        """One message from ``audio/#``; ``taken`` False: leave it with the broker."""
        outcome = self.intake.on_message(topic, payload)
        if outcome.refusal is not None:
            self.refuse(outcome.refusal)
        if outcome.audio is not None:
            self._after_audio(outcome.audio)
        if outcome.upload is not None:
            self._spawn(self._read_upload(outcome.upload), f"file-{outcome.upload.key.device}")
        return outcome

    def screen(self, topic: str, payload: bytes) -> bool:
        """Whether an arriving audio message was dealt with at once (intake.screen)."""
        outcome = self.intake.screen(topic, payload)
        if outcome is None:
            return False
        if outcome.refusal is not None:
            self.refuse(outcome.refusal)
        return True

    def open_local(
        self,
        key: UtteranceKey,
        *,
        topic: str | None,
        language: str | None,
        rate: int,
        prompt: str = "",
    ) -> Utterance | Refusal:
        """A session for a client of the node itself (intake.open_local); refusals are sent.

        ``prompt``: the client's vocabulary for this session's finals.
        """
        opened = self.intake.open_local(key, topic=topic, lang=language, rate=rate)
        if isinstance(opened, Refusal):
            self.refuse(opened)
        else:
            opened.prompt = prompt
        return opened

    def feed_local(self, utt: Utterance, samples: Samples, *, end: bool = False) -> None:
        """Audio of a local session, then what any audio leads to (partial, speculation, final)."""
        if not utt.receiving:
            return
        self.intake.feed_local(utt, samples, end=end)
        self._after_audio(utt)

    def _after_audio(self, utt: Utterance) -> None:
        """New audio in an utterance: finalize it, speculate at a pause, or refresh its partial."""
        fleet = self.intake.fleet
        if fleet is not None:
            # a new session (or one replayed from the spool after a restart, which
            # another node may have finished meanwhile): the others leave it to us
            claim = fleet.claim(utt.key)
            if claim is not None:
                self._publisher.claim(claim)
        # a satellite of a room group: its peers may hear the same words
        self.arbiter.opened(utt.key, utt.created_at)
        if utt.state is UtteranceState.ENDPOINTED:
            self.finalize_soon(utt)
            return
        progress = self._progress.get(utt.key)
        if progress is None:
            progress = self._progress[utt.key] = Progress(utt)
        progress.drop_stale_speculation()  # the user went on speaking after the pause
        speculate_s = self.config.endpoint.speculate_ms / 1000
        partials = self.config.partials
        interval = partials.interval_ms * SAMPLE_RATE // 1000
        if progress.wants_speculation(speculate_s):
            self._speculate(progress)
        elif partials.enabled and progress.wants_partial(interval, speculate_s, utt.last_chunk_at):
            progress.partial_pending = True
            self._spawn(self._partial(progress), f"partial-{utt.key.session}")

    async def _read_upload(self, upload: Upload) -> None:
        """A whole file: decoded off the loop into one utterance, finalized behind live work."""
        read = await self.intake.read_upload(upload)
        if isinstance(read, Refusal):
            self.refuse(read)
        elif read is not None:
            self.finalize_soon(read, lane=Lane.BATCH)

    def refuse(self, refusal: Refusal) -> None:
        """Tell a device its message was refused (and log and count it)."""
        self.errors[refusal.code] += 1
        log.warning(
            "rejected message from %s: %s (%s)",
            refusal.device,
            refusal.message,
            refusal.code,
            extra=log_fields(refusal.device, refusal.session),
        )
        self._publisher.error(refusal)

    def tick(self, now: float) -> None:
        """Wall-clock endpoints and the reports they owe (the node calls this every tick)."""
        ticked = self.intake.tick(now)
        for refusal in ticked.refusals:
            self.refuse(refusal)
        for utt in ticked.ended:
            self.finalize_soon(utt)

    # -- speculative finals and partials ---------------------------------------

    def _speculate(self, progress: Progress) -> None:
        """Decode the final now, at a pause; the endpoint may confirm it (speculative final)."""
        utt = progress.utt
        options, model = self._final_options(utt)
        audio = self._final_audio(utt)
        decode = self.decoder.decode(audio, options, model, verify=_speech_window(utt, audio))
        task = asyncio.create_task(decode, name=f"speculate-{utt.key.session}")
        task.add_done_callback(_consume_exception)
        progress.speculation = Speculation(utt.endpointer.speech_windows, task)

    async def _partial(self, progress: Progress) -> None:
        utt = progress.utt
        window_start = progress.window_start
        decoded = window_start

        def snapshot() -> Samples | None:
            nonlocal decoded
            window = progress.partial_audio()
            if window is None:
                return None
            start, decoded = window
            return utt.audio(start)

        try:
            model, _ = await self.decoder.choose(
                self.topic(utt.topic).partials_model, tier="partials"
            )
            scheduler = self.decoder.pool.scheduler
            decoding = await scheduler.partial(
                snapshot,
                DecodeOptions.partial(self.config.partials, language=utt.language),
                model=model,
            )
            if decoding is None or not utt.receiving:
                return
            text = strip_annotations(decoding.text)
            if not text:
                return
            stable, unstable = progress.agreement.update(text)
            progress.partial_seq += 1
            partial = messages.partial(
                utt,
                decoding,
                node=self._publisher.node_id,
                model=model,
                seq=progress.partial_seq,
                decoded_samples=decoded,
                stable=stable,
                unstable=unstable,
            )
            self._publisher.partial(partial)
            self._metrics.observe_partial(partial)
            self._trim_partial_window(progress, decoding, window_start, decoded)
        finally:
            progress.partial_pending = False

    def _trim_partial_window(
        self, progress: Progress, decoding: Decoding, window_start: int, decoded: int
    ) -> None:
        """Buffer trimming: past ``trim_after_s``, drop committed segments from the window."""
        window_s = (decoded - window_start) / SAMPLE_RATE
        trim_after_s = self.config.partials.trim_after_s
        if not trim_after_s or window_s < trim_after_s:
            return
        point = trim_point(decoding.segments, window_s, progress.agreement.window_committed)
        if point is not None:
            progress.trim_window(window_start, *point)

    # -- decode options --------------------------------------------------------

    def _final_options(
        self, utt: Utterance, request: RequestOverrides | None = None
    ) -> tuple[DecodeOptions, str | None]:
        """A final's decode options (prompt from topic, context, request) and its model."""
        topic = self.topic(utt.topic)
        extra = request.prompt if request else utt.prompt
        prompt = self.prompt_for(utt.key.device, utt.topic, topic, extra)
        model = (request.model if request else None) or topic.model
        if model is None:  # the node's finals model, or an A/B test's candidate
            model = self.decoder.pool.finals_for(utt.key.device)
        options = DecodeOptions.final(
            self.config.decode,
            language=utt.language,
            prompt=prompt,
            speech_s=utt.endpointer.speech_s,
        )
        return options, model

    def _final_audio(self, utt: Utterance) -> Samples:
        """The audio a final decodes: the speech and the pause a speculation saw after it."""
        tail_s = self.config.endpoint.speculate_ms / 1000
        return utt.audio()[: utt.endpointer.final_samples(tail_s, utt.samples)]

    def prompt_for(self, device: str, topic_name: str, topic: TopicConfig, extra: str = "") -> str:
        """Topic vocabulary, then the topic's and the device's context, then a request's own."""
        now = time.monotonic()
        return build_prompt(
            topic.prompt,
            self._context.get(topic=topic_name, now=now),
            self._context.get(device=device, now=now),
            extra,
        )

    # -- finals ----------------------------------------------------------------

    def finalize_soon(self, utt: Utterance, *, lane: Lane = Lane.LIVE) -> None:
        """ENDPOINTED: leave the open set at once (late chunks see it closed), final as a task."""
        self.intake.close(utt)
        utt.start_final()
        self._spawn(self.finalize(utt, lane=lane), f"final-{utt.key.session}")

    def file_utterance(
        self, key: UtteranceKey, *, topic: str, language: str | None, samples: int
    ) -> Utterance:
        """An utterance for a whole file sent as a request (answers.py fills and ends it)."""
        return self.intake.file_utterance(key, topic=topic, language=language, samples=samples)

    async def finalize(
        self,
        utt: Utterance,
        request: RequestOverrides | None = None,
        *,
        lane: Lane = Lane.LIVE,
    ) -> Final:
        """Decode (or take the speculative decode of) an ended utterance; publish its final.

        ``lane`` BATCH for files and transcribe requests: decoded behind live sessions.
        Whatever fails on the way, the session gets a final (an error final at worst)
        and the sender an error report: a final is never lost.
        """
        progress = self._progress.pop(utt.key, None)
        speculation = (
            progress.speculation if progress is not None and progress.speculation_valid() else None
        )
        topic = self.topic(utt.topic)
        decoded, rejection = await self._decode_final(utt, speculation, request, lane)
        node, model = self._publisher.node_id, self._publisher.model
        publish = request is None or request.publish
        pool = self.decoder.pool
        in_test = decoded is not None and not (request and request.model) and not topic.model
        variant = pool.variant_of(decoded.model) if decoded is not None and in_test else None
        try:
            text = ""
            if decoded is not None:
                decoding = decoded.decoding
                text, rejection = judge(
                    decoding.text, decoding.confidence, self.gate, check=decoded.check
                )
            final = messages.final(
                utt,
                node=node,
                model=decoded.model if decoded else model,
                text=text,
                decoding=decoded.decoding if decoded else None,
                rejection=rejection,
                queue_ms=decoded.queue_ms if decoded else 0.0,
                speculative=speculation is not None and decoded is not None,
                wake_words=topic.wake_words,
                # the partials' committed words, before the wake word was stripped
                stable_revised=progress is not None and not progress.agreement.begins(text),
                variant=variant,
                level=speech_level(self._final_audio(utt)),
            )
            if request is None and not await self._ours(utt):
                utt.done()
                return final  # another node claimed the session first and publishes its final
            if request is None:  # another satellite of the room may have heard it better
                final = await self.arbiter.settle(final)
            if publish:
                self._publisher.final(final, on_sent=self._finished_callback(utt))
        except Exception as exc:
            log.exception(
                "building the final of %s failed", utt.key.session, extra=utt.key.log_fields()
            )
            self._owe(utt, f"building the final failed: {exc}")
            final = messages.failed(utt, node=node, model=model)
            if publish:
                self._publisher.final(final, on_sent=self._finished_callback(utt))
        utt.done()
        self.finals += 1
        self._metrics.observe_final(final)
        if publish:
            self._after_final(utt, final, topic)
        if variant is not None:
            self._compare(utt, final, variant, request)
        log.info(
            "final %s/%s %s %.1fs audio, %.0f ms after endpoint, conf %.2f: %r",
            final.device,
            final.session,
            final.reason,
            final.audio_s,
            final.latency_ms,
            final.confidence,
            final.text,
            extra=utt.key.log_fields(),
        )
        return final

    async def _ours(self, utt: Utterance) -> bool:
        """Whether this node publishes the session's final (the fleet's claim, fleet.py)."""
        fleet = self.intake.fleet
        if fleet is None:
            return True
        wait_s = self.config.fleet.claim_wait_ms / 1000
        if await fleet.settled(utt.key, wait_s):
            return True
        log.info(
            "session %s/%s: another node claimed it first; no final from this one",
            utt.key.device,
            utt.key.session,
            extra=utt.key.log_fields(),
        )
        if self._spool is not None:
            self._spool.discard(utt.key.device, utt.key.session)
        return False

    def abandon(self, key: UtteranceKey) -> None:
        """Another node claimed an open session first: drop it here, without a final."""
        utt = self.intake.abandon(key)
        self._progress.pop(key, None)
        if utt is not None:
            utt.done()
            if self._spool is not None:
                self._spool.discard(key.device, key.session)
            log.info(
                "session %s/%s: another node claimed it first; dropped here",
                key.device,
                key.session,
                extra=key.log_fields(),
            )

    async def _decode_final(
        self,
        utt: Utterance,
        speculation: Speculation | None,
        request: RequestOverrides | None,
        lane: Lane,
    ) -> tuple[FinalDecoding | None, str | None]:
        """The final's decoding, or why there is none (too little speech, a failed decode)."""
        rejection = check_audio(utt.endpointer.speech_s, self.gate)
        if rejection is not None:
            return None, rejection
        try:
            if speculation is not None:
                decoded = await speculation.task  # decoded while the user fell silent
            else:
                options, wanted = self._final_options(utt, request)
                audio = self._final_audio(utt)
                decoded = await self.decoder.decode(
                    audio, options, wanted, lane=lane, verify=_speech_window(utt, audio)
                )
        except Exception as exc:  # a failed decode still owes the sender its final
            log.exception("final decode of %s failed", utt.key.session, extra=utt.key.log_fields())
            self._owe(utt, f"transcription failed: {exc}")
            return None, messages.FAILED
        if decoded.fallback is not None:  # the topic's model does not load: say so once
            key = utt.key
            self.refuse(
                Refusal(key.device, ErrorCode.MODEL_UNAVAILABLE, decoded.fallback, key.session)
            )
        return decoded, None

    def _owe(self, utt: Utterance, message: str) -> None:
        """Tell the sender its session's final has no text because the node failed."""
        key = utt.key
        self.refuse(Refusal(key.device, ErrorCode.DECODE_FAILED, message, key.session))

    def _after_final(self, utt: Utterance, final: Final, topic: TopicConfig) -> None:
        """Keep the audio for retranscribe; hand a final with text to the topic's webhooks."""
        if utt.audio_s <= self.config.endpoint.max_duration_s:
            audio = self._final_audio(utt)  # what the final decoded: Core's decode compares
            self._recent.add(
                device=final.device,
                session=final.session,
                topic=final.topic,
                language=utt.language,
                speech_s=final.speech_s,
                audio=audio,
                now=time.monotonic(),
                speech_window=_speech_window(utt, audio),
            )
        if final.text and topic.webhooks:
            self._webhooks.submit(TranscriptionEvent.from_final(final), topic.webhooks)

    def _compare(
        self, utt: Utterance, final: Final, variant: str, request: RequestOverrides | None
    ) -> None:
        """Count the final for its A/B variant; in shadow mode, have the candidate decode it too."""
        ab = self.decoder.pool.ab
        ab.final(
            device=final.device,
            session=final.session,
            variant=variant,
            text=final.text,
            rejected=final.rejected,
            confidence=final.confidence,
            latency_ms=final.latency_ms,
            decode_ms=final.decode_ms,
        )
        self._metrics.observe_variant(final, variant)
        experiment = ab.experiment
        if experiment is not None and experiment.shadow and final.rejected != messages.FAILED:
            options, _ = self._final_options(utt, request)
            audio = self._final_audio(utt)
            wake_words = self.topic(utt.topic).wake_words
            shadow = self._shadow(audio, options, experiment.candidate, final, wake_words)
            self._spawn(shadow, f"shadow-{utt.key.session}")

    async def _shadow(
        self,
        audio: Samples,
        options: DecodeOptions,
        candidate: str,
        final: Final,
        wake_words: Sequence[str],
    ) -> None:
        """The candidate's decode of a published final's audio, behind live work.

        Judged by the same gate and stripped of the same wake words as the
        published text, so that only the models differ in the comparison.
        """
        try:
            decoded = await self.decoder.decode(audio, options, candidate, lane=Lane.BATCH)
        except Exception:  # a shadow decode must never cost anything but its figure
            log.exception("shadow decode of %s with %s failed", final.session, candidate)
            return
        decoding = decoded.decoding
        text, rejection = judge(decoding.text, decoding.confidence, self.gate)
        stripped, rejection = strip_transcript(text, rejection, wake_words)
        self.decoder.pool.ab.shadow(
            published=final.text,
            candidate="" if rejection else stripped.text,
            rejected=rejection is not None,
            confidence=decoding.confidence,
            decode_ms=decoding.decode_ms,
        )

    def _finished_callback(self, utt: Utterance) -> Callable[[], None] | None:
        """Once the broker has the final, the spool forgets the session's audio."""
        spool = self._spool
        if spool is None:
            return None
        device, session = utt.key.device, utt.key.session
        return lambda: spool.finish(device, session)


def _speech_window(utt: Utterance, audio: Samples) -> tuple[float, float] | None:
    """For a short utterance, the seconds of its speech (with a margin) to decode again alone."""
    vad = utt.endpointer
    audio_s = audio.size / SAMPLE_RATE
    return verify_window(vad.speech_s, vad.first_speech_s, vad.speech_end_s, audio_s)


def _consume_exception(task: asyncio.Task[object]) -> None:
    """A speculative final nobody awaited must not log 'exception never retrieved'."""
    if not task.cancelled():
        task.exception()
