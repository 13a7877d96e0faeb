"""Finding the ggml model file: a path as given, or a name resolved in a cache.

A name such as ``tiny.en`` resolves to ``<cache_dir>/ggml-tiny.en.bin``. When the
file is missing it is downloaded from the whisper.cpp model hub (the same
naming pywhispercpp and whisper.cpp's own download script use) to a ``.part``
file, checked against the SHA-1 whisper.cpp publishes in its models/README.md,
and only then renamed into place, so a broken download never looks like a
model. Progress goes to stderr.

whisper.cpp does not fail cleanly on a damaged file: pywhispercpp hands back a
context even when loading failed, and the first use of it crashes the process
(a truncated or random file segfaulted in testing). :func:`check_loadable`
therefore loads the model and decodes a second of silence in a child process
first, so a bad file becomes a :class:`ModelError` with a message instead of a
node that dies with SIGSEGV. A file that passed is remembered (by path, size and
modification time) under ``<cache_dir>/verified/``, so only its first start
pays the probe (0.3 s measured for tiny.en).
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from orac_node.errors import ModelError

log = logging.getLogger(__name__)

HUB_URL = "https://huggingface.co/ggerganov/whisper.cpp/resolve/main"

# SHA-1 of each model file as published in whisper.cpp's models/README.md.
KNOWN_MODELS: Mapping[str, str] = {
    "tiny": "bd577a113a864445d4c299885e0cb97d4ba92b5f",
    "tiny.en": "c78c86eb1a8faa21b369bcd33207cc90d64ae9df",
    "base": "465707469ff3a37a2b9b8d8f89f2f99de7299dac",
    "base.en": "137c40403d78fd54d454da0f9bd998f78703390c",
    "small": "55356645c2b361a969dfd0ef2c5a50d530afd8d5",
    "small.en": "db8a495a91d927739e50b3fc1cc4c6b8f6c2d022",
    "medium": "fd9727b6e1217c2f614f9b698455c4ffd82463b4",
    "medium.en": "8c30f0e44ce9560643ebd10bbe50cd20eafd3723",
}
_BLOCK = 1 << 20
_TIMEOUT_S = 30


_PROBE = """
import sys
import numpy as np
from pywhispercpp.model import Model
model = Model(sys.argv[1], redirect_whispercpp_logs_to=None, print_progress=False)
model.transcribe(np.zeros(16000, np.float32), audio_ctx=256)
"""
_PROBE_TIMEOUT_S = 120


def check_loadable(path: Path, *, stamp_dir: Path | None = None) -> None:
    """Raise :class:`ModelError` unless whisper.cpp can load and run ``path``."""
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    stamp = _stamp(path, stamp_dir)
    if stamp is not None and stamp.exists():
        return
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, str(path)],
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ModelError(f"{path}: loading took over {_PROBE_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
        detail = "; ".join(done.stderr.strip().splitlines()[-1:])
        raise ModelError(
            f"{path} is not a whisper.cpp model that loads ({how}{': ' if detail else ''}{detail})"
        )
    if stamp is not None:
        try:
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.write_text(f"{path.resolve()}\n")
        except OSError as exc:  # a read-only cache only costs the probe next time
            log.debug("cannot remember the model check in %s: %s", stamp, exc)


def _stamp(path: Path, stamp_dir: Path | None) -> Path | None:
    if stamp_dir is None:
        return None
    info = path.stat()
    key = f"{path.resolve()}:{info.st_size}:{info.st_mtime_ns}"
    return stamp_dir.expanduser() / "verified" / hashlib.sha1(key.encode()).hexdigest()  # noqa: S324


def resolve_model(
    spec: str | Path,
    *,
    cache_dir: Path,
    hub_url: str = HUB_URL,
    catalog: Mapping[str, str] = KNOWN_MODELS,
) -> Path:
    """Return a local model file for a path or a model name, downloading if needed."""
    path = Path(spec).expanduser()
    if path.is_file():
        check_loadable(path, stamp_dir=cache_dir)
        return path
    name = str(spec)
    if name not in catalog:
        raise ModelError(
            f"{name!r} is neither a model file nor a known model name "
            f"({', '.join(sorted(catalog))})"
        )
    target = cache_dir.expanduser() / f"ggml-{name}.bin"
    if not target.is_file():
        download_model(f"{hub_url.rstrip('/')}/ggml-{name}.bin", target, sha1=catalog[name])
    check_loadable(target, stamp_dir=cache_dir)
    return target


def download_model(url: str, target: Path, *, sha1: str) -> None:
    """Download ``url`` to ``target`` atomically, verifying its SHA-1."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha1()  # noqa: S324 - matching the checksums whisper.cpp publishes
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, part.open("wb") as out:  # noqa: S310
            total = int(response.headers.get("Content-Length") or 0)
            progress = _Progress(target.name, total)
            while block := response.read(_BLOCK):
                out.write(block)
                digest.update(block)
                progress.advance(len(block))
            progress.finish()
            out.flush()
            os.fsync(out.fileno())
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        part.unlink(missing_ok=True)
        raise ModelError(f"cannot download {url}: {exc}") from exc
    if digest.hexdigest() != sha1:
        part.unlink(missing_ok=True)
        raise ModelError(f"{url}: SHA-1 {digest.hexdigest()} does not match expected {sha1}")
    part.replace(target)
    log.info("model saved to %s", target)


class _Progress:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, name: str, total: int) -> None:
        self._name = name
        self._total = total
        self._done = 0
        self._started = time.monotonic()
        self._shown = -1
        self._tty = sys.stderr.isatty()

    def advance(self, n: int) -> None:
        self._done += n
        percent = self._done * 100 // self._total if self._total else 0
        step = percent if self._tty else percent // 10 * 10
        if step != self._shown:
            self._shown = step
            self._render(percent)

    def _render(self, percent: int) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = self._done / elapsed / 1e6
        bar = "#" * (percent // 4)
        line = f"{self._name} [{bar:<25}] {percent:3d}% {self._done / 1e6:6.1f} MB {rate:5.1f} MB/s"
        print(f"\r{line}" if self._tty else line, end="" if self._tty else "\n", file=sys.stderr)

    def finish(self) -> None:
        if self._tty:
            print(file=sys.stderr)
