"""Webhook pieces that are pure logic: signatures, backoff, the allowlist, the outbox bound.

HTTP behaviour is tested against real receivers in tests/integration/test_webhooks.py.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from pathlib import Path

import pytest

from orac_node.config import Allowlist, IPAddress, WebhooksSection, load_config
from orac_node.consumers.webhooks import WebhookDelivery, backoff_delay, outbox, parse_retry_after
from orac_node.consumers.webhooks.signing import sign, verify
from orac_node.errors import ConfigError
from orac_node.wire import TranscriptionEvent, WebhookTarget

SECRET = "s3cret-key"
BODY = b'{"id": "n:d:s", "text": "turn on the lights"}'
NOW = 1_700_000_000


def _event(n: int) -> TranscriptionEvent:
    return TranscriptionEvent(
        id=f"node:dev:s{n}",
        event="transcription.complete",
        topic="kitchen",
        device="dev",
        session=f"s{n}",
        text=f"utterance {n}",
        confidence=0.9,
        language="en",
        timestamp=1_700_000_000.0 + n,
        node="node",
        model="tiny.en",
        audio_s=1.5,
    )


# -- signatures -------------------------------------------------------------------------


def test_sign_is_stripe_style_hmac_of_timestamp_dot_body() -> None:
    header = sign(SECRET, BODY, NOW)
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={expected}"
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)


def test_verify_accepts_a_good_signature() -> None:
    assert verify(SECRET, sign(SECRET, BODY, NOW), BODY, now=NOW + 10)


def test_verify_rejects_a_tampered_body() -> None:
    assert not verify(SECRET, sign(SECRET, BODY, NOW), BODY + b" ", now=NOW)


def test_verify_rejects_a_wrong_secret() -> None:
    assert not verify("other", sign(SECRET, BODY, NOW), BODY, now=NOW)


def test_verify_rejects_a_stale_or_future_timestamp() -> None:
    header = sign(SECRET, BODY, NOW)
    assert verify(SECRET, header, BODY, now=NOW + 300)
    assert not verify(SECRET, header, BODY, now=NOW + 301)
    assert not verify(SECRET, header, BODY, now=NOW - 301)
    assert verify(SECRET, header, BODY, tolerance_s=3600, now=NOW + 3000)


def test_verify_accepts_any_of_several_signatures() -> None:
    good = sign(SECRET, BODY, NOW)
    rotated = f"{good},v1={'0' * 64}"
    assert verify(SECRET, rotated, BODY, now=NOW)
    assert verify(SECRET, f"t={NOW},v1={'0' * 64},{good.split(',')[1]}", BODY, now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        f"v1={'a' * 64}",
        f"t={NOW}",
        f"t={NOW},v1=",
        f"t=abc,v1={'a' * 64}",
        f"t=-{NOW},v1={'a' * 64}",
        f"t=١٢٣,v1={'a' * 64}",
        f"t={NOW},v1=ünïcode",
        f"t={NOW};v1={'a' * 64}",
    ],
)
def test_verify_rejects_a_malformed_header(header: str) -> None:
    assert not verify(SECRET, header, BODY, now=NOW)


# -- backoff ----------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    ceilings = [backoff_delay(n, 1.0, 60.0, rand=lambda: 1.0) for n in range(1, 10)]
    assert ceilings == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_backoff_jitter_stays_between_half_and_full() -> None:
    assert backoff_delay(3, 1.0, 60.0, rand=lambda: 0.0) == 2.0
    for _ in range(200):
        assert 2.0 <= backoff_delay(3, 1.0, 60.0) <= 4.0


def test_retry_after_lengthens_but_never_shortens_and_is_capped() -> None:
    one = lambda: 1.0  # noqa: E731
    assert backoff_delay(1, 1.0, 60.0, retry_after_s=10, rand=one) == 10
    assert backoff_delay(5, 1.0, 60.0, retry_after_s=2, rand=one) == 16
    assert backoff_delay(1, 1.0, 60.0, retry_after_s=3600, rand=one) == 60


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5", 5.0), (" 0.5 ", 0.5), ("0", 0.0), (None, None), ("-1", None), ("inf", None),
     ("nan", None), ("Wed, 21 Oct 2015 07:28:00 GMT", None)],
)  # fmt: skip
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


# -- the allowlist ----------------------------------------------------------------------


def _ips(*texts: str) -> list[IPAddress]:
    return [ipaddress.ip_address(t) for t in texts]


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
    ],
)
def test_empty_allowlist_refuses_this_machine_and_odd_addresses(address: str, kind: str) -> None:
    reason = Allowlist.parse([]).refusal("hooks.example", _ips(address))
    shown = ipaddress.ip_address(address)  # 3.11 shows ::ffff:127.0.0.1 as ::ffff:7f00:1
    assert reason == f"destination not allowed: hooks.example is {shown} ({kind})"


def test_empty_allowlist_allows_public_and_private_addresses() -> None:
    allow = Allowlist.parse([])
    assert allow.refusal("a.example", _ips("93.184.216.34", "2606:2800:220:1::1")) is None
    assert allow.refusal("ha.lan", _ips("192.168.1.20")) is None


def test_every_resolved_address_is_checked() -> None:
    reason = Allowlist.parse([]).refusal("sneaky.example", _ips("93.184.216.34", "127.0.0.1"))
    assert reason is not None and "127.0.0.1 (loopback)" in reason


def test_no_address_is_refused() -> None:
    assert Allowlist.parse([]).refusal("void.example", []) is not None


def test_listed_networks_allow_only_addresses_inside_them() -> None:
    allow = Allowlist.parse(["127.0.0.0/8", "10.1.0.0/16", "fd00::/8"])
    assert allow.refusal("127.0.0.1", _ips("127.0.0.1")) is None
    assert allow.refusal("ha.lan", _ips("10.1.2.3", "fd00::5")) is None
    assert allow.refusal("ha.lan", _ips("::ffff:10.1.2.3")) is None
    reason = allow.refusal("mixed.lan", _ips("10.1.2.3", "10.2.0.1"))
    assert reason == "destination not allowed: mixed.lan (10.2.0.1) is not in webhooks.allow"
    # A non-empty list replaces the default rules: ::1 is not listed, so it is refused.
    assert allow.refusal("localhost", _ips("127.0.0.1", "::1")) is not None
    assert allow.refusal("hooks.example", _ips("93.184.216.34")) is not None


def test_listed_host_names_are_trusted_whatever_they_resolve_to() -> None:
    allow = Allowlist.parse(["Hooks.Example.", "10.0.0.5"])
    assert allow.refusal("hooks.example", _ips("127.0.0.1")) is None
    assert allow.refusal("HOOKS.example.", _ips("93.184.216.34")) is None
    assert allow.refusal("10.0.0.5", _ips("10.0.0.5")) is None
    assert allow.refusal("other.example", _ips("10.0.0.5", "10.0.0.6")) is not None


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "example.com/8", "example.com:80", " "])
def test_an_entry_that_is_no_host_or_network_is_a_config_error(entry: str) -> None:
    with pytest.raises(ValueError, match="host name or network"):
        Allowlist.parse([entry])
    with pytest.raises(ConfigError, match=r"webhooks\.allow"):  # when the config loads
        load_config(overrides={"webhooks": {"allow": [entry]}}, environ={})


# -- the outbox ---------------------------------------------------------------------------


def _settings(**overrides: object) -> WebhooksSection:
    return WebhooksSection.model_validate({"allow": ["127.0.0.0/8"], **overrides})


TARGET = WebhookTarget(url="http://127.0.0.1:9/hook", secret=SECRET)


async def test_outbox_beyond_its_bound_dead_letters_the_oldest(tmp_path: Path) -> None:
    delivery = WebhookDelivery(_settings(outbox_max=3), tmp_path / "wh")
    try:
        for n in range(5):
            delivery.submit(_event(n), [TARGET])
        assert delivery.queued == 3
        assert delivery.dead == 2
        letters = delivery.dead_letters()
        assert [d.event_id for d in letters] == ["node:dev:s1", "node:dev:s0"]
        assert all(d.last_error == "outbox full (3 events)" for d in letters)
        assert letters[0].attempts == 0 and letters[0].body == _event(1).encode()
    finally:
        await delivery.close()


async def test_outbox_survives_a_new_instance(tmp_path: Path) -> None:
    first = WebhookDelivery(_settings(), tmp_path)
    first.submit(_event(1), [TARGET, WebhookTarget(url="https://hooks.example/x")])
    await first.close()
    second = WebhookDelivery(_settings(), tmp_path)
    try:
        assert second.queued == 2
    finally:
        await second.close()
    assert (tmp_path / outbox.DB_NAME).stat().st_mode & 0o077 == 0


async def test_submit_dead_letters_an_unusable_target_instead_of_raising(tmp_path: Path) -> None:
    delivery = WebhookDelivery(_settings(), tmp_path)
    try:
        bad = WebhookTarget.model_construct(url="ftp://files.example/x", secret=None)
        delivery.submit(_event(1), [bad, TARGET])
        assert delivery.queued == 1
        (letter,) = delivery.dead_letters()
        assert (letter.url, letter.last_error) == ("ftp://files.example/x", "invalid webhook url")
    finally:
        await delivery.close()


async def test_submit_after_close_counts_the_loss(tmp_path: Path) -> None:
    delivery = WebhookDelivery(_settings(), tmp_path)
    await delivery.close()
    delivery.submit(_event(1), [TARGET])
    assert delivery.lost == 1


async def test_dead_letters_keep_only_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "DEAD_LETTERS_KEPT", 4)
    delivery = WebhookDelivery(_settings(outbox_max=1), tmp_path)
    try:
        for n in range(10):
            delivery.submit(_event(n), [TARGET])
        assert delivery.dead == 9
        assert [d.event_id for d in delivery.dead_letters()] == [
            f"node:dev:s{n}" for n in (8, 7, 6, 5)
        ]
    finally:
        await delivery.close()
