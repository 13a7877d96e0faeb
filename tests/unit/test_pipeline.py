"""The pipeline's decisions, on a real pipeline with a scripted engine (pipeline_rig.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import math
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orac_node.audio import float_to_s16, load_audio_file
from orac_node.config import NodeConfig
from orac_node.consumers.answers import Answers
from orac_node.decode import modelfiles, modelpool
from orac_node.decode.experiment import Experiment
from orac_node.ingest import pace
from orac_node.ingest.spool import Spool
from orac_node.mqtt.rpc import RequestFailedError
from orac_node.pipeline import messages
from orac_node.wire import SAMPLE_RATE, AudioChunk, AudioFormat, Final, RetranscribeRequest
from tests.conftest import AUDIO
from tests.unit.pipeline_rig import Activity, ScriptedEngine, running, silence

PADDING = int(0.3 * SAMPLE_RATE)
"""The synthesized commands have 0.3 s of digital silence before and after the speech."""
COMMAND = load_audio_file(AUDIO / "commands" / "utt000.wav")[
    :-PADDING
]  # "turn on the kitchen lights"
NEXT = load_audio_file(AUDIO / "commands" / "utt001.wav")[PADDING:]  # "what is the weather..."


async def _settle(seconds: float = 0.2) -> None:
    await asyncio.sleep(seconds)


async def test_speech_after_a_pause_cancels_the_speculative_final_and_partials_go_on(
    tmp_path: Path,
) -> None:
    engine = ScriptedEngine()
    engine.hold.clear()  # the speculative final decodes until cancelled
    async with running(NodeConfig(), engine, tmp_path) as rig:
        # a 0.3 s pause: past speculate_ms (0.2 s), short of the 0.7 s silence endpoint
        seq = await rig.stream(
            "kitchen", "s1", np.concatenate((COMMAND, silence(0.3))), pace_s=0.001
        )
        await _settle()
        (progress,) = rig.pipeline._progress.values()
        speculation = progress.speculation
        assert speculation is not None, "the pause starts the final's decode"
        partials_before = sum(1 for job in engine.jobs if not job.final)
        # the user goes on speaking (in real time: audio sent faster gets no partials)
        seq = await rig.stream("kitchen", "s1", NEXT[:-PADDING], first_seq=seq, pace_s=0.02)
        await _settle()
        assert speculation.task.cancelled() or speculation.task.done()
        assert engine.aborted == 1
        assert sum(1 for job in engine.jobs if not job.final) > partials_before
        assert rig.partials(), "partials resume while the user speaks"
        engine.hold.set()
        await rig.stream("kitchen", "s1", silence(0.1), first_seq=seq, end=True)
        await asyncio.gather(*rig.tasks)
        (final,) = rig.finals()
        assert final.text == engine.text
        # not the stale guess: the published decode holds the speech after the pause
        assert [job for job in engine.jobs if job.final][-1].samples > COMMAND.size + PADDING
        assert np.isfinite(final.latency_ms)


async def test_audio_sent_faster_than_real_time_gets_no_partials_but_its_final(
    tmp_path: Path,
) -> None:
    engine = ScriptedEngine()
    async with running(NodeConfig(), engine, tmp_path) as rig:
        # a recording sent at once: ~2.4 s of speech within a few milliseconds
        await rig.stream("kitchen", "burst", np.concatenate((COMMAND, NEXT)), end=True)
        await asyncio.gather(*rig.tasks)
        assert [f.session for f in rig.finals()] == ["burst"]
        assert [job for job in engine.jobs if not job.final] == [], "no partial was decoded"
        assert not rig.partials()
        # the same words from a satellite speaking them: partials as usual
        await rig.stream("kitchen", "live", np.concatenate((COMMAND, NEXT)), end=True, pace_s=0.02)
        await asyncio.gather(*rig.tasks)
        assert [f.session for f in rig.finals()] == ["burst", "live"]
        assert [job for job in engine.jobs if not job.final], "a live stream is decoded as it goes"
        assert rig.partials()


async def test_a_topic_model_that_cannot_load_falls_back_once_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """model.extra names a missing file and a corrupt one: finals use the node's model."""
    corrupt = tmp_path / "ggml-corrupt.bin"
    corrupt.write_bytes(b"ggml" + bytes(range(256)) * 64)
    config = NodeConfig.model_validate(
        {
            "model": {"extra": {"gone": str(tmp_path / "missing.bin"), "corrupt": str(corrupt)}},
            "registry": {"topics": {"hall": {"model": "gone"}, "attic": {"model": "corrupt"}}},
        }
    )
    probes: list[Path] = []
    real_probe = modelfiles.check_loadable

    def counted(path: Path, **kwargs: Any) -> None:
        probes.append(path)
        real_probe(path, **kwargs)

    monkeypatch.setattr(modelpool, "check_loadable", counted)
    engine = ScriptedEngine()
    async with running(config, engine, tmp_path) as rig:
        for n, topic in enumerate(["hall", "attic", "hall", "attic", "hall"]):
            chunk = AudioChunk(f"s{n}", 0, SAMPLE_RATE, 1, AudioFormat.S16LE, float_to_s16(COMMAND))
            rig.pipeline.on_audio_message(
                "audio/kitchen/chunk", dataclasses.replace(chunk, topic=topic, end=True).encode()
            )
            await asyncio.gather(*rig.tasks)
    finals = rig.finals()
    assert [f.rejected for f in finals] == [None] * 5
    assert [f.model for f in finals] == ["tiny.en"] * 5
    assert all(f.text == engine.text for f in finals)
    assert sorted(p.name for p in probes) == ["ggml-corrupt.bin", "missing.bin"]  # once each
    reports = rig.errors()
    assert [r.code for r in reports] == ["model_unavailable", "model_unavailable"]
    assert "gone" in reports[0].message and "corrupt" in reports[1].message
    assert all(r.session in ("s0", "s1") for r in reports)


async def test_a_request_for_a_model_that_cannot_load_is_answered_model_unavailable(
    tmp_path: Path,
) -> None:
    config = NodeConfig.model_validate({"model": {"extra": {"gone": str(tmp_path / "x.bin")}}})
    async with running(config, ScriptedEngine(), tmp_path) as rig:
        await rig.stream("kitchen", "s1", COMMAND, end=True)
        await asyncio.gather(*rig.tasks)
        answers = Answers("rig", rig.pipeline, rig.pipeline._recent, state=lambda: "ready")
        for _ in range(2):  # the load that fails, then the failure remembered
            with pytest.raises(RequestFailedError) as refused:
                await answers.retranscribe(RetranscribeRequest("kitchen", "s1", model="gone"))
            assert refused.value.code == "model_unavailable"


async def test_a_nan_confidence_never_reaches_json(tmp_path: Path) -> None:
    engine = ScriptedEngine(confidence=math.nan)
    async with running(NodeConfig(), engine, tmp_path) as rig:
        await rig.stream("kitchen", "s1", COMMAND, end=True)
        await asyncio.gather(*rig.tasks)
    (final,) = rig.finals()  # published: its JSON parsed back
    assert math.isfinite(final.confidence)
    assert final.rejected == "low_confidence"  # a confidence that is no number is no confidence


async def test_a_final_that_cannot_be_built_is_published_as_an_error_final(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_args: object, **_kwargs: object) -> Final:
        raise RuntimeError("wake-word table corrupt")

    monkeypatch.setattr(messages, "final", broken)
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20, finished_ttl_s=60)
    async with running(NodeConfig(), ScriptedEngine(), tmp_path, spool=spool) as rig:
        await rig.stream("kitchen", "s1", COMMAND, end=True)
        await asyncio.gather(*rig.tasks)
        assert spool.open_sessions == 1  # kept until the broker has the final
        rig.acknowledge_all()
    (final,) = rig.finals()
    assert (final.session, final.text, final.rejected) == ("s1", "", "decode_failed")
    assert [r.code for r in rig.errors()] == ["decode_failed"]
    assert "wake-word table corrupt" in rig.errors()[0].message
    assert spool.open_sessions == 0  # the session's audio left the spool once acknowledged
    assert not rig.pipeline.intake.utterances
    assert "building the final of s1 failed" in caplog.text


async def test_a_live_final_does_not_wait_behind_a_long_file(tmp_path: Path) -> None:
    """A one-minute file is decoded a window at a time in the batch lane; live work goes first."""
    jfk = load_audio_file(AUDIO / "speech" / "jfk.wav")
    minute = np.concatenate([np.concatenate((jfk, silence(1.0))) for _ in range(5)])
    engine = ScriptedEngine(seconds_per_audio_s=0.03)  # a 28 s window: 0.84 s of decode
    async with running(NodeConfig(), engine, tmp_path) as rig:
        wav = io.BytesIO()
        with wave.open(wav, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(float_to_s16(minute))
        rig.pipeline.on_audio_message("audio/recorder/file", wav.getvalue())
        async with asyncio.timeout(10):  # the file's first window is decoding
            while not any(job.samples > 10 * SAMPLE_RATE for job in engine.jobs):
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        await rig.stream("kitchen", "live", COMMAND, end=True)
        await asyncio.gather(*rig.tasks)
    live = next(f for f in rig.finals() if f.session == "live")
    (file,) = (f for f in rig.finals() if f.device == "recorder")
    assert live.queue_ms < 150, f"the live final waited {live.queue_ms} ms for a worker"
    assert rig.finals().index(live) == 0  # published while the file was still decoding
    windows = [job for job in engine.jobs if job.final and job.samples > 10 * SAMPLE_RATE]
    assert max(job.samples for job in windows) <= 28 * SAMPLE_RATE
    assert engine.aborted >= 1  # the window the live final interrupted was decoded again
    assert file.text.count(engine.text) == 3  # 60 s in three windows, stitched
    assert file.rejected is None and file.audio_s == pytest.approx(60.0, abs=0.1)


async def test_extra_models_share_the_nodes_decode_slots(tmp_path: Path) -> None:
    """A topic's extra model gets an engine of its own, not cores of its own."""
    activity = Activity()
    config = NodeConfig.model_validate(
        {
            "model": {"workers": 1, "extra": {"big": str(tmp_path / "ggml-big.bin")}},
            "registry": {"topics": {"attic": {"model": "big"}}},
        }
    )
    main = ScriptedEngine(seconds_per_audio_s=0.1, activity=activity)
    big = ScriptedEngine(seconds_per_audio_s=0.1, activity=activity, name="big")
    async with running(config, main, tmp_path, load_engine=lambda _path: big) as rig:
        for n, topic in enumerate(["attic", "general", "attic", "general"]):
            chunk = AudioChunk(f"s{n}", 0, SAMPLE_RATE, 1, AudioFormat.S16LE, float_to_s16(COMMAND))
            payload = dataclasses.replace(chunk, topic=topic, end=True).encode()
            rig.pipeline.on_audio_message(f"audio/dev{n}/chunk", payload)
        await asyncio.gather(*rig.tasks)
    assert sorted(f.model for f in rig.finals()) == ["big", "big", "tiny.en", "tiny.en"]
    assert activity.most == 1  # one decode at a time on a one-worker node, whatever model


@pytest.mark.parametrize(
    ("partials", "final", "revised"),
    [
        ("Turn on the kitchen lights", "Turn on the kitchen lights.", False),
        ("turn on the kitchen", "Turn on the kitchen lights please.", False),
        ("Turn off the kitchen lights", "Turn on the kitchen lights.", True),  # contradicts
    ],
)
async def test_the_final_says_when_it_revises_the_stable_words(
    tmp_path: Path, partials: str, final: str, revised: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stable words never change in later partials; the final is a separate decode."""
    # 6 s of audio streamed 10x faster than real time to keep the test short, standing
    # for a live satellite: no rate counts as catching up (which would stop partials)
    monkeypatch.setattr(pace, "AHEAD_RATE", math.inf)
    engine = ScriptedEngine(text=final, partial_text=partials)
    config = NodeConfig.model_validate({"endpoint": {"speculate_ms": 0}})
    async with running(config, engine, tmp_path) as rig:
        seq = await rig.stream("kitchen", "s1", np.concatenate([COMMAND] * 3), pace_s=0.002)
        await rig.stream("kitchen", "s1", silence(0.1), first_seq=seq, end=True)
        await asyncio.gather(*rig.tasks)
    stable = [p.stable for p in rig.partials()]
    assert stable and stable[-1], "two agreeing partials commit their words"
    (published,) = rig.finals()
    assert published.text == final
    assert published.stable_revised is revised


async def test_partials_and_finals_decode_with_their_tier_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """model.partials / model.finals, and a topic's partials_model / model over them."""
    monkeypatch.setattr(pace, "AHEAD_RATE", math.inf)  # fast streaming stands for live here
    config = NodeConfig.model_validate(
        {
            "model": {"finals": "big", "extra": {"big": str(tmp_path / "ggml-big.bin")}},
            "endpoint": {"speculate_ms": 0},
            "ingest": {"device_topics": {"attic": "attic"}},
            "registry": {"topics": {"attic": {"partials_model": "big", "model": "tiny.en"}}},
        }
    )
    main = ScriptedEngine(partial_text="turn on")
    big = ScriptedEngine(partial_text="turn on", name="big")
    async with running(config, main, tmp_path, load_engine=lambda _path: big) as rig:
        for device in ("kitchen", "attic"):
            seq = await rig.stream(device, "s1", np.concatenate([COMMAND] * 3), pace_s=0.002)
            await rig.stream(device, "s1", silence(0.1), first_seq=seq, end=True)
        await asyncio.gather(*rig.tasks)
    by_device = {f.device: f.model for f in rig.finals()}
    partial_models = {(p.device, p.model) for p in rig.partials()}
    assert by_device == {"kitchen": "big", "attic": "tiny.en"}
    assert partial_models == {("kitchen", "tiny.en"), ("attic", "big")}
    assert {j.model for j in main.jobs + big.jobs if not j.final} == {"tiny.en", "big"}


async def test_a_language_the_topics_models_cannot_decode_is_refused(tmp_path: Path) -> None:
    """An English-only model is asked for German: a clear error, no session, others go on."""
    config = NodeConfig.model_validate(
        {
            "model": {"extra": {"base": str(tmp_path / "ggml-base.bin")}},
            "registry": {"topics": {"lounge": {"language": "de"}, "europe": {"model": "base"}}},
        }
    )
    base = ScriptedEngine(name="base")
    async with running(config, ScriptedEngine(), tmp_path, load_engine=lambda _p: base) as rig:
        for n, (topic, lang) in enumerate(
            [("lounge", None), ("general", "fr"), ("general", "xx"), ("general", "en-GB")]
        ):
            chunk = AudioChunk(f"s{n}", 0, SAMPLE_RATE, 1, AudioFormat.S16LE, float_to_s16(COMMAND))
            payload = dataclasses.replace(chunk, topic=topic, lang=lang, end=True).encode()
            rig.pipeline.on_audio_message(f"audio/dev{n}/chunk", payload)
        await asyncio.gather(*rig.tasks)
    errors = {e.device: e for e in rig.errors()}
    assert sorted(errors) == ["dev0", "dev1", "dev2"]
    assert {e.code for e in errors.values()} == {"unsupported_language"}
    assert "English-only" in errors["dev0"].message and "'de'" in errors["dev0"].message
    assert "not one Whisper knows" in errors["dev2"].message
    assert [f.device for f in rig.finals()] == ["dev3"]  # en-GB is English: decoded


@pytest.mark.parametrize(
    ("experiment", "models", "variants"),
    [
        (Experiment("big", 1.0), {"kitchen": "big", "attic": "tiny.en"}, [None, "candidate"]),
        (Experiment("big", 0.0), {"kitchen": "tiny.en", "attic": "tiny.en"}, [None, "champion"]),
        (
            Experiment("big", 1.0, shadow=True),
            {"kitchen": "tiny.en", "attic": "tiny.en"},
            [None, "champion"],
        ),
    ],
)
async def test_an_ab_test_decides_the_finals_model_and_its_variant(
    tmp_path: Path, experiment: Experiment, models: dict[str, str], variants: list[str | None]
) -> None:
    """The attic topic pins its model: outside the test (variant null)."""
    config = NodeConfig.model_validate(
        {
            "model": {"extra": {"big": str(tmp_path / "ggml-big.bin")}},
            "ingest": {"device_topics": {"attic": "attic"}},
            "registry": {"topics": {"attic": {"model": "tiny.en"}}},
        }
    )
    main, big = ScriptedEngine(), ScriptedEngine(text="turn on the light", name="big")
    async with running(config, main, tmp_path, load_engine=lambda _path: big) as rig:
        rig.pool.ab.start(experiment)
        for device in ("kitchen", "attic"):
            await rig.stream(device, "s1", COMMAND, end=True)
            await asyncio.gather(*rig.tasks)
        await asyncio.gather(*rig.tasks)  # the shadow decodes
    finals = {f.device: f for f in rig.finals()}
    assert {d: f.model for d, f in finals.items()} == {
        "kitchen": models["kitchen"],
        "attic": "tiny.en",
    }
    assert sorted([f.variant for f in finals.values()], key=str) == sorted(variants, key=str)
    report = rig.pool.ab.report()
    assert report is not None
    assert sum(v["finals"] for v in report["variants"].values()) == 1  # the kitchen's only
    if experiment.shadow:
        shadow = report["shadow_figures"]
        assert shadow["compared"] == 1 and shadow["agreement"] == 0.0  # "light" vs "lights"
        assert [j.model for j in big.jobs if j.final] == ["big"]  # the candidate's decode


async def test_a_topics_own_silence_lets_dictation_pause(tmp_path: Path) -> None:
    """A pause of about a second ends a command (0.7 s), not a dictation (topic: 1.5 s)."""
    config = NodeConfig.model_validate(
        {
            "ingest": {"device_topics": {"writer": "dictation"}},
            "registry": {"topics": {"dictation": {"silence_ms": 1500}}},
        }
    )
    speech = np.concatenate([COMMAND, silence(0.5), COMMAND])  # COMMAND has its own silences
    async with running(config, ScriptedEngine(), tmp_path) as rig:
        for device in ("writer", "kitchen"):
            await rig.stream(device, "s1", speech, end=True)
            await asyncio.gather(*rig.tasks)
    finals = {f.device: f for f in rig.finals()}
    assert finals["writer"].endpoint == "end"
    assert finals["writer"].audio_s == pytest.approx(speech.size / SAMPLE_RATE, abs=0.05)
    assert finals["kitchen"].endpoint == "silence"  # ended in the pause
    assert {e.code for e in rig.errors() if e.device == "kitchen"} == {"late_audio"}
    assert not [e for e in rig.errors() if e.device == "writer"]
