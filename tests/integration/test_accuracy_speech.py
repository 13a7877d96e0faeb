"""Read speech streamed through the node matches offline decoding (see test_accuracy.py)."""

from __future__ import annotations

from tests.integration.harness import RunningNode
from tests.integration.streaming_vs_offline import ALLOWED_EXTRA_WER, compare

NODE_CONFIG: dict[str, object] = {"endpoint": {"silence_ms": 1500}}


async def test_speech_streamed_match_offline(node: RunningNode, device: str) -> None:
    result = await compare(node, device, "speech", NODE_CONFIG, realtime=False)
    print(result.report("speech"))
    assert result.streaming_wer <= result.offline_wer + ALLOWED_EXTRA_WER
    assert result.streaming_wer < 0.15  # sanity: tiny.en on these clips measures ~7 %
