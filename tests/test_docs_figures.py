"""The benchmark figures in README.md and docs/BENCHMARKS.md are the committed run's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from orac_node.bench.figures import DOCUMENTS, RESULTS, render, stale
from tests.conftest import ROOT


def test_every_quoted_figure_is_the_committed_runs() -> None:
    assert stale(ROOT, write=False) == [], "run `orac-node figures` after `orac-node bench`"


def test_each_document_quotes_the_run() -> None:
    report = json.loads((ROOT / RESULTS).read_text(encoding="utf-8"))
    for document in DOCUMENTS:
        text = (ROOT / document).read_text(encoding="utf-8")
        assert report["date"] in text, f"{document} has no figures block of the run"


def test_a_changed_figure_is_caught_and_rewritten(tmp_path: Path) -> None:
    for path in (RESULTS, *DOCUMENTS):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, tmp_path / path)
    readme = tmp_path / "README.md"
    readme.write_text(
        readme.read_text(encoding="utf-8").replace("| end of audio → final, median |", "| x |"),
        encoding="utf-8",
    )
    assert stale(tmp_path, write=True) == [Path("README.md")]
    assert stale(tmp_path, write=False) == []
    assert readme.read_text(encoding="utf-8") == (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_headline_shows_the_peer_beside_the_node() -> None:
    report = json.loads((ROOT / RESULTS).read_text(encoding="utf-8"))
    block = render(report, "<!-- bench:headline -->\n<!-- /bench:headline -->")
    assert report["peer"]["server"].split(" (model:")[0] in block
    wer = f"{report['peer']['wer']:.1%}"
    assert wer in block, "the peer's WER is quoted, better or not"
