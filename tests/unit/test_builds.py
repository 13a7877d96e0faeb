"""compare-builds: real worker processes decode the same clips; the figures add up."""

from __future__ import annotations

import sys

from orac_node.bench.builds import compare_builds, format_builds
from orac_node.bench.corpus import load_corpus
from orac_node.config import load_config
from tests.conftest import AUDIO, MODEL


def test_two_workers_of_the_same_build_agree_on_every_clip() -> None:
    clips = load_corpus([AUDIO / "commands"])[:3]
    config = load_config(None, {})
    results = compare_builds([sys.executable, sys.executable], clips, MODEL, config)
    assert [len(r.decode_ms) for r in results] == [3, 3]
    assert all(ms > 0 for r in results for ms in r.decode_ms)
    assert results[0].texts == results[1].texts  # same library, same clips, same text
    assert all(results[0].texts)
    assert "AVX" in results[0].system_info
    summaries = [r.summary(clips, results[0]) for r in results]
    assert summaries[0]["ratio"] == 1.0
    assert summaries[1]["ratio"] == round(sum(results[1].decode_ms) / sum(results[0].decode_ms), 3)
    assert 0 <= summaries[0]["wer"] < 0.5
    table = format_builds(summaries)
    assert table.count(sys.executable[-20:]) >= 2
