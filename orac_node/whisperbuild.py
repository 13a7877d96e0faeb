"""pywhispercpp built from its sdist with the project's whisper.cpp patches.

Usage: ``python -m orac_node.whisperbuild [--force] [--cmake NAME=VALUE ...]``
(the quick start's setup runs it after installing the package).

Why a patched build: whisper.cpp 1.8 (pywhispercpp 1.5.1) draws beam search's
candidates and temperature-fallback samples from a random generator per
decoder. ``whisper_full`` reseeds decoders 1..n at every call but decoder 0
only when the model is loaded, so the same audio gave different text
depending on what the model had decoded before: decoding a jfk.wav between two
decodes of each command changed 11 of the 20 shared commands at beam 5. With
decoder 0 reseeded at every call as well, 0 of 20 changed (and 0 of the 31
commands and read-speech clips decoded greedily differ from the PyPI wheel).
docs/DECODING.md has the measurement.

And whisper.cpp asks a decode's abort callback only between the encoder's
graphs, so the scheduler could not stop a partial for a final: the final
waited up to a whole encoder pass (~170 ms for tiny.en on 2 cores). The build
hands the callback to ggml, which asks it between graph nodes (throttled to
every 10 ms): an aborted decode now returns within ~10 ms.

Each patch replaces one exact passage of whisper.cpp's source and fails
loudly when the passage is not there (a new pywhispercpp release). A marker in
``whisper_print_system_info()`` lets the node tell a patched build from any
other (:func:`is_patched`).

The standard library only: it runs in the venv before anything else is
checked, and on a Jetson next to a CUDA toolkit (``--cmake GGML_CUDA=1``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "pywhispercpp"
VERSION = "1.5.1"
SDIST_URL = (
    "https://files.pythonhosted.org/packages/9f/35/"
    "610787a277e177e6b7983277a35a2969c0876b46c0d889bc6a0c4b4ac4a7/pywhispercpp-1.5.1.tar.gz"
)
SDIST_SHA256 = "5df897e5dd9d9f16804fc937bd85b9f5880a0b29a55f8843585e0e03d76195e5"
MARKER = "ORAC_PATCHES = 2"
"""What a patched build adds to ``whisper_print_system_info()``: the version of the patch
set, raised with every change to PATCHES so that an older build is replaced."""
ABORT_EVERY_US = 10_000
"""How often, at most, a running graph asks the caller whether to stop. pywhispercpp's
callback takes the GIL, which the node's event loop holds most of the time; asking at
every one of the encoder's graph nodes would make each decode wait on the loop."""
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "orac-node" / "whisper"
"""Downloaded sdists and built wheels, so a new venv does not compile again."""
X86_CMAKE = {
    "GGML_NATIVE": "OFF",
    "GGML_AVX": "ON",
    "GGML_AVX2": "ON",
    "GGML_FMA": "ON",
    "GGML_F16C": "ON",
    "GGML_BMI2": "ON",
}
"""On x86-64: the instruction sets of the PyPI wheel, so the build decodes exactly as
the wheel does. GGML_NATIVE (AVX-512 here) was 11-18 % slower on this Zen 4 box
(docs/GPU.md); pass ``--cmake GGML_NATIVE=ON`` to choose it. On ARM (a Jetson, a
Pi) whisper.cpp's own defaults build for the machine it runs on."""
RPATH = "-DCMAKE_INSTALL_RPATH=$ORIGIN -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON"
"""Without it the extension looks for libwhisper in pip's deleted build folder."""
_TIMEOUT_S = 60


class BuildError(Exception):
    """The patched binding could not be fetched, patched, built or installed."""


@dataclass(frozen=True)
class Patch:
    """One exact passage of the sdist replaced, and why."""

    path: str
    old: str
    new: str
    why: str


PATCHES = (
    Patch(
        "whisper.cpp/src/whisper.cpp",
        "    // TAGS: WHISPER_DECODER_INIT\n    for (int j = 1; j < n_decoders; j++) {\n",
        "    // TAGS: WHISPER_DECODER_INIT\n"
        "    state->decoders[0].rng = std::mt19937(0); // orac-node: as 1..n below\n"
        "    for (int j = 1; j < n_decoders; j++) {\n",
        "decoder 0's sampler is reseeded at every call, like the others: the same audio"
        " gives the same beam-search and fallback text whatever was decoded before",
    ),
    Patch(
        "whisper.cpp/src/whisper.cpp",
        '    s += "OPENVINO = "  + std::to_string(whisper_has_openvino())   + " | ";\n',
        '    s += "OPENVINO = "  + std::to_string(whisper_has_openvino())   + " | ";\n'
        f'    s += "{MARKER} | ";\n',
        "the node can tell a patched build from another one",
    ),
    Patch(
        "whisper.cpp/src/whisper.cpp",
        "static bool whisper_encode_internal(\n",
        "// orac-node: whisper.cpp asks its abort callback only between the encoder's graphs,\n"
        "// so a decode could not be stopped for the ~170 ms of a tiny.en encoder pass. Hand\n"
        "// the callback to the backends as well (ggml asks it between graph nodes), at most\n"
        f"// every {ABORT_EVERY_US} us, since the caller's callback may have to take a lock.\n"
        "struct orac_abort_slot {\n"
        "    ggml_abort_callback callback;\n"
        "    void * data;\n"
        "    int64_t last_us;\n"
        "};\n"
        "static bool orac_abort_throttled(void * user_data) {\n"
        "    auto * slot = (orac_abort_slot *) user_data;\n"
        "    const int64_t now_us = ggml_time_us();\n"
        f"    if (now_us - slot->last_us < {ABORT_EVERY_US}) {{\n"
        "        return false;\n"
        "    }\n"
        "    slot->last_us = now_us;\n"
        "    return slot->callback(slot->data);\n"
        "}\n"
        "static void orac_set_abort_callback(\n"
        "        whisper_state & wstate, ggml_abort_callback callback, void * data) {\n"
        "    static thread_local orac_abort_slot slot;\n"
        "    slot = { callback, data, ggml_time_us() };\n"
        "    for (ggml_backend_t backend : wstate.backends) {\n"
        "        ggml_backend_dev_t dev = ggml_backend_get_device(backend);\n"
        "        ggml_backend_reg_t reg = dev ? ggml_backend_dev_backend_reg(dev) : nullptr;\n"
        "        auto * set_abort = reg ? (ggml_backend_set_abort_callback_t)\n"
        '            ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_abort_callback")'
        " : nullptr;\n"
        "        if (set_abort) {\n"
        "            set_abort(backend, callback ? orac_abort_throttled : nullptr, &slot);\n"
        "        }\n"
        "    }\n"
        "}\n"
        "\n"
        "static bool whisper_encode_internal(\n",
        "a helper that hands the abort callback to the backends, throttled",
    ),
    Patch(
        "whisper.cpp/src/whisper.cpp",
        "    const int64_t t_start_us = ggml_time_us();\n\n    // conv\n",
        "    const int64_t t_start_us = ggml_time_us();\n"
        "    orac_set_abort_callback(wstate, abort_callback, abort_callback_data);\n\n"
        "    // conv\n",
        "the encoder can be stopped between graph nodes (a preempted partial frees its"
        " worker in ~10 ms instead of after the whole encoder pass)",
    ),
    Patch(
        "whisper.cpp/src/whisper.cpp",
        "    const int64_t t_start_us = ggml_time_us();\n\n"
        "    const auto & model   = wctx.model;\n"
        "    const auto & hparams = model.hparams;\n\n"
        "    const int n_vocab  = hparams.n_vocab;\n",
        "    const int64_t t_start_us = ggml_time_us();\n"
        "    orac_set_abort_callback(wstate, abort_callback, abort_callback_data);\n\n"
        "    const auto & model   = wctx.model;\n"
        "    const auto & hparams = model.hparams;\n\n"
        "    const int n_vocab  = hparams.n_vocab;\n",
        "so can the decoder",
    ),
)


def apply_patches(source: Path, patches: tuple[Patch, ...] = PATCHES) -> None:
    """Apply ``patches`` to the unpacked sdist at ``source``; each passage must occur once."""
    for patch in patches:
        path = source / patch.path
        text = path.read_text(encoding="utf-8")
        if text.count(patch.old) != 1:
            raise BuildError(
                f"{patch.path}: the passage to patch occurs {text.count(patch.old)} times,"
                f" not once ({patch.why}); a new {PACKAGE} needs the patch redone"
            )
        path.write_text(text.replace(patch.old, patch.new), encoding="utf-8")


def cmake_settings(extra: dict[str, str], machine: str | None = None) -> dict[str, str]:
    """CMake variables for the build: the wheel's instruction sets on x86-64, then ``extra``."""
    machine = (machine or platform.machine()).lower()
    base = dict(X86_CMAKE) if machine in {"x86_64", "amd64"} else {}
    return base | extra


def build_key(settings: dict[str, str]) -> str:
    """What makes one build differ from another: sdist, patches, settings, interpreter."""
    parts = [
        SDIST_SHA256,
        repr(PATCHES),
        repr(sorted(settings.items())),
        sys.implementation.cache_tag,
        platform.machine(),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def fetch_sdist(url: str, sha256: str, cache: Path) -> Path:
    """The sdist, downloaded once into ``cache`` and checked against ``sha256``."""
    target = cache / url.rsplit("/", 1)[-1]
    if target.is_file() and _sha256(target) == sha256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    part = target.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, part.open("wb") as out:  # noqa: S310 - the pinned https URL or a test's server
            shutil.copyfileobj(response, out)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise BuildError(f"cannot download {url}: {exc}") from exc
    got = _sha256(part)
    if got != sha256:
        part.unlink()
        raise BuildError(f"{url}: sha256 {got}, expected {sha256}")
    part.replace(target)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_wheel(sdist: Path, settings: dict[str, str], out: Path) -> Path:
    """Unpack, patch and build ``sdist`` into a wheel in ``out``."""
    with tempfile.TemporaryDirectory(prefix="orac-whisper-") as tmp:
        with tarfile.open(sdist) as archive:
            if hasattr(tarfile, "data_filter"):  # Python 3.11.4+; the sdist's sha256 is checked
                archive.extractall(tmp, filter="data")
            else:
                archive.extractall(tmp)  # noqa: S202 - a pinned, checksummed archive
        source = next(Path(tmp).iterdir())
        apply_patches(source)
        # pywhispercpp's setup.py hands *every* environment variable to CMake as
        # -DNAME=VALUE: build in a clean environment holding only what it needs.
        keep = ("PATH", "HOME", "TMPDIR", "CUDA_HOME", "CUDACXX", "CC", "CXX")
        env = {name: os.environ[name] for name in keep if name in os.environ}
        env |= settings | {"CMAKE_ARGS": RPATH}
        env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
        wheels = Path(tmp) / "wheels"
        command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-cache-dir", "--no-deps"]
        done = subprocess.run([*command, "-w", str(wheels), str(source)], env=env, check=False)
        if done.returncode != 0:
            raise BuildError(f"building {sdist.name} failed (pip wheel exit {done.returncode})")
        built = next(wheels.glob("*.whl"))
        out.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(built, out / built.name))


def is_patched(python: str = sys.executable) -> bool:
    """Whether the binding ``python`` imports is a build with these patches."""
    probe = "import _pywhispercpp as pw; print(pw.whisper_print_system_info())"
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
    return done.returncode == 0 and MARKER in done.stdout


def ensure(extra: dict[str, str], *, force: bool = False) -> Path | None:
    """Install the patched binding into this interpreter; the wheel used.

    Nothing is done (None) when a patched build is installed already, unless
    ``force`` or ``extra`` CMake settings ask for a particular build.
    """
    if not force and not extra and is_patched():
        return None
    settings = cmake_settings(extra)
    wheel_dir = CACHE / "wheels" / build_key(settings)
    wheel = next(wheel_dir.glob("*.whl"), None)
    if wheel is None:
        print(f"building {PACKAGE} {VERSION} with orac-node's patches (about a minute)", flush=True)
        wheel = build_wheel(fetch_sdist(SDIST_URL, SDIST_SHA256, CACHE), settings, wheel_dir)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall"]
    subprocess.run([*pip, str(wheel)], check=True)
    if not is_patched():
        raise BuildError(f"{wheel} is installed but its binding lacks the marker")
    return wheel


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    """Command line: build and install the patched binding when it is not installed."""
    parser = argparse.ArgumentParser(prog="python -m orac_node.whisperbuild", description=__doc__)
    parser.add_argument("--force", action="store_true", help="rebuild/reinstall even if patched")
    parser.add_argument(
        "--cmake",
        type=_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a CMake variable for whisper.cpp, e.g. GGML_CUDA=1 (repeat)",
    )
    args = parser.parse_args(argv)
    try:
        wheel = ensure(dict(args.cmake), force=args.force)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{PACKAGE}: {'installed ' + str(wheel) if wheel else 'the patched build is installed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
