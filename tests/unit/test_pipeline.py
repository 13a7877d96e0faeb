"""The pipeline's decisions, on a real pipeline with a scripted engine (pipeline_rig.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from orac_node.audio import load_audio_file
from orac_node.config import NodeConfig
from orac_node.wire import SAMPLE_RATE
from tests.conftest import AUDIO
from tests.unit.pipeline_rig import ScriptedEngine, running, silence

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
        # the user goes on speaking: the guess is stale
        seq = await rig.stream("kitchen", "s1", NEXT[: NEXT.size // 2], first_seq=seq, pace_s=0.001)
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
        assert not final.speculative  # decoded again after the end: the guess was stale
        assert np.isfinite(final.latency_ms)
