"""Partials while the user speaks: early, and with a committed prefix that never changes."""

from __future__ import annotations

from tests.conftest import AUDIO
from tests.integration.accuracy import word_error_rate
from tests.integration.conftest import load
from tests.integration.harness import RunningNode, harness

# jfk.wav pauses 1.0 s after "Americans"; keep it one utterance (see test_accuracy.py).
NODE_CONFIG: dict[str, object] = {"endpoint": {"silence_ms": 1500}}

JFK = (
    "And so my fellow Americans, ask not what your country can do for you,"
    " ask what you can do for your country."
)


async def test_jfk_in_real_time_gets_growing_partials_then_final(
    node: RunningNode, device: str
) -> None:
    async with harness(node.url) as h:
        result = await h.session(device, load(AUDIO / "speech" / "jfk.wav"), realtime=True)
    final = result.final
    assert final is not None
    # Partials arrive while the audio is still streaming, well before the final.
    during = [t for t in result.partial_times if t < result.audio_done_time]
    assert len(during) >= 8, f"only {len(during)} partials during 11 s of speech"
    assert result.partial_times[0] < result.audio_done_time - 5.0
    assert all(t < result.final_time for t in result.partial_times)
    # The committed prefix only ever grows: each stable extends the previous one.
    previous = ""
    for partial in result.partials:
        assert partial.stable.startswith(previous), (previous, partial.stable)
        assert partial.text == " ".join(p for p in (partial.stable, partial.unstable) if p)
        previous = partial.stable
    assert len(previous.split()) >= 10, "LocalAgreement committed almost nothing"
    assert [p.seq for p in result.partials] == list(range(1, len(result.partials) + 1))
    # Partial lag stays small while the single stream runs.
    assert max(p.lag_ms for p in result.partials) < 2000
    assert word_error_rate([JFK], [final.text]) < 0.1
    assert final.reason == "end" and final.endpoint == "end"
