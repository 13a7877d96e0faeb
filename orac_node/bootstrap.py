"""Set up a machine for orac-node, then run a Justfile recipe.

Usage: ``python3 -m orac_node.bootstrap demo`` (or ``test``, ``lint``, ...).

This is the README's quick start: it needs nothing but Python 3.11+ and runs
before any dependency exists, so it uses the standard library only. It

1. installs the system programs the node and its tests run (``mosquitto``,
   ``mosquitto_sub``, ``ffmpeg``, ...) with apt when they are missing, through sudo
   when not root, and for ``test`` also Chromium, which the web console's browser
   tests drive;
2. creates ``.venv`` beside ``pyproject.toml`` and installs the package with its
   dev extras, again whenever ``pyproject.toml`` changes;
3. replaces the whisper.cpp binding with the project's patched build
   (``orac_node/whisperbuild.py``; compiled once, then cached);
4. runs ``just <recipe> [args...]`` from the venv (``just`` comes from PyPI's
   ``rust-just``), so the recipes in the Justfile are the single definition of
   demo, test and lint.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".orac-node-installed"
# program -> Debian package; /usr/sbin is searched too (mosquitto lives there).
SYSTEM_PROGRAMS = {
    "mosquitto": "mosquitto",
    "mosquitto_sub": "mosquitto-clients",  # what people watch transcripts with
    "ffmpeg": "ffmpeg",
    "redis-server": "redis-server",  # the tests of the shared response cache start their own
    "espeak-ng": "espeak-ng",  # speaks the short replies the non-speech gate must let through
    "g++": "g++",  # compiles whisper.cpp with the project's patches (orac_node/whisperbuild.py)
}
# For the tests only: the web console's browser tests drive Debian's Chromium
# (tests/integration/test_console.py), with a font to draw the page's text in.
TEST_PACKAGES = {"chromium": ["chromium", "fonts-liberation"]}


def _say(message: str) -> None:
    print(f"[bootstrap] {message}", file=sys.stderr, flush=True)


def _which(program: str) -> str | None:
    return shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/local/sbin")


def _apt_install(packages: list[str]) -> None:
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            sys.exit(f"please install {' '.join(packages)} (apt-get install), then run me again")
        prefix = ["sudo"]
    if shutil.which("apt-get") is None:
        sys.exit(f"no apt-get here: install {' '.join(packages)} yourself, then run me again")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _say(f"installing {' '.join(packages)} with apt-get")
    subprocess.run([*prefix, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        [*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        check=True,
        env=env,
    )


def ensure_system_programs() -> None:
    """Install the programs above from apt when they are missing, and Python's headers."""
    missing = [pkg for prog, pkg in SYSTEM_PROGRAMS.items() if _which(prog) is None]
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        # the whisper.cpp binding is a C++ extension: Debian's python3 ships without headers
        missing.append(f"python{sys.version_info.major}.{sys.version_info.minor}-dev")
    if missing:
        _apt_install(missing)


def ensure_test_programs() -> None:
    """Install what only the tests need (a browser) when it is missing."""
    missing = [pkg for prog, pkgs in TEST_PACKAGES.items() if _which(prog) is None for pkg in pkgs]
    if missing:
        _apt_install(missing)


def _venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> None:
    """Create .venv and (re)install the package when pyproject.toml changed."""
    if not _venv_python().exists():
        _say(f"creating {VENV}")
        try:
            venv.create(VENV, with_pip=True, clear=True)
        except (subprocess.CalledProcessError, OSError):
            # Debian's python3 ships venv without ensurepip until python3-venv is in.
            version = f"python{sys.version_info.major}.{sys.version_info.minor}-venv"
            _apt_install([version])
            venv.create(VENV, with_pip=True, clear=True)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        return
    _say("installing orac-node and its dependencies into .venv")
    subprocess.run(
        [
            str(_venv_python()),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            "-e",
            f"{ROOT}[dev]",
        ],
        check=True,
    )
    STAMP.write_text(digest)


def ensure_patched_binding() -> None:
    """Replace the PyPI whisper.cpp binding with the patched build (whisperbuild.py).

    Checked on every run (a fraction of a second); built once, then installed
    from the wheel cache.
    """
    done = subprocess.run([str(_venv_python()), "-m", "orac_node.whisperbuild"], check=False)
    if done.returncode != 0:
        sys.exit("could not build the patched whisper.cpp binding (see above)")


def main(argv: list[str]) -> None:
    """Prepare the machine, then hand over to ``just``."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs before the venv exists
        sys.exit("orac-node needs Python 3.11 or newer")
    ensure_system_programs()
    ensure_venv()
    ensure_patched_binding()
    just = VENV / "bin" / "just"
    args = argv or ["demo"]
    if args[0] == "test":
        ensure_test_programs()
    os.chdir(ROOT)
    path = f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    env = dict(os.environ, PATH=path)
    os.execve(just, [str(just), *args], env)  # noqa: S606 - becoming `just` is the point


if __name__ == "__main__":
    main(sys.argv[1:])
