"""Broker URLs and TLS settings: parsing, defaults, and never showing a password."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from orac_node.client import connect
from orac_node.config import BrokerUrl, load_config
from orac_node.errors import BrokerError, ConfigError
from orac_node.mqtt.options import BrokerLogin, tls_parameters
from orac_node.ops.localbroker import free_port

SECRET = "s3cret-Pa55word"


@pytest.mark.parametrize(
    ("url", "host", "port", "tls"),
    [
        ("mqtt://box", "box", 1883, False),
        ("mqtts://box", "box", 8883, True),
        ("mqtts://box.lan:9883", "box.lan", 9883, True),
        ("mqtt://127.0.0.1:1884/", "127.0.0.1", 1884, False),
        ("mqtts://[::1]", "::1", 8883, True),
    ],
)
def test_scheme_host_and_default_port(url: str, host: str, port: int, tls: bool) -> None:
    parsed = BrokerUrl.parse(url)
    assert (parsed.host, parsed.port, parsed.tls) == (host, port, tls)
    assert parsed.username is None and parsed.password is None


def test_credentials_are_unquoted() -> None:
    parsed = BrokerUrl.parse("mqtts://kitchen:p%40ss%3Aword@box:8883")
    assert (parsed.username, parsed.password) == ("kitchen", "p@ss:word")


@pytest.mark.parametrize(
    "url",
    [
        f"http://kitchen:{SECRET}@box",
        f"mqtt://kitchen:{SECRET}@",
        f"mqtts://kitchen:{SECRET}@box:port",
        f"mqtts://kitchen:{SECRET}@box:99999",
        f"mqtts://kitchen:{SECRET}@box/topic",
        f"mqtts://kitchen:{SECRET}@box?x=1",
        f"kitchen:{SECRET}@box:1883",
        "",
    ],
)
def test_bad_urls_are_refused_without_quoting_them(url: str) -> None:
    with pytest.raises(ValueError, match="broker url") as refused:
        BrokerUrl.parse(url)
    assert SECRET not in str(refused.value)


def test_redaction_keeps_the_user_and_hides_the_password() -> None:
    parsed = BrokerUrl.parse(f"mqtts://kitchen:{SECRET}@box")
    assert parsed.redacted() == "mqtts://kitchen:***@box:8883"
    assert SECRET not in repr(parsed)
    assert BrokerUrl.parse(f"mqtt://kitchen:{SECRET}@[::1]:1").redacted() == (
        "mqtt://kitchen:***@[::1]:1"
    )
    assert BrokerUrl.parse("mqtt://box").redacted() == "mqtt://box:1883"


def test_tls_parameters_always_verify_the_broker(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    params = tls_parameters(ca)
    assert params.ca_certs == str(ca)
    assert params.cert_reqs == ssl.CERT_REQUIRED
    assert params.certfile is None and params.keyfile is None
    assert tls_parameters().ca_certs is None  # the system's trust store


# -- the node's config ----------------------------------------------------------


def _broker(**settings: object) -> dict[str, object]:
    return {"broker": settings}


def test_the_config_takes_an_mqtts_url_and_tls_files(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / name for name in ("ca.crt", "client.crt", "client.key"))
    for path in (ca, cert, key):
        path.write_text("PEM")
    config = load_config(
        overrides=_broker(url="mqtts://box.lan", ca_file=ca, cert_file=cert, key_file=key),
        environ={},
    )
    broker = config.broker
    assert (broker.tls, broker.host, broker.port) == (True, "box.lan", 8883)
    assert (broker.ca_file, broker.cert_file, broker.key_file) == (ca, cert, key)
    assert load_config(environ={}).broker.tls is False


def test_tls_files_with_a_plain_url_are_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("PEM")
    # Certificates given with mqtt:// would be ignored and the password sent in clear.
    with pytest.raises(ConfigError, match="mqtts"):
        load_config(overrides=_broker(ca_file=ca), environ={})
    with pytest.raises(ConfigError, match="key_file needs cert_file"):
        load_config(overrides=_broker(url="mqtts://box", key_file=ca), environ={})
    with pytest.raises(ConfigError, match="ca_file"):
        load_config(overrides=_broker(url="mqtts://box", ca_file=tmp_path / "no"), environ={})


def test_the_config_password_never_shows(tmp_path: Path) -> None:
    config = load_config(
        environ={"ORAC_NODE_BROKER__USERNAME": "orac-node", "ORAC_NODE_BROKER__PASSWORD": SECRET}
    )
    assert config.broker.password is not None
    assert config.broker.password.get_secret_value() == SECRET
    for dump in (repr(config), str(config), config.model_dump_json(), str(config.model_dump())):
        assert SECRET not in dump
    with pytest.raises(ConfigError) as refused:
        load_config(overrides=_broker(url=f"mqtts://orac-node:{SECRET}@box"), environ={})
    assert SECRET not in str(refused.value)


# -- the client helper ------------------------------------------------------------


async def test_client_errors_show_the_url_without_its_password() -> None:
    port = free_port()  # nothing listens there: connection refused
    with pytest.raises(BrokerError) as refused:
        async with connect(f"mqtt://kitchen:{SECRET}@127.0.0.1:{port}"):
            pass
    assert SECRET not in str(refused.value)
    assert f"mqtt://kitchen:***@127.0.0.1:{port}" in str(refused.value)
    with pytest.raises(BrokerError) as refused:
        async with connect(f"mqtt://kitchen:{SECRET}@127.0.0.1:port"):
            pass
    assert SECRET not in str(refused.value)


async def test_the_client_refuses_certificates_with_a_plain_url(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="mqtts"):
        async with connect(BrokerLogin(url="mqtt://127.0.0.1:1", ca_file=tmp_path / "ca.crt")):
            pass
