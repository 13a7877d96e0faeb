"""The figures the README and docs/BENCHMARKS.md quote, written from one bench run.

Figures typed into prose drift from the runs they came from (the README once
said 42 ms where the benchmarks said 2 ms). Instead, the results JSON of the
documented run is committed (docs/bench/latest.json) and every quoted table is
rendered from it between markers::

    <!-- bench:headline -->  ...  <!-- /bench:headline -->

``orac-node figures`` rewrites the blocks after a new run; ``--check`` (and a
test) fails when a block differs from what the committed results say.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from orac_node.bench.accuracy import SetScore, format_accuracy, from_json
from orac_node.bench.wyoming_peer import display_name

RESULTS = Path("docs/bench/latest.json")
"""The committed results of the run the docs quote, relative to the repository."""
DOCUMENTS = (Path("README.md"), Path("docs/BENCHMARKS.md"))


NONE = "-"
"""What a table shows where nothing was measured."""


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _pct(value: float | None) -> str:
    return NONE if value is None or _missing(value) else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return NONE if value is None or _missing(value) else f"{value:,.0f} ms"


def _provenance(report: dict[str, Any]) -> str:
    when = report.get("date", "undated")
    return (
        f"Run of {when} on {report['machine']['platform']} (Python"
        f" {report['machine']['python']}): `{report['command']}`; results in"
        f" [docs/bench/latest.json](docs/bench/latest.json)."
    )


def headline(report: dict[str, Any]) -> str:
    """The node against the peer Home Assistant users run, on the same clips and machine."""
    single = report["scenarios"]["single"]
    peer = report.get("peer") or {}
    server = display_name(peer.get("server"))
    peer_name = f"{server} over Wyoming" if server else "no peer in this run"
    folders = ", ".join(f"{Path(folder).name}/" for folder in report["settings"]["audio"])
    clips = f"{single['utterances']} clips of {folders}"
    rows = [
        f"| {clips} | orac-node | {peer_name} |",
        "|---|---|---|",
        f"| WER, streamed in real time | {_pct(single['wer'])} | {_pct(peer.get('wer'))} |",
        f"| end of audio → final, median | {_ms(single['latency_ms']['p50'])}"
        f" | {_ms(peer.get('latency_ms_p50'))} |",
        f"| end of audio → final, p95 | {_ms(single['latency_ms']['p95'])}"
        f" | {_ms(peer.get('latency_ms_p95'))} |",
    ]
    speech = single.get("speech_latency_ms")
    if speech:
        rows.append(
            f"| end of speech → final, median | {_ms(speech['p50'])}"
            f" | {_ms(peer.get('speech_latency_ms_p50'))} |"
        )
    four = report["scenarios"].get("concurrent-4")
    if four is not None:
        rows.append(
            f"| the same, 4 satellites at once, p95 | {_ms(four['latency_ms']['p95'])} | {NONE} |"
        )
    at_once = report["scenarios"].get("at-once")
    if at_once is not None:
        theirs = report.get("peer_at_once") or {}
        rows.append(
            f"| sent at once: end of audio → final, median | {_ms(at_once['latency_ms']['p50'])}"
            f" | {_ms(theirs.get('latency_ms_p50'))} |"
        )
    rows.extend(_accuracy_rows(report))
    return "\n".join([*rows, "", _provenance(report)])


def _accuracy_rows(report: dict[str, Any]) -> list[str]:
    """Per set, the node's finals streamed in real time against the peer's."""
    rows = from_json(report.get("accuracy") or [])
    ours = next((r for r in rows if r.source == "node" and r.sent == "streamed in real time"), None)
    if ours is None:
        return []
    theirs = next((r for r in rows if r.source == "peer" and r.sent == ours.sent), None)
    lines = []
    for name, mine in sorted(ours.sets.items()):
        other: SetScore | None = theirs.sets.get(name) if theirs else None
        if mine.wer is not None:
            lines.append(
                f"| {name}/ ({mine.clips}): WER, streamed | {_pct(mine.wer)}"
                f" | {_pct(other.wer if other else None)} |"
            )
        if mine.values is not None:
            lines.append(
                f"| {name}/ ({mine.clips}): spoken values found, streamed | {_pct(mine.values)}"
                f" | {_pct(other.values if other else None)} |"
            )
    return lines


def accuracy(report: dict[str, Any]) -> str:
    """Every decoder of the run's ``accuracy`` scenario on every set."""
    rows = from_json(report.get("accuracy") or [])
    if not rows:
        return f"No accuracy scenario in this run.\n\n{_provenance(report)}"
    return "\n".join([format_accuracy(rows), "", _provenance(report)])


def results(report: dict[str, Any]) -> str:
    """Every scenario of the run, its baselines, and the targets met or missed."""
    lines = [
        "| scenario | utterances | final p50 | p95 | p99 | partial lag p95 | WER | node CPU"
        " | RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in report["scenarios"].items():
        lag = s["partial_lag_s"]["p95"]
        lag_text = NONE if _missing(lag) else f"{lag:.2f} s"
        lines.append(
            f"| {name} | {s['utterances']} | {_ms(s['latency_ms']['p50'])}"
            f" | {_ms(s['latency_ms']['p95'])} | {_ms(s['latency_ms']['p99'])} | {lag_text}"
            f" | {_pct(s['wer'])} | {s['cpu_percent']:.0f} % | {s['rss_max_mb']:.0f} MB |"
        )
    baselines = report.get("baselines") or {}
    if baselines:
        lines += [
            "",
            "Direct pywhispercpp decodes of the same clips in the same run: default"
            f" parameters p50 {_ms(baselines['default_ms_p50'])} (WER"
            f" {_pct(baselines['default_wer'])}), the node's parameters p50"
            f" {_ms(baselines['node_params_ms_p50'])} (WER {_pct(baselines['node_params_wer'])}).",
        ]
    startup = report["startup"]
    lines += [
        "",
        f"Start-up: `ready` {startup['time_to_ready_s']:.2f} s after the process started;"
        f" loading and warming the model alone {startup['model_load_s']:.2f} s.",
        "",
        "| id | target | measured | |",
        "|---|---|---|---|",
    ]
    for t in report["targets"]:
        verdict = {True: "met", False: "**missed**", None: NONE}[t["ok"]]
        lines.append(f"| {t['id']} | {t['description']} | {t['measured']} | {verdict} |")
    return "\n".join([*lines, "", _provenance(report)])


BLOCKS = {"headline": headline, "results": results, "accuracy": accuracy}


def render(report: dict[str, Any], text: str) -> str:
    """``text`` with every ``bench:<block>`` rendered from ``report``."""
    for name, make in BLOCKS.items():
        begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
        pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), flags=re.DOTALL)
        block = f"{begin}\n{make(report)}\n{end}"
        text = pattern.sub(lambda _match: block, text)  # noqa: B023 - used at once
    return text


def stale(root: Path, *, write: bool) -> list[Path]:
    """Documents whose blocks differ from the committed results (rewritten with ``write``)."""
    report = json.loads((root / RESULTS).read_text(encoding="utf-8"))
    differ = []
    for document in DOCUMENTS:
        path = root / document
        text = path.read_text(encoding="utf-8")
        fresh = render(report, text)
        if fresh != text:
            differ.append(document)
            if write:
                path.write_text(fresh, encoding="utf-8")
    return differ
