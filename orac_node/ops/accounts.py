"""Satellite accounts on the broker: one Mosquitto user per satellite.

The broker's ACL (``mosquitto/acl``) lets every user publish only on
``audio/<its user name>/#`` and read only ``orac/device/<its user name>/error``,
so a satellite's user name *is* its device name, and a stolen satellite
password speaks for that one satellite only. This module adds, removes and
lists those users in Mosquitto's password file. Hashing is left to the real
``mosquitto_passwd`` (the broker must read what it writes); the password is
passed on its stdin, not its command line, where any local user could read it
in ``ps``. Mosquitto reads the file again on SIGHUP (``systemctl reload
mosquitto``); until then a change has no effect.
"""

from __future__ import annotations

import contextlib
import grp
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from orac_node.errors import AccountError
from orac_node.wire import is_valid_name

DEFAULT_PASSWORD_FILE = Path("/etc/mosquitto/orac-node.passwd")
"""Where ``mosquitto/orac-node.conf`` points ``password_file``."""

SERVICE_USERS = frozenset({"orac-node", "orac-core", "homeassistant"})
"""Users with their own ACL blocks; a satellite by one of these names would get
their rights (or overwrite their password), so the command refuses them."""

PASSWORD_BYTES = 24
"""Random bytes in a generated password: 192 bits, 32 URL-safe characters, so it
can also be written into an ``mqtts://user:password@host`` URL unescaped."""

MIN_PASSWORD_CHARS = 12
"""Shortest password accepted from a person. Mosquitto 2.0 hashes with only 101
rounds of PBKDF2-SHA512, so a short password falls quickly to a leaked file."""

_PASSWD_TIMEOUT_S = 30.0


def check_satellite_name(name: str) -> str:
    """``name`` if it can be a satellite's user name, else :class:`AccountError`.

    It becomes a topic level through the ACL's ``%u``, so it must be a valid
    device name of the wire contract: no ``/ + #``, spaces, NUL or ``:`` (the
    password file's separator).
    """
    if not is_valid_name(name):
        raise AccountError(
            f"satellite name {name!r} must be 1-64 characters of A-Z a-z 0-9 _ . -"
            " starting with a letter or digit (it is the device's topic level)"
        )
    if name in SERVICE_USERS:
        raise AccountError(f"{name!r} is a service account, not a satellite")
    return name


def generate_password() -> str:
    """A new random password from the OS's CSPRNG."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def list_users(password_file: Path) -> list[str]:
    """User names in a Mosquitto password file, in file order."""
    try:
        lines = password_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise AccountError(f"cannot read {password_file}: {exc.strerror}") from exc
    return [line.split(":", 1)[0] for line in lines if ":" in line and not line.startswith("#")]


def list_satellites(password_file: Path) -> list[str]:
    """The satellite accounts (every user but the service accounts)."""
    return [user for user in list_users(password_file) if user not in SERVICE_USERS]


def add_satellite(
    name: str,
    password_file: Path = DEFAULT_PASSWORD_FILE,
    *,
    password: str | None = None,
    replace: bool = False,
) -> str:
    """Add satellite ``name`` and return its password (generated when not given).

    An existing account is only given a new password with ``replace``, so a
    typo cannot silently lock out a working satellite.
    """
    check_satellite_name(name)
    if name in list_users(password_file) and not replace:
        raise AccountError(f"satellite {name!r} exists; --replace gives it a new password")
    if password is None:
        password = generate_password()
    elif len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    set_password(password_file, name, password)
    return password


def remove_satellite(name: str, password_file: Path = DEFAULT_PASSWORD_FILE) -> None:
    """Delete satellite ``name`` from the password file."""
    check_satellite_name(name)
    if name not in list_users(password_file):
        raise AccountError(f"no satellite {name!r} in {password_file}")
    _mosquitto_passwd(["-D", str(password_file), name])


def set_password(password_file: Path, user: str, password: str) -> None:
    """Add ``user`` or change its password, creating the file when missing.

    No checks on the name: also used for the service accounts.
    """
    if not password or any(c in password for c in "\r\n\0"):
        raise AccountError("a password must be one non-empty line")
    created = not password_file.exists()
    args = ["-c"] if created else []  # -c truncates an existing file: only when there is none
    # mosquitto_passwd asks twice ("Password:", "Reenter password:") and reads stdin.
    _mosquitto_passwd([*args, str(password_file), user], stdin=f"{password}\n{password}\n")
    if created:
        _restrict(password_file)


def _restrict(password_file: Path) -> None:
    """Mode 0640, group mosquitto: hashes hidden from other local users.

    The broker re-reads the file on reload after dropping root, as user
    mosquitto, so the group must be able to read it. Best effort: without the
    group (no broker installed) or the right to chown, the file keeps
    mosquitto_passwd's mode.
    """
    try:
        gid = grp.getgrnam("mosquitto").gr_gid
    except KeyError:
        return
    with contextlib.suppress(PermissionError):
        os.chown(password_file, -1, gid)
        password_file.chmod(0o640)


def find_mosquitto_passwd() -> str:
    """Path of ``mosquitto_passwd`` (Debian: package mosquitto, /usr/bin)."""
    found = shutil.which("mosquitto_passwd") or shutil.which(
        "mosquitto_passwd", path="/usr/bin:/usr/sbin:/usr/local/bin"
    )
    if found is None:
        raise AccountError("mosquitto_passwd is not installed (apt-get install mosquitto)")
    return found


def _mosquitto_passwd(args: list[str], stdin: str = "") -> None:
    try:
        done = subprocess.run(
            [find_mosquitto_passwd(), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_PASSWD_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AccountError(f"mosquitto_passwd failed: {exc}") from exc
    # It reports some failures ("User not found") with exit status 0 or 1 and
    # a message on stderr; its prompts go to stdout.
    problem = done.stderr.strip()
    if done.returncode != 0 or problem.startswith(("Error", "Warning")):
        raise AccountError(f"mosquitto_passwd: {problem or f'exit status {done.returncode}'}")
