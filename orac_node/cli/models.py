"""``orac-node models``: the store (list, import, validate), promote / rollback, A/B tests.

The store is the node's model directory (``model.cache_dir``, models/store.py);
promote and rollback go through the broker (ops/modelselect.py), so every node
follows. Exit codes: 0 done, 1 the store or the nodes are not in the state
asked for, 2 invalid input or an unreachable broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt

from orac_node.bench.validate import validate
from orac_node.cli.common import Subparsers, broker_options, config_from, login, model_path
from orac_node.client import Client, connect
from orac_node.errors import OracNodeError
from orac_node.models.store import ModelRecord, ModelStore
from orac_node.ops import modelselect
from orac_node.ops.topics import Outcome

DEFAULT_REFERENCE = ("commands", "speech", "orders")
"""The shared audio folders a model is validated on when none are named."""


def cmd_models(args: argparse.Namespace) -> int:
    """One ``models`` action; errors are one line on stderr."""
    try:
        return int(ACTIONS[args.action](args))
    except OracNodeError as exc:
        print(f"orac-node models {args.action}: {exc}", file=sys.stderr)
        return 2


def _store(args: argparse.Namespace) -> ModelStore:
    return ModelStore(config_from(args).model.cache_dir)


def _list(args: argparse.Namespace) -> int:
    records = _store(args).records()
    if args.json:
        print(json.dumps({"models": [r.to_json() for r in records]}))
        return 0
    if not records:
        print(f"no models in {_store(args).root} (orac-node models import FILE|DIR)")
        return 0
    print(f"{'name':<22}{'kind':<8}{'langs':<7}{'quant':<7}{'MB':>7}  {'added':<11}validated")
    for r in records:
        added = time.strftime("%Y-%m-%d", time.localtime(r.added))
        langs = "multi" if r.multilingual else "en"
        print(
            f"{r.name:<22}{r.kind:<8}{langs:<7}{r.quantization:<7}{r.size / 1e6:7.1f}  "
            f"{added:<11}{_validation_summary(r)}"
        )
        print(f"{'':<22}sha256 {r.sha256}")
    return 0


def _import(args: argparse.Namespace) -> int:
    store = _store(args)
    source: Path = args.source.expanduser()
    if source.is_dir():
        if (source / "model.safetensors").is_file() or any(source.glob("*.safetensors")):
            raise OracNodeError(
                f"{source} is a Hugging Face transformers checkpoint: not supported yet (no"
                " such checkpoint could be obtained to test a converter against); convert it"
                " with whisper.cpp's convert-h5-to-ggml.py, or import its CTranslate2 form"
            )
        record = store.add_ct2(
            source, args.name, replace=args.replace, progress=_progress("converting")
        )
    elif source.is_file():
        record = store.add_ggml(source, args.name, replace=args.replace)
    else:
        raise OracNodeError(f"{source}: no such file or directory")
    _stored("imported", record)
    return 0


def _stored(done: str, record: ModelRecord) -> None:
    """What a model added to the store is, and what to do next."""
    print(
        f"{done} {record.name}: {record.kind}, {record.quantization},"
        f" {'multilingual' if record.multilingual else 'English-only'},"
        f" {record.size / 1e6:.1f} MB, sha256 {record.sha256[:12]}…"
    )
    print(f"next: orac-node models validate {record.name}")


def _quantize(args: argparse.Namespace) -> int:
    record = _store(args).add_quantized(
        args.name, args.to, replace=args.replace, progress=_progress("quantizing")
    )
    _stored("stored", record)
    return 0


def _validate(args: argparse.Namespace) -> int:
    config = config_from(args)
    store = ModelStore(config.model.cache_dir)
    record = store.get(args.name)
    shared = args.shared.expanduser()
    reference = args.reference or [shared / name for name in DEFAULT_REFERENCE]
    threads = config.model.resolved_threads()
    figures = validate(Path(record.file), reference, threads=threads, beam=args.beam)
    record = store.set_validation(record.name, figures)
    rows = [(record.name, figures)]
    if not args.alone:
        current = model_path(config)
        rows.append(
            (
                f"{current.stem.removeprefix('ggml-')} (current)",
                validate(current, reference, threads=threads, beam=args.beam),
            )
        )
    if args.json:
        print(json.dumps(dict(rows)))
    else:
        print(_comparison(rows))
    return 0


def _promote(args: argparse.Namespace) -> int:
    store = _store(args)
    record = store.get(args.name)  # only a model this store holds, and checked
    if not record.validation and not args.force:
        raise OracNodeError(
            f"{args.name} has not been validated: orac-node models validate {args.name}"
            " (or --force)"
        )
    finals = None if args.partials_only else args.name
    partials = args.name if args.partials or args.partials_only else None
    return _on_broker(
        args,
        lambda c: modelselect.promote(c, finals=finals, partials=partials, timeout_s=args.timeout),
    )


def _rollback(args: argparse.Namespace) -> int:
    return _on_broker(args, lambda c: modelselect.rollback(c, timeout_s=args.timeout))


def _on_broker(
    args: argparse.Namespace, operation: Callable[[aiomqtt.Client], Awaitable[Outcome]]
) -> int:
    async def run() -> Outcome:
        async with connect(login(args)) as client:
            return await operation(client)

    outcome = asyncio.run(run())
    print(json.dumps(outcome.data) if args.json else outcome.text)
    return outcome.code


def _ab(args: argparse.Namespace) -> int:
    if args.ab_action == "start":
        store = _store(args)
        if not store.has(args.candidate):
            raise OracNodeError(f"no model {args.candidate!r} in {store.root}: import it first")
        if not 0 < args.share <= 1:
            raise OracNodeError("--share must be above 0 and at most 1")
        return _on_broker(
            args,
            lambda c: modelselect.ab_start(
                c,
                candidate=args.candidate,
                share=args.share,
                shadow=args.shadow,
                timeout_s=args.timeout,
            ),
        )
    if args.ab_action == "stop":
        return _on_broker(args, lambda c: modelselect.ab_stop(c, timeout_s=args.timeout))
    return asyncio.run(_ab_report(args))


async def _ab_report(args: argparse.Namespace) -> int:
    """Every ready node's figures for the running test, side by side."""
    async with connect(login(args)) as mqtt:
        nodes = await modelselect.ready_nodes(mqtt, min(args.timeout, 3.0))
    reports: dict[str, Any] = {}
    async with Client(login(args), timeout=args.timeout) as client:
        for node in nodes:
            reports[node] = (await client.describe(node)).get("experiment")
    if args.json:
        print(json.dumps(reports))
        return 0
    running = {n: r for n, r in reports.items() if r is not None}
    if not running:
        print(f"no A/B test runs on {len(nodes)} ready node(s)")
        return 1
    print(_ab_table(running))
    return 0


def _ab_table(reports: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"{'node':<18}{'variant':<11}{'finals':>7}{'rejected':>9}{'conf p50':>9}"
        f"{'latency p50':>12}{'decode p50':>11}{'retry agrees':>13}"
    ]
    for node, report in reports.items():
        for variant, v in report["variants"].items():
            lines.append(
                f"{node:<18}{variant:<11}{v['finals']:>7}{_pct(v['rejected_share']):>9}"
                f"{_num(v['confidence_p50'], '.2f'):>9}"
                f"{_num(v['latency_ms_p50'], '.0f', ' ms'):>12}"
                f"{_num(v['decode_ms_p50'], '.0f', ' ms'):>11}"
                f"{_pct(v['retranscribe_agreement']):>8} of {v['retranscribed']}"
            )
        shadow = report.get("shadow_figures")
        if shadow:
            lines.append(
                f"{node:<18}shadow: {report['candidate']} agreed with the published text in"
                f" {_pct(shadow['agreement'])} of {shadow['compared']} finals, rejected"
                f" {_pct(shadow['candidate_rejected_share'])}, confidence p50"
                f" {_num(shadow['candidate_confidence_p50'], '.2f')}, decode p50"
                f" {_num(shadow['candidate_decode_ms_p50'], '.0f', ' ms')}"
            )
    first = next(iter(reports.values()))
    mode = "shadow" if first["shadow"] else f"share {first['share']:.0%}"
    lines.append(f"(candidate {first['candidate']}, {mode}; texts compared as lower-case words)")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _num(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


ACTIONS = {
    "list": _list,
    "import": _import,
    "quantize": _quantize,
    "validate": _validate,
    "promote": _promote,
    "rollback": _rollback,
    "ab": _ab,
}


def _validation_summary(record: ModelRecord) -> str:
    sets = record.validation.get("sets") or {}
    if not sets:
        return "-"
    return ", ".join(_set_figure(name, s) for name, s in sets.items())


def _set_figure(name: str, s: dict[str, Any]) -> str:
    if s.get("wer") is not None:
        return f"{name} WER {s['wer'] * 100:.1f}%"
    if s.get("values") is not None:
        return f"{name} values {s['values'] * 100:.1f}%"
    return f"{name} -"


def _comparison(rows: list[tuple[str, dict[str, Any]]]) -> str:
    sets = list(dict.fromkeys(name for _, f in rows for name in f["sets"]))
    lines = [f"{'model':<26}{'load s':>7}{'MB':>7}" + "".join(f"{s:>24}" for s in sets)]
    for name, f in rows:
        memory = f.get("memory_mb")
        mb = "-" if memory is None else f"{memory:.0f}"
        cells = "".join(_cell(s, f["sets"].get(s, {})) for s in sets)
        lines.append(f"{name:<26}{f['load_s']:>7.2f}{mb:>7}{cells}")
    first, figures = rows[0]
    lines.append(
        f"(beam {figures['beam']}, {figures['threads']} threads; median decode time per clip;"
        f" figures stored with {first})"
    )
    return "\n".join(lines)


def _cell(name: str, figure: dict[str, Any]) -> str:
    ms = figure.get("ms_p50")
    text = _set_figure(name, figure).removeprefix(name + " ")
    return f"{text:>16}" + ("" if ms is None else f"{ms:6.0f}ms")


def _progress(doing: str) -> Any:  # noqa: ANN401 - a callback
    tty = sys.stderr.isatty()
    shown = -1

    def show(done: int, total: int) -> None:
        nonlocal shown
        percent = done * 100 // max(total, 1)
        step = percent if tty else percent // 25 * 25
        if step == shown:
            return
        shown = step
        line = f"{doing} [{'#' * (percent // 4):<25}] {percent:3d}% {done}/{total} tensors"
        print(
            f"\r{line}" if tty else line, end="" if tty and done < total else "\n", file=sys.stderr
        )

    return show


def add_parser(sub: Subparsers) -> None:
    """``models list|import|validate|promote|rollback``."""
    parser = sub.add_parser(
        "models", help="the model store: list, import, validate; promote, rollback on every node"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every model in the store, with its figures")
    imp = actions.add_parser(
        "import", help="add a ggml file or a CTranslate2 (faster-whisper) model directory"
    )
    imp.add_argument("source", type=Path, metavar="FILE|DIR")
    imp.add_argument("--name", help="its name in the store (default: from the file or directory)")
    imp.add_argument("--replace", action="store_true", help="overwrite a model of that name")
    quant = actions.add_parser(
        "quantize", help="store a model's 8-bit (q8_0) copy: smaller, faster on CPU"
    )
    quant.add_argument("name", help="a stored f16 or f32 model")
    quant.add_argument("--to", metavar="NAME", help="the copy's name (default: NAME-q8_0)")
    quant.add_argument("--replace", action="store_true", help="overwrite a model of that name")
    val = actions.add_parser(
        "validate",
        help="check a stored model and measure it on reference audio, beside the current model",
    )
    val.add_argument("name")
    val.add_argument(
        "--reference",
        type=Path,
        action="append",
        metavar="DIR",
        help="folder of clips with refs.tsv or labels.json; repeat (default: the"
        " shared commands, speech and orders)",
    )
    val.add_argument(
        "--shared",
        type=Path,
        default=Path("../shared/audio"),
        help="where the default reference folders are",
    )
    val.add_argument("--beam", type=int, help="beam width (default: decode.beam_size)")
    val.add_argument("--alone", action="store_true", help="do not measure the current model")
    prom = actions.add_parser("promote", help="every node decodes with this stored model")
    prom.add_argument("name")
    tier = prom.add_mutually_exclusive_group()
    tier.add_argument("--partials", action="store_true", help="for partials too")
    tier.add_argument("--partials-only", action="store_true", help="for partials only")
    prom.add_argument("--force", action="store_true", help="promote without validation")
    back = actions.add_parser("rollback", help="back to the models before the last promote")
    ab = actions.add_parser("ab", help="A/B test a candidate finals model on every node")
    ab_actions = ab.add_subparsers(dest="ab_action", required=True)
    ab_start = ab_actions.add_parser("start", help="a stable share of devices get the candidate")
    ab_start.add_argument("candidate")
    ab_start.add_argument(
        "--share", type=float, default=0.1, help="share of devices (0-1, default 0.1)"
    )
    ab_start.add_argument(
        "--shadow",
        action="store_true",
        help="publish every final from the champion; the candidate decodes beside it",
    )
    ab_stop = ab_actions.add_parser("stop", help="every device back on the champion")
    ab_report = ab_actions.add_parser("report", help="each node's figures, by variant")
    for p in (listing, imp, quant, val, prom, back, ab_start, ab_stop, ab_report):
        p.add_argument("--config", type=Path, help="YAML config file (its model.cache_dir)")
        p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(func=cmd_models)
    for p in (prom, back, ab_start, ab_stop, ab_report):
        broker_options(p)
        p.add_argument(
            "--timeout",
            type=float,
            default=30.0,
            help="longest wait for every ready node to switch (s)",
        )
