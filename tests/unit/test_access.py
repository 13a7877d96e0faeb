"""Satellite accounts: name rules, passwords, and the real mosquitto_passwd on a temp file.

That the hashes written here let a satellite into a real broker (after a
reload) is tests/integration/test_access.py's job.
"""

from __future__ import annotations

import grp
import os
import string
from pathlib import Path

import pytest

from orac_node.cli import main
from orac_node.errors import AccountError, OracNodeError
from orac_node.ops import accounts as access
from orac_node.ops.accounts import (
    add_satellite,
    check_satellite_name,
    generate_password,
    list_satellites,
    list_users,
    remove_satellite,
    set_password,
)


@pytest.mark.parametrize("name", ["kitchen", "pi-4.living_room", "a", "Sat1", "x" * 64])
def test_names_that_are_one_topic_level_are_accepted(name: str) -> None:
    assert check_satellite_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a/b",  # would span two topic levels: audio/a/b/# is not audio/<name>/#
        "+",
        "kitchen+",
        "#",
        "kit#chen",
        "living room",
        "nul\0byte",
        "user:colon",  # the password file's separator
        "-leading",
        ".hidden",
        "x" * 65,
        "tab\t",
        "orac-node",  # service accounts: their ACL blocks would apply
        "orac-core",
        "homeassistant",
    ],
)
def test_names_that_cannot_be_a_device_are_refused(name: str) -> None:
    with pytest.raises(AccountError):
        check_satellite_name(name)


def test_account_errors_are_orac_node_errors() -> None:
    assert issubclass(AccountError, OracNodeError)


def test_generated_passwords_are_long_random_and_url_safe() -> None:
    passwords = {generate_password() for _ in range(100)}
    assert len(passwords) == 100
    for password in passwords:
        assert len(password) == 32
        assert set(password) <= set(string.ascii_letters + string.digits + "-_")


def test_add_writes_a_hash_not_the_password(tmp_path: Path) -> None:
    file = tmp_path / "passwd"
    password = add_satellite("kitchen", file)
    text = file.read_text()
    assert text.startswith("kitchen:$7$")  # mosquitto 2's PBKDF2-SHA512 format
    assert password not in text
    assert list_users(file) == ["kitchen"]


def test_a_new_file_is_readable_by_the_broker_group_only(tmp_path: Path) -> None:
    try:
        group = grp.getgrnam("mosquitto").gr_gid
    except KeyError:
        pytest.skip("no mosquitto group on this machine")
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to the mosquitto group")
    file = tmp_path / "passwd"
    add_satellite("kitchen", file)
    assert file.stat().st_mode & 0o777 == 0o640
    assert file.stat().st_gid == group


def test_add_refuses_an_existing_satellite_unless_replacing(tmp_path: Path) -> None:
    file = tmp_path / "passwd"
    add_satellite("kitchen", file)
    before = file.read_text()
    with pytest.raises(AccountError, match="exists"):
        add_satellite("kitchen", file)
    assert file.read_text() == before
    add_satellite("kitchen", file, replace=True)
    assert file.read_text() != before  # new salt and hash
    assert list_users(file) == ["kitchen"]


def test_a_given_password_is_used_and_must_be_long_and_one_line(tmp_path: Path) -> None:
    file = tmp_path / "passwd"
    assert add_satellite("kitchen", file, password="correct horse battery") == (
        "correct horse battery"
    )
    for bad in ("short", "twelve chars\nsecond line"):
        with pytest.raises(AccountError):
            add_satellite("hall", file, password=bad)
    assert list_users(file) == ["kitchen"]


def test_remove_and_list(tmp_path: Path) -> None:
    file = tmp_path / "passwd"
    set_password(file, "orac-node", generate_password())
    for name in ("kitchen", "hall", "office"):
        add_satellite(name, file)
    assert list_satellites(file) == ["kitchen", "hall", "office"]
    remove_satellite("hall", file)
    assert list_satellites(file) == ["kitchen", "office"]
    assert list_users(file) == ["orac-node", "kitchen", "office"]
    with pytest.raises(AccountError, match="no satellite"):
        remove_satellite("hall", file)
    with pytest.raises(AccountError):
        remove_satellite("orac-node", file)  # not through the satellite command


def test_listing_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert list_satellites(tmp_path / "nothing-yet") == []


def test_the_command_prints_a_generated_password_once_and_how_to_apply_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = str(tmp_path / "passwd")
    assert main(["satellite", "add", "kitchen", "--password-file", file]) == 0
    out = capsys.readouterr().out
    password_lines = [line for line in out.splitlines() if line.startswith("password")]
    assert len(password_lines) == 1
    assert "systemctl reload mosquitto" in out
    assert "audio/kitchen/#" in out

    given = "a password typed by a person"
    assert main(["satellite", "add", "hall", "--password-file", file, "--password", given]) == 0
    assert given not in capsys.readouterr().out  # not echoed back

    assert main(["satellite", "list", "--password-file", file]) == 0
    assert capsys.readouterr().out.split() == ["kitchen", "hall"]


def test_the_command_reports_errors_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = str(tmp_path / "passwd")
    assert main(["satellite", "add", "a/b", "--password-file", file]) == 2
    assert "topic level" in capsys.readouterr().err
    assert main(["satellite", "remove", "ghost", "--password-file", file]) == 2


def test_the_default_file_is_the_one_the_shipped_broker_config_reads() -> None:
    conf = (Path(__file__).resolve().parents[2] / "mosquitto" / "orac-node.conf").read_text()
    assert f"password_file {access.DEFAULT_PASSWORD_FILE}\n" in conf
