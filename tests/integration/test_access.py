"""Access control and TLS, enforced by a real Mosquitto running the shipped config.

Every test talks to mosquitto started from mosquitto/orac-node.conf and
mosquitto/acl (ports and paths rewritten, see secure_broker.py), with users
made by the real mosquitto_passwd. What gets through is observed, not
inferred: a refused publish is checked by a subscriber that would have seen
it, and a refused read by publishing for real and seeing it not arrive. The
"did not arrive" checks need no waiting: every forbidden message is
published (QoS 1, so the broker has routed it) before a marker message the
observer may receive, and a broker delivers one subscriber's messages in
order, so by the time the marker arrives, anything forbidden would have too.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest

from orac_node.client import Client, Satellite, connect
from orac_node.errors import BrokerError
from orac_node.mqtt.options import BrokerLogin
from orac_node.ops.accounts import generate_password
from orac_node.ops.localbroker import port_in_use
from tests.conftest import MODEL
from tests.integration.accuracy import normalize
from tests.integration.conftest import load, load_refs
from tests.integration.harness import final_of, start_node
from tests.integration.secure_broker import MONITOR, Certificates, SecureBroker

SATELLITES = ["sat-a", "sat-b"]
USERS = ["orac-node", "orac-core", "homeassistant", "console", *SATELLITES]
DELIVERY_TIMEOUT_S = 10.0
"""Generous: a marker message on a loopback broker arrives in milliseconds."""


@pytest.fixture(scope="module")
def secure(
    certificates: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureBroker]:
    broker = SecureBroker(tmp_path_factory.mktemp("secure-broker"), certificates, USERS)
    yield broker.start()
    broker.stop()


@pytest.fixture(scope="module")
def cert_broker(
    certificates: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureBroker]:
    """The shipped config, its TLS listener also demanding a client certificate.

    The appended line applies to the last listener in the file, the TLS one.
    """
    broker = SecureBroker(
        tmp_path_factory.mktemp("cert-broker"),
        certificates,
        USERS,
        extra_config="require_certificate true",
    )
    yield broker.start()
    broker.stop()


@contextlib.asynccontextmanager
async def _clients(
    broker: SecureBroker, users: set[str]
) -> AsyncIterator[dict[str, aiomqtt.Client]]:
    async with contextlib.AsyncExitStack() as stack:
        yield {user: await stack.enter_async_context(broker.connect(user)) for user in users}


async def _topics_until(client: aiomqtt.Client, marker: str) -> list[str]:
    """Topics ``client`` received before the message on ``marker``."""
    topics: list[str] = []
    async with asyncio.timeout(DELIVERY_TIMEOUT_S):
        async for message in client.messages:
            if message.topic.value == marker:
                return topics
            topics.append(message.topic.value)
    raise AssertionError("unreachable: the message iterator does not end")


# -- who may connect ------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["loopback-plain", "tls"])
async def test_anonymous_clients_are_refused(secure: SecureBroker, tls: bool) -> None:
    with pytest.raises(BrokerError, match="Not authorized"):
        async with secure.connect(None, tls=tls):
            pass


async def test_a_wrong_password_is_refused_and_not_repeated(secure: SecureBroker) -> None:
    wrong = generate_password()
    url = f"mqtts://sat-a:{wrong}@127.0.0.1:{secure.tls_port}"
    with pytest.raises(BrokerError, match="Not authorized") as refused:
        async with connect(BrokerLogin(url=url, ca_file=secure.certs.ca)):
            pass
    assert wrong not in str(refused.value)
    assert "sat-a:***@" in str(refused.value)


@pytest.mark.parametrize("tls", [False, True], ids=["loopback-plain", "tls"])
async def test_every_user_logs_in_with_its_password(secure: SecureBroker, tls: bool) -> None:
    # The refusals above mean something only if the right password does work.
    for user in USERS:
        async with secure.connect(user, tls=tls) as client:
            await client.publish(f"audio/{user}/chunk", b"", qos=1)


PAHO_LEAKS_FAILED_TLS_SOCKETS = pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnraisableExceptionWarning"
)
"""paho-mqtt 2.2 does not close its socket when the TLS handshake fails (the
ResourceWarning "unclosed <ssl.SSLSocket>" on garbage collection); tests that
make a handshake fail collect the garbage themselves, under this mark."""


@PAHO_LEAKS_FAILED_TLS_SOCKETS
async def test_tls_clients_refuse_a_broker_they_cannot_verify(secure: SecureBroker) -> None:
    # No ca_file: the system's trust store, which does not know the test CA.
    with pytest.raises(BrokerError, match="CERTIFICATE_VERIFY_FAILED"):
        async with connect(secure.url("sat-a")):
            pass
    gc.collect()


def _lan_address() -> str | None:
    """This machine's IPv4 address on its default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routing decision only
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_the_plain_listener_is_reachable_from_this_machine_only(secure: SecureBroker) -> None:
    address = _lan_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    assert port_in_use(secure.plain_port, "127.0.0.1")
    assert not port_in_use(secure.plain_port, address)


# -- who may publish what -----------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "forbidden", "allowed"),
    [
        (
            "sat-a",
            [
                "audio/sat-b/chunk",  # speaking for another satellite
                "audio/sat-b/raw",
                "audio/sat-a-2/chunk",  # a name that merely starts with its own
                "audio/chunk",
                "transcript/general",  # forging a transcript
                "orac/node/orac-box/status",  # forging node status
                "orac/device/sat-b/error",
                "orac/request/unlock-door",  # posing as ORAC Core
                "orac/request/any/retranscribe",
                "orac/context/device/sat-a",  # steering its own transcripts
                "orac/config/topic/general",  # rewriting the registry (webhooks!)
                "orac/config/room/kitchen",  # silencing another satellite as a duplicate
                "orac/satellite/sat-b/status",  # another satellite's heartbeat
                "orac/response/orac-core/1",  # forging an answer to Core
            ],
            "audio/sat-a/chunk",
        ),
        ("sat-a", ["orac/satellite/sat-b/status"], "orac/satellite/sat-a/status"),
        (
            "orac-core",
            [
                "transcript/general",
                "audio/sat-a/chunk",
                "orac/node/orac-box/status",
                "orac/response/orac-core/1",
            ],
            "orac/request/lights",
        ),
        ("orac-core", ["orac/satellite/sat-a/status"], "orac/context/device/kitchen"),
        ("orac-core", ["orac/device/sat-a/error"], "orac/config/topic/general"),
        ("orac-core", ["orac/device/sat-a/error"], "orac/config/room/kitchen"),
        (
            "orac-node",
            ["orac/request/lights", "audio/sat-a/chunk", "orac/context/device/kitchen"],
            "transcript/general",
        ),
        ("orac-node", ["orac/satellite/sat-a/status"], "orac/response/orac-core/1"),
        # Home Assistant discovery: the node publishes device configs and transcripts
        ("orac-node", ["orac/satellite/sat-b/status"], "homeassistant/device/orac_node_x/config"),
        ("orac-node", ["orac/request/lights"], "orac/device/sat-a/transcript"),
        (
            "homeassistant",
            [
                "transcript/general",
                "audio/sat-a/chunk",
                "orac/node/orac-box/status",
                "orac/satellite/sat-a/status",
                "orac/device/sat-a/transcript",  # forging what its own entities show
                "orac/request/lights",
                "orac/config/topic/general",
            ],
            "homeassistant/status",  # its birth message
        ),
        ("sat-a", ["homeassistant/device/orac_satellite_sat-a/config"], "audio/sat-a/chunk"),
        # several nodes: only nodes claim sessions (a satellite cannot steal its own
        # sessions from the node that decodes them, nor Core)
        ("orac-node", ["orac/request/lights"], "orac/claim/sat-a"),
        ("sat-a", ["orac/claim/sat-a"], "audio/sat-a/chunk"),
        ("orac-core", ["orac/claim/sat-a"], "orac/request/lights"),
        (
            "orac-node",
            ["orac/request/any/describe", "orac/config/room/kitchen"],
            "orac/config/topic/general",
        ),
        # the web console: its talk button is the satellite "console", and that is all
        # it may publish
        (
            "console",
            [
                "audio/sat-a/chunk",
                "transcript/general",
                "orac/node/orac-box/status",
                "orac/device/sat-a/error",
                "orac/request/lights",
                "orac/config/topic/general",
                "orac/claim/console",
            ],
            "audio/console/chunk",
        ),
        ("console", ["orac/satellite/sat-a/status"], "orac/satellite/console/status"),
        # a retranscribe that reached the wrong node is sent on to the right one; a node
        # may send no other request
        (
            "orac-node",
            ["orac/request/fleet-b/transcribe", "orac/request/fleet-b/describe"],
            "orac/request/fleet-b/retranscribe",
        ),
    ],
)
async def test_users_publish_only_where_the_acl_allows(
    secure: SecureBroker, user: str, forbidden: list[str], allowed: str
) -> None:
    async with _clients(secure, {user, MONITOR}) as clients:
        await clients[MONITOR].subscribe("#", qos=1)
        for topic in forbidden:
            await clients[user].publish(topic, b"forged", qos=1)
        await clients[user].publish(allowed, b"allowed", qos=1)
        seen = await _topics_until(clients[MONITOR], allowed)
    assert not set(seen) & set(forbidden)


async def test_the_node_sees_a_satellites_own_audio_but_not_audio_in_anothers_name(
    secure: SecureBroker,
) -> None:
    async with _clients(secure, {"sat-a", "orac-node"}) as clients:
        await clients["orac-node"].subscribe("audio/#", qos=1)
        await clients["sat-a"].publish("audio/sat-b/chunk", b"as b", qos=1)
        await clients["sat-a"].publish("audio/sat-a/chunk", b"as a", qos=1)
        seen = await _topics_until(clients["orac-node"], "audio/sat-a/chunk")
    assert "audio/sat-b/chunk" not in seen


@pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="needs mosquitto-clients")
def test_a_refused_publish_is_answered_not_authorized(secure: SecureBroker) -> None:
    # aiomqtt does not surface PUBACK reason codes; mosquitto_pub -d prints them.
    def puback(topic: str) -> str:
        options = ["-d", "-V", "5", "-q", "1", "-h", "127.0.0.1", "-p", str(secure.plain_port)]
        login = ["-u", "sat-a", "-P", secure.passwords["sat-a"]]
        done = subprocess.run(
            ["mosquitto_pub", *options, *login, "-t", topic, "-m", "x"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        found = re.search(r"received PUBACK \(Mid: \d+, RC:(\d+)\)", done.stdout)
        assert found, done.stdout + done.stderr
        return found.group(1)

    assert puback("audio/sat-b/chunk") == "135"  # 0x87 not authorized
    assert int(puback("audio/sat-a/chunk")) < 0x80  # success (16: no subscribers)


# -- who may read what ------------------------------------------------------------


@pytest.mark.parametrize(
    ("reader", "forbidden", "marker"),
    [
        (
            "sat-a",
            [
                ("orac-node", "transcript/general"),
                ("orac-node", "orac/device/sat-b/error"),
                ("sat-b", "audio/sat-b/chunk"),  # listening in on another satellite
                ("orac-core", "orac/request/lights"),
                ("orac-node", "orac/response/orac-core/1"),  # Core's answers
                ("orac-core", "orac/config/topic/general"),  # webhook secrets
                ("orac-core", "orac/context/device/sat-a"),
            ],
            ("orac-node", "orac/device/sat-a/error"),
        ),
        (
            "orac-core",
            [
                ("sat-a", "audio/sat-a/chunk"),
                ("orac-node", "orac/device/sat-a/error"),
                ("orac-node", "orac/response/sat-a/1"),  # another user's answers
            ],
            ("orac-node", "orac/response/orac-core/1"),
        ),
        (
            "orac-core",
            [("sat-a", "audio/sat-a/chunk")],
            ("sat-a", "orac/satellite/sat-a/status"),
        ),
        (
            "orac-node",
            [("orac-node", "orac/response/orac-core/1"), ("orac-node", "transcript/general")],
            ("sat-a", "audio/sat-a/chunk"),
        ),
        (
            "orac-node",
            [("orac-node", "transcript/general")],
            ("orac-core", "orac/request/any/describe"),
        ),
        (
            "orac-node",
            [("orac-node", "orac/device/sat-a/error")],
            ("orac-core", "orac/context/device/kitchen"),
        ),
        (  # Home Assistant reads what its discovered entities show, and no more
            "homeassistant",
            [
                ("sat-a", "audio/sat-a/chunk"),
                ("orac-node", "orac/device/sat-a/error"),
                ("orac-core", "orac/config/topic/general"),  # webhook secrets
                ("orac-core", "orac/request/lights"),
                ("orac-node", "orac/response/orac-core/1"),
            ],
            ("orac-node", "orac/device/sat-a/transcript"),
        ),
        (
            "homeassistant",
            [("orac-core", "orac/context/device/sat-a")],
            ("orac-node", "homeassistant/device/orac_node_x/config"),
        ),
        ("homeassistant", [("sat-a", "audio/sat-a/raw")], ("orac-node", "orac/node/x/status")),
        ("homeassistant", [], ("sat-a", "orac/satellite/sat-a/status")),
        ("homeassistant", [], ("orac-node", "transcript/general")),
        (  # nor does a satellite read transcripts through a device's transcript topic
            "sat-a",
            [
                ("orac-node", "orac/device/sat-b/transcript"),
                ("orac-node", "orac/device/sat-a/transcript"),
            ],
            ("orac-node", "orac/device/sat-a/error"),
        ),
        # a satellite follows the claims on its own sessions (to resend when the node
        # that took one dies), not another satellite's
        ("sat-a", [("orac-node", "orac/claim/sat-b")], ("orac-node", "orac/claim/sat-a")),
        # ...and whether the node that claimed one is up (node statuses hold no secret)
        ("sat-a", [("orac-node", "orac/claim/sat-b")], ("orac-node", "orac/node/orac-box/status")),
        # the console shows statuses, heartbeats, transcripts and error reports; not
        # audio, requests, answers or the registry's webhook secrets
        (
            "console",
            [
                ("sat-a", "audio/sat-a/chunk"),
                ("orac-core", "orac/request/lights"),
                ("orac-node", "orac/response/orac-core/1"),
                ("orac-core", "orac/config/topic/general"),
                ("orac-core", "orac/context/device/sat-a"),
            ],
            ("orac-node", "transcript/general"),
        ),
        ("console", [("sat-a", "audio/sat-a/raw")], ("orac-node", "orac/device/sat-a/error")),
        ("console", [], ("sat-a", "orac/satellite/sat-a/status")),
        ("console", [], ("orac-node", "orac/node/orac-box/status")),
    ],
)
async def test_users_receive_only_what_the_acl_lets_them_read(
    secure: SecureBroker,
    reader: str,
    forbidden: list[tuple[str, str]],
    marker: tuple[str, str],
) -> None:
    users = {reader, marker[0]} | {publisher for publisher, _ in forbidden}
    async with _clients(secure, users) as clients:
        # Mosquitto grants the subscription and filters each message on delivery.
        await clients[reader].subscribe("#", qos=1)
        for publisher, topic in forbidden:
            await clients[publisher].publish(topic, b"not for you", qos=1)
        await clients[marker[0]].publish(marker[1], b"yours", qos=1)
        seen = await _topics_until(clients[reader], marker[1])
    assert not set(seen) & {topic for _, topic in forbidden}


async def test_a_satellite_cannot_read_transcripts_that_core_receives(
    secure: SecureBroker,
) -> None:
    async with _clients(secure, {"sat-a", "orac-core", "orac-node"}) as clients:
        for reader in ("sat-a", "orac-core"):
            await clients[reader].subscribe("transcript/#", qos=1)
        await clients["sat-a"].subscribe("orac/device/sat-a/error", qos=1)
        await clients["orac-node"].publish("transcript/general", b"{}", qos=1)
        await clients["orac-node"].publish("orac/device/sat-a/error", b"{}", qos=1)
        satellite_saw = await _topics_until(clients["sat-a"], "orac/device/sat-a/error")
        core_saw = await _topics_until(clients["orac-core"], "transcript/general")
    assert satellite_saw == []
    assert core_saw == []  # the transcript itself was the marker: it arrived


# -- the node over TLS ------------------------------------------------------------


async def test_the_node_transcribes_over_tls_as_its_own_user(
    secure: SecureBroker, tmp_path: Path
) -> None:
    password = secure.passwords["orac-node"]
    config = {
        "broker": {"username": "orac-node", "password": password, "ca_file": str(secure.certs.ca)},
        "logging": {"level": "DEBUG"},  # the most the node ever logs
    }
    node = await asyncio.to_thread(
        start_node,
        f"mqtts://127.0.0.1:{secure.tls_port}",
        tmp_path,
        MODEL,
        "test-access-tls",
        config,
        watch_url=secure.url("orac-core", tls=False),  # Core may read node status
    )
    try:
        wav, reference = load_refs("commands")[0]
        async with _clients(secure, {"sat-a", "orac-core"}) as clients:
            await clients["orac-core"].subscribe("transcript/#", qos=1)
            session = await Satellite(clients["sat-a"], "sat-a").stream(load(wav))
            final = await final_of(clients["orac-core"], session)
        # Core's requests under the shipped ACL: to "any" (the node's shared
        # subscription) and to the node by name, answered on orac/response/orac-core/...
        async with Client(secure.url("orac-core", tls=False), timeout=30) as core:
            described = await core.describe()
            again = await core.retranscribe(final)
    finally:
        code = await asyncio.to_thread(node.stop, signal.SIGTERM)
    assert final.device == "sat-a"
    assert normalize(final.text) == normalize(reference)
    assert described["node"] == "test-access-tls"
    assert again.text == final.text and again.session == session
    assert code == 0, node.log()
    assert password not in node.log()


@PAHO_LEAKS_FAILED_TLS_SOCKETS
async def test_client_certificates_when_the_broker_demands_them(
    cert_broker: SecureBroker, tmp_path: Path
) -> None:
    with pytest.raises(BrokerError):  # TLS handshake refused: no certificate
        async with cert_broker.connect("sat-a"):
            pass
    gc.collect()
    async with cert_broker.connect("sat-a", client_cert=True) as client:
        await client.publish("audio/sat-a/chunk", b"", qos=1)
    certs = cert_broker.certs
    config = {
        "broker": {
            "username": "orac-node",
            "password": cert_broker.passwords["orac-node"],
            "ca_file": str(certs.ca),
            "cert_file": str(certs.client_cert),
            "key_file": str(certs.client_key),
        }
    }
    node = await asyncio.to_thread(  # returns once the node has published "ready"
        start_node,
        f"mqtts://127.0.0.1:{cert_broker.tls_port}",
        tmp_path,
        MODEL,
        "test-access-cert",
        config,
        watch_url=cert_broker.url("orac-core", tls=False),
    )
    assert await asyncio.to_thread(node.stop, signal.SIGTERM) == 0, node.log()


async def test_a_refused_node_retries_without_logging_its_password(
    secure: SecureBroker, tmp_path: Path
) -> None:
    wrong = generate_password()
    log_path = tmp_path / "node.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORAC_NODE_")}
    env |= {
        "ORAC_NODE_BROKER__USERNAME": "orac-node",
        "ORAC_NODE_BROKER__PASSWORD": wrong,  # the environment, as docs/SECURITY.md suggests
        "ORAC_NODE_BROKER__CA_FILE": str(secure.certs.ca),
        "ORAC_NODE_LOGGING__LEVEL": "DEBUG",
    }
    with log_path.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "orac_node.cli",
            "run",
            "--broker",
            f"mqtts://127.0.0.1:{secure.tls_port}",
            "--model",
            str(MODEL),
            "--node-id",
            "test-access-refused",
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        async with asyncio.timeout(60):
            while "Not authorized" not in log_path.read_text(errors="replace"):
                assert process.returncode is None, log_path.read_text(errors="replace")
                await asyncio.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()
    log = log_path.read_text(errors="replace")
    assert "reconnecting" in log
    assert wrong not in log


async def test_the_send_command_streams_over_tls_as_a_satellite(secure: SecureBroker) -> None:
    wav, _ = load_refs("commands")[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORAC_NODE_")}
    env |= {"ORAC_NODE_BROKER__PASSWORD": secure.passwords["sat-a"]}  # not on the command line
    async with secure.connect("orac-node") as node:
        await node.subscribe("audio/#", qos=1)
        send = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "orac_node.cli",
            "send",
            "sat-a",
            str(wav),
            "--no-wait",  # a satellite may not read the transcript it would wait for
            "--broker",
            f"mqtts://sat-a@127.0.0.1:{secure.tls_port}",
            "--ca-file",
            str(secure.certs.ca),
            env=env,
            stderr=subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(send.communicate(), 60)
        assert send.returncode == 0, stderr.decode()
        async with asyncio.timeout(DELIVERY_TIMEOUT_S):
            message = await anext(aiter(node.messages))
    assert message.topic.value == "audio/sat-a/chunk"


# -- orac-node satellite add / remove -------------------------------------------------


def _cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "orac_node.cli", "satellite", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


async def _can_log_in(url: str, ca: Path) -> bool:
    refusal = ""
    try:
        async with connect(BrokerLogin(url=url, ca_file=ca)):
            pass
    except BrokerError as exc:
        refusal = str(exc)
    assert not refusal or "Not authorized" in refusal, refusal
    return not refusal


async def _eventually(url: str, ca: Path, *, allowed: bool) -> None:
    """Mosquitto handles SIGHUP between network loops: poll until it took effect."""
    async with asyncio.timeout(DELIVERY_TIMEOUT_S):
        while await _can_log_in(url, ca) != allowed:
            await asyncio.sleep(0.1)


async def _until_disconnected(client: aiomqtt.Client) -> None:
    """Wait for the broker to hang up, which the message iterator raises as MqttError."""
    async with asyncio.timeout(DELIVERY_TIMEOUT_S):
        async for _ in client.messages:
            pass


async def test_satellite_add_and_remove_take_effect_on_reload(secure: SecureBroker) -> None:
    name = f"kitchen-{uuid.uuid4().hex[:6]}"
    file = str(secure.password_file)
    out = await asyncio.to_thread(_cli, "add", name, "--password-file", file)
    found = re.search(r"^password \(shown only now[^)]*\): (\S+)$", out, re.MULTILINE)
    assert found, out
    url = f"mqtts://{name}:{found.group(1)}@127.0.0.1:{secure.tls_port}"
    assert not await _can_log_in(url, secure.certs.ca)  # not before the reload
    secure.reload()
    await _eventually(url, secure.certs.ca, allowed=True)
    assert name in await asyncio.to_thread(_cli, "list", "--password-file", file)
    kicked = False
    with contextlib.suppress(BrokerError):  # leaving a connection the broker has closed
        async with (
            connect(BrokerLogin(url=url, ca_file=secure.certs.ca)) as satellite,
            secure.connect("orac-node") as node,
        ):
            await node.subscribe("audio/#", qos=1)
            await satellite.publish(f"audio/{name}/chunk", b"", qos=1)
            assert await _topics_until(node, f"audio/{name}/chunk") == []

            await asyncio.to_thread(_cli, "remove", name, "--password-file", file)
            secure.reload()
            # The reload also disconnects a removed satellite that is connected now.
            with pytest.raises(aiomqtt.MqttError):
                await _until_disconnected(satellite)
            kicked = True
    assert kicked
    await _eventually(url, secure.certs.ca, allowed=False)
