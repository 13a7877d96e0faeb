"""Intake's per-device limits: sessions per device, throttled chunks, reports, odd names.

Intake is driven directly (real VAD, real decoders); what the pipeline would do
with each outcome (publish a refusal, decode an upload) is recorded instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from orac_node.audio import Samples, float_to_s16, load_audio_file
from orac_node.audio.vad import SileroVad
from orac_node.config import NodeConfig
from orac_node.ingest.intake import Intake, Outcome, Ticked, Upload
from orac_node.ingest.limits import REPORT_EVERY_S
from orac_node.ingest.load import MIN_CAP, START_CAP
from orac_node.ingest.refusal import Refusal
from orac_node.ingest.session import Utterance
from orac_node.wire import AudioChunk, AudioFormat
from tests.conftest import AUDIO

VAD = SileroVad()
SILENCE = b"\x00\x00" * 320  # 20 ms


@dataclass
class Recorder:
    errors: list[tuple[str, str, int | None]] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)
    audio: list[Utterance] = field(default_factory=list)

    def refused(self, refusal: Refusal) -> None:
        assert refusal.message
        self.errors.append((refusal.device, refusal.code, refusal.dropped))

    def codes(self, device: str) -> list[str]:
        return [code for d, code, _ in self.errors if d == device]


class RecordingIntake(Intake):
    """Intake whose outcomes are recorded as the node would act on them."""

    def __init__(self, config: NodeConfig, rec: Recorder) -> None:
        super().__init__(config, vad=VAD)
        self.rec = rec

    def on_message(self, topic: str, payload: bytes) -> Outcome:
        outcome = super().on_message(topic, payload)
        if outcome.refusal is not None:
            self.rec.refused(outcome.refusal)
        if outcome.audio is not None:
            self.rec.audio.append(outcome.audio)
        if outcome.upload is not None:
            self.rec.uploads.append(outcome.upload)
        return outcome

    def tick(self, now: float) -> Ticked:
        ticked = super().tick(now)
        for refusal in ticked.refusals:
            self.rec.refused(refusal)
        return ticked

    async def read(self, upload: Upload) -> None:
        read = await self.read_upload(upload)
        if isinstance(read, Refusal):
            self.rec.refused(read)


def _intake(**ingest: Any) -> tuple[RecordingIntake, Recorder]:
    rec = Recorder()
    config = NodeConfig.model_validate({"ingest": ingest})
    return RecordingIntake(config, rec), rec


def _chunk(session: str, seq: int = 0, *, end: bool = False, pcm: bytes = SILENCE) -> bytes:
    return AudioChunk(session, seq, 16_000, 1, AudioFormat.S16LE, pcm, end=end).encode()


def test_a_device_may_hold_only_its_own_number_of_sessions() -> None:
    intake, rec = _intake(device_max_sessions=2)
    for session in ("a", "b", "c"):
        intake.on_message("audio/kitchen/chunk", _chunk(session))
    intake.on_message("audio/hall/chunk", _chunk("a"))  # another device is not affected
    assert rec.codes("kitchen") == ["too_many_sessions"]
    assert rec.codes("hall") == []
    assert len(intake.utterances) == 3
    first = next(u for u in intake.utterances.values() if u.key.session == "a")
    intake.close(first)  # its final is being decoded: the device may open another
    intake.on_message("audio/kitchen/chunk", _chunk("d"))
    assert rec.codes("kitchen") == ["too_many_sessions"]
    assert {u.key.session for u in intake.utterances.values() if u.key.device == "kitchen"} == {
        "b",
        "d",
    }


def test_a_flood_of_new_sessions_is_held_to_the_rate_and_every_drop_is_reported() -> None:
    intake, rec = _intake(
        device_chunks_per_s=20, device_burst_s=1, device_audio_s_per_s=0, device_max_sessions=1024
    )
    sent = 500
    for n in range(sent):  # a session per message, each ended at once
        intake.on_message("audio/flood/chunk", _chunk(f"s{n}", end=True))
    intake.on_message("audio/calm/chunk", _chunk("c"))
    opened = [u for u in rec.audio if u.key.device == "flood"]
    assert len(opened) < 30  # the burst of 20, plus what refilled meanwhile
    assert rec.codes("flood") == ["rate_limited"]  # one report, not 480
    assert rec.codes("calm") == []
    intake.tick(time.monotonic() + REPORT_EVERY_S + 0.01)
    reports = [n for d, code, n in rec.errors if d == "flood" and code == "rate_limited"]
    assert len(reports) == 2
    assert len(opened) + sum(n or 0 for n in reports) == sent  # nothing unaccounted for


def test_audio_rate_counts_seconds_not_messages() -> None:
    intake, rec = _intake(device_chunks_per_s=0, device_audio_s_per_s=1.0, device_burst_s=2)
    one_second = b"\x00\x00" * 16_000
    for seq in range(4):
        intake.on_message("audio/big/chunk", _chunk("s", seq, pcm=one_second))
    (utt,) = intake.utterances.values()
    assert utt.chunks == 4  # admitted, never cut: 2 s over the bucket, as debt
    assert rec.codes("big") == []
    intake.on_message("audio/big/chunk", _chunk("next", pcm=one_second))  # refused: in debt
    intake.on_message("audio/big/raw", one_second)  # raw audio draws on the same bucket
    assert rec.codes("big") == ["rate_limited"]
    assert intake.tick(utt.created_at + REPORT_EVERY_S + 0.01).ended == []
    assert [n for _, code, n in rec.errors if code == "rate_limited"] == [1, 1]


def test_bad_payloads_within_the_rate_each_get_their_own_error() -> None:
    intake, rec = _intake()
    for payload in (b"", b"\xc1", _chunk("s")[:-3]):
        intake.on_message("audio/kitchen/chunk", payload)
    intake.on_message("audio/kitchen/raw", b"\x00")
    assert rec.codes("kitchen") == ["bad_payload"] * 3 + ["bad_audio"]


def test_a_device_name_too_long_for_its_error_topic_is_logged_not_answered() -> None:
    intake, rec = _intake()
    device = "d" * 65_520
    intake.on_message(f"audio/{device}/raw", b"\x00")
    intake.on_message("audio/ok/raw", b"\x00")
    assert intake.unanswerable == 1
    assert [d for d, _, _ in rec.errors] == ["ok"]


@pytest.mark.parametrize("kind", ["chunk", "raw", "file"])
def test_messages_on_an_invalid_device_count_against_that_name(kind: str) -> None:
    intake, rec = _intake(device_chunks_per_s=5, device_burst_s=1)
    for _ in range(50):
        intake.on_message(f"audio/bad name/{kind}", b"x")
    assert rec.codes("bad name") == ["bad_device"] * 5 + ["rate_limited"]


async def test_files_being_decoded_count_as_the_devices_sessions() -> None:
    intake, rec = _intake(device_max_sessions=2)
    for _ in range(3):
        intake.on_message("audio/tool/file", b"not audio at all")
    assert rec.codes("tool") == ["too_many_sessions"]
    assert len(rec.uploads) == 2
    await asyncio.gather(*(intake.read(upload) for upload in rec.uploads))  # ffmpeg refuses both
    assert rec.codes("tool") == ["too_many_sessions", "decode_failed", "decode_failed"]
    intake.on_message("audio/tool/chunk", _chunk("a"))
    intake.on_message("audio/tool/chunk", _chunk("b"))
    assert rec.codes("tool")[-1] == "decode_failed"  # both slots were given back


# -- audio after a session ended ------------------------------------------------------

SPEECH = load_audio_file(AUDIO / "commands" / "utt000.wav")


def _chunks(samples: Samples, session: str, first_seq: int = 0) -> list[bytes]:
    step = 320  # 20 ms
    pcm = [float_to_s16(samples[i : i + step]) for i in range(0, samples.size, step)]
    return [
        AudioChunk(session, first_seq + n, 16_000, 1, AudioFormat.S16LE, p).encode()
        for n, p in enumerate(pcm)
    ]


def test_speech_after_the_silence_endpoint_is_reported_with_its_count() -> None:
    """The user paused longer than silence_ms and went on: the satellite must be told."""
    intake, rec = _intake()
    first = _chunks(np.concatenate((SPEECH, np.zeros(16_000, np.float32))), "s1")
    for payload in first:
        intake.on_message("audio/kitchen/chunk", payload)
    (utt,) = rec.audio[-1:]
    assert utt.reason == "silence"
    intake.close(utt)  # what the pipeline does at the endpoint
    rest = _chunks(SPEECH, "s1", first_seq=len(first))
    for payload in rest:
        intake.on_message("audio/kitchen/chunk", payload)
    assert [(code, n) for _, code, n in rec.errors] == [("late_audio", 1)]  # told at once
    intake.tick(time.monotonic() + REPORT_EVERY_S + 0.01)  # the rest, counted, a second later
    reports = [(code, n) for _, code, n in rec.errors]
    assert reports == [("late_audio", 1), ("late_audio", len(rest) - 1)]
    assert intake.late_chunks == len(rest)
    intake.tick(time.monotonic() + 3 * REPORT_EVERY_S)
    assert len(rec.errors) == 2  # nothing more to tell


def test_late_audio_of_a_session_finished_before_a_restart_is_dropped_quietly() -> None:
    """The spool's finished log: redeliveries after a restart, not a user still talking."""
    intake, rec = _intake()
    intake.remember_finished([("kitchen", "s0")])
    for payload in _chunks(SPEECH[:3200], "s0"):
        intake.on_message("audio/kitchen/chunk", payload)
    intake.tick(time.monotonic() + REPORT_EVERY_S + 0.01)
    assert rec.errors == []
    assert intake.late_chunks == 10


# -- per-device rates are applied when a session opens ----------------------------------


def test_a_device_over_its_rate_has_new_sessions_refused_never_cut() -> None:
    """A satellite replaying recorded commands faster than real time (the issue's orders)."""
    intake, rec = _intake(device_audio_s_per_s=1.0, device_burst_s=5.0)  # 5 s of audio banked
    sent: dict[str, int] = {}
    for n in range(6):  # 6 x 2.5 s of audio, all at once: more than the bank
        chunks = _chunks(SPEECH, f"order-{n}")
        chunks[-1] = dataclasses.replace(AudioChunk.decode(chunks[-1]), end=True).encode()
        for payload in chunks:
            intake.on_message("audio/replayer/chunk", payload)
        sent[f"order-{n}"] = len(chunks)
    opened = {utt.key.session: utt for utt in rec.audio}
    assert 1 < len(opened) < 6  # what the bank allowed, then refused
    for session, utt in opened.items():  # every admitted session is whole
        assert (utt.chunks, utt.reorderer.gaps, utt.incomplete) == (sent[session], 0, False)
    refused = [s for s in sent if s not in opened]
    assert refused == [f"order-{n}" for n in range(len(opened), 6)]  # later ones, whole too
    intake.tick(time.monotonic() + REPORT_EVERY_S + 0.01)
    reports = [n for _, code, n in rec.errors if code == "rate_limited"]
    assert sum(n or 0 for n in reports) == sum(sent[s] for s in refused)  # all accounted for


def test_an_admitted_session_goes_on_past_the_devices_rate() -> None:
    intake, rec = _intake(device_audio_s_per_s=1.0, device_burst_s=2.0)
    chunks = _chunks(np.concatenate([SPEECH] * 3), "long")  # 7.5 s of audio at once
    for payload in chunks:
        intake.on_message("audio/kitchen/chunk", payload)
    (utt,) = intake.utterances.values()
    assert (utt.chunks, utt.reorderer.gaps) == (len(chunks), 0)
    assert rec.errors == []
    intake.on_message("audio/kitchen/chunk", _chunk("next"))  # the debt refuses the next one
    assert rec.codes("kitchen") == ["rate_limited"]


def test_the_satellites_own_end_just_after_the_silence_endpoint_is_not_reported() -> None:
    """The node's endpoint and the satellite's end race: nothing was cut, nothing to tell."""
    intake, rec = _intake()
    chunks = _chunks(np.concatenate((SPEECH, np.zeros(16_000, np.float32))), "s1")
    for payload in chunks:
        intake.on_message("audio/kitchen/chunk", payload)
    (utt,) = rec.audio[-1:]
    intake.close(utt)
    end = AudioChunk("s1", len(chunks), 16_000, 1, AudioFormat.S16LE, SILENCE, end=True)
    intake.on_message("audio/kitchen/chunk", end.encode())
    intake.tick(time.monotonic() + REPORT_EVERY_S + 0.01)
    assert rec.errors == []
    assert intake.late_chunks == 1  # counted all the same


def _fall_behind(intake: Intake, lag_s: float, ticks: int) -> None:
    now = time.monotonic()
    for tick in range(ticks):
        intake.observe_lag(lag_s)
        intake.tick(now + tick * 0.05)


def test_an_overloaded_node_refuses_a_session_whole_and_says_so_once() -> None:
    intake, rec = _intake()
    for device in range(MIN_CAP):  # the sessions a node always takes
        intake.on_message(f"audio/sat-{device}/chunk", _chunk("s"))
    _fall_behind(intake, 1.0, ticks=12)  # over the limit for longer than a stall
    assert intake.overloaded
    intake.on_message("audio/kitchen/chunk", _chunk("a"))
    assert rec.codes("kitchen") == ["overloaded"]
    for utt in list(intake.utterances.values()):
        intake.close(utt)
    _fall_behind(intake, 0.0, ticks=3)  # caught up, and the others ended: room again
    assert not intake.overloaded
    for seq in range(1, 5):  # the refused session never opens halfway
        intake.on_message("audio/kitchen/chunk", _chunk("a", seq, end=seq == 4))
    assert rec.codes("kitchen") == ["overloaded"]
    assert not intake.utterances
    assert intake.shed == (1, 4)
    intake.on_message("audio/kitchen/chunk", _chunk("b"))  # a new one is welcome again
    assert [u.key.session for u in intake.utterances.values()] == ["b"]


def test_a_session_refused_for_room_is_refused_whole() -> None:
    intake, rec = _intake(max_sessions=1)
    intake.on_message("audio/kitchen/chunk", _chunk("a"))
    intake.on_message("audio/hall/chunk", _chunk("b"))
    (only,) = intake.utterances.values()
    intake.close(only)  # room again, but "b" began without it
    intake.on_message("audio/hall/chunk", _chunk("b", 1))
    assert rec.codes("hall") == ["too_many_sessions"]
    assert not intake.utterances


def test_a_full_node_refuses_a_new_session_the_moment_it_arrives() -> None:
    intake, _ = _intake()
    for device in range(START_CAP):
        intake.on_message(f"audio/sat-{device}/chunk", _chunk("s"))
    assert intake.overloaded  # at the cap it starts with
    assert intake.screen("audio/sat-0/chunk", _chunk("s", 1)) is None  # an open one waits its turn
    first = intake.screen("audio/kitchen/chunk", _chunk("a"))
    assert first is not None and first.refusal is not None
    assert (first.refusal.code, first.refusal.session) == ("overloaded", "a")
    later = intake.screen("audio/kitchen/chunk", _chunk("a", 1))
    assert later is not None and later.refusal is None  # dropped, not told again
    assert intake.screen("audio/hall/chunk", _chunk("b", 3)) is None  # not a start: its turn
    for utt in list(intake.utterances.values())[:10]:
        intake.close(utt)
    assert not intake.overloaded
    assert intake.screen("audio/hall/chunk", _chunk("c")) is None  # room: nothing screened
