"""10,000+ random and malformed messages against a running node: every one answered.

A seeded generator (the same cases every run) covers all three input topics:
bad msgpack, truncated and empty payloads, every chunk field with a wrong
type, NaN, infinities and huge ints, wrong rates, channels and formats, odd
raw byte counts, undecodable and oversized files, a WAV header claiming 1 Hz,
and device names the broker accepts but the contract does not (unicode,
spaces, several levels, empty, 60 KB long). Valid chunks are mixed in, each
its own session, some left open to end by idle timeout.

What each message must get is known when it is made: an error (with its code
when the contract fixes it), a final, or nothing (valid raw audio, a reserved
topic kind). Per device the node must answer exactly that. The per-device rate
limit is on and three "hot" devices exceed it in bursts; for them the count is
exact but not per message: every message is processed, refused with its own
error, or counted in a ``rate_limited`` report's ``dropped``. The other devices
stay under the limit, so each bad payload of theirs gets its own error.

Then: the node is alive and ``ready``, its memory grew by less than 100 MB, a
real command still transcribes, and on shutdown its ``draining`` status shows no
session left open (a stuck session would show there and get a ``shutdown``
final).
"""

from __future__ import annotations

import asyncio
import math
import random
import struct
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import psutil
import pytest

from orac_node.client import connect
from orac_node.ops.localbroker import BROKER_QUEUES, LocalBroker
from orac_node.wire import ErrorCode
from tests.conftest import AUDIO
from tests.integration.conftest import load
from tests.integration.harness import Harness, RunningNode, harness

SEED = 20261124
MAX_CHUNK_BYTES = 8192
MAX_FILE_BYTES = 65_536
NODE_CONFIG: dict[str, Any] = {
    "ingest": {
        "max_chunk_bytes": MAX_CHUNK_BYTES,
        "max_file_bytes": MAX_FILE_BYTES,
        "max_file_s": 5,
        # 100-message bursts: the hot devices' runs of 200 overflow them, the other
        # devices (under 80 messages each) never do.
        "device_chunks_per_s": 50,
        "device_burst_s": 2.0,
        # Every valid chunk here opens a session owed a final, dozens at once: the
        # overload gate would refuse those past its starting cap (test_overload.py's
        # subject, not this test's).
        "overload_lag_ms": 0,
    },
    "endpoint": {"idle_timeout_s": 1.0},
}
HOT_DEVICES = 3
HOT_RUN = 200
COLD_DEVICES = 150
BATCH = 250
IN_FLIGHT = 1500
"""Messages published but not yet answered before the publisher waits: keeps the
broker's and node's queues short, so nothing is lost to a queue limit."""

ANY = "any"  # an error of whatever code; the contract does not fix which
FINAL = "final"
NOTHING = "nothing"


@dataclass(frozen=True)
class Case:
    topic: str
    payload: bytes
    device: str  # whose error topic answers it
    expect: str  # an ErrorCode value, ANY, FINAL or NOTHING
    session: str | None = None  # for FINAL


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """Production queue limits (Mosquitto's default 1000 would drop under a burst)."""
    with LocalBroker(Path(tmp_path_factory.mktemp("mosq")), extra_config=BROKER_QUEUES) as b:
        yield b


# --- the generator ------------------------------------------------------------------------

NAN, INF = math.nan, math.inf
HUGE, NEG_HUGE = 2**64 - 1, -(2**63)
# (field, value, code) for a valid chunk with exactly one field changed
FIELD_FAULTS: list[tuple[str, object, str]] = [
    ("v", "1", "bad_field"),
    ("v", None, "bad_field"),
    ("v", NAN, "bad_field"),
    ("v", 2, "unsupported_version"),
    ("v", HUGE, "unsupported_version"),
    ("session", "", "bad_field"),
    ("session", "a b", "bad_field"),
    ("session", "x" * 129, "bad_field"),
    ("session", "küche", "bad_field"),
    ("session", 5, "bad_field"),
    ("session", b"raw", "bad_field"),
    ("seq", -1, "bad_field"),
    ("seq", 2**31, "bad_field"),
    ("seq", HUGE, "bad_field"),
    ("seq", NEG_HUGE, "bad_field"),
    ("seq", 1.5, "bad_field"),
    ("seq", NAN, "bad_field"),
    ("seq", True, "bad_field"),
    ("seq", "0", "bad_field"),
    ("rate", 0, "bad_rate"),
    ("rate", 1, "bad_rate"),
    ("rate", 7999, "bad_rate"),
    ("rate", 192_001, "bad_rate"),
    ("rate", -16000, "bad_rate"),
    ("rate", HUGE, "bad_rate"),
    ("rate", NEG_HUGE, "bad_rate"),
    ("rate", 16000.0, "bad_field"),
    ("rate", NAN, "bad_field"),
    ("rate", INF, "bad_field"),
    ("rate", None, "bad_field"),
    ("channels", 0, "bad_field"),
    ("channels", 9, "bad_field"),
    ("channels", 2**40, "bad_field"),
    ("channels", 1.0, "bad_field"),
    ("channels", 3, "bad_audio"),  # 640 bytes is not whole 3-channel frames
    ("format", "mp3", "unsupported_format"),
    ("format", "", "unsupported_format"),
    ("format", "S16LE", "unsupported_format"),
    ("format", 1, "bad_field"),
    ("pcm", "abc", "bad_field"),
    ("pcm", [1, 2], "bad_field"),
    ("pcm", None, "bad_field"),
    ("pcm", b"\x00", "bad_audio"),
    ("end", 1, "bad_field"),
    ("end", "true", "bad_field"),
    ("end", None, "bad_field"),
    ("topic", "a/b", "bad_field"),
    ("topic", "+", "bad_field"),
    ("topic", "x" * 65, "bad_field"),
    ("topic", 5, "bad_field"),
    ("lang", "EN", "bad_field"),
    ("lang", 7, "bad_field"),
    ("ts", NAN, "bad_field"),
    ("ts", INF, "bad_field"),
    ("ts", "now", "bad_field"),
    ("ts", True, "bad_field"),
]
REQUIRED = ["v", "session", "seq", "rate", "channels", "format", "pcm", "end"]
# Device levels the broker accepts in a topic but the contract refuses.
WEIRD_DEVICES = [
    "küche",
    "厨房",
    "living room",
    "🎤",
    "-lead",
    "_lead",
    ".",
    "a" * 65,
    "a" * 1000,
    "kitchen/left",
    "a//b",
    "/",
    "$SYS",
    "tab\u00a0nbsp",
    "x" * 40 + "é" * 40,
]
UNANSWERABLE = "u" * 65_520  # its error topic would pass MQTT's 65,535-byte limit


def _chunk(session_id: str, /, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "v": 1,
        "session": session_id,
        "seq": 0,
        "rate": 16000,
        "channels": 1,
        "format": "s16le",
        "pcm": b"\x00\x00" * 320,
        "end": True,
    }
    data.update(changes)
    return data


def _pack(data: object) -> bytes:
    return msgpack.packb(data, use_bin_type=True)


def _one_hertz_wav() -> bytes:
    """A float WAV claiming 1 Hz: 100 samples would be 100 s (past max_file_s)."""
    data = np.full(100, 0.1, "<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, 1, 4, 4, 32)
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


class Fuzzer:
    """Makes the cases from one seeded RNG; every session id and device is unique to it."""

    def __init__(self, seed: int, prefix: str) -> None:
        self.rng = random.Random(seed)
        self.prefix = prefix
        self.n = 0
        # Sessions that stay open a while (no end: idle timeout; seq 3: reorder wait), at
        # most 2 per device, so device_max_sessions (4) never refuses a valid chunk here.
        self.open_sessions: Counter[str] = Counter()

    def _session(self) -> str:
        self.n += 1
        return f"fz{self.n}"

    def chunk_case(self, device: str, *, hot: bool) -> Case:
        rng, topic = self.rng, f"audio/{device}/chunk"
        roll = rng.random()
        session = self._session()
        if roll < 0.10:
            payload = rng.randbytes(rng.randint(1, 300))
            return Case(topic, payload, device, ANY)
        if roll < 0.13:
            return Case(topic, b"", device, "bad_payload")
        if roll < 0.23:
            whole = _pack(_chunk(session, pcm=rng.randbytes(640)))
            return Case(topic, whole[: rng.randrange(len(whole))], device, "bad_payload")
        if roll < 0.26:
            value = rng.choice([[1, 2], "chunk", 7, None, 1.5, HUGE, NAN])
            return Case(topic, _pack(value), device, "bad_payload")
        if roll < 0.30:
            data = _chunk(session)
            del data[rng.choice(REQUIRED)]
            return Case(topic, _pack(data), device, "bad_field")
        if roll < 0.55:
            key, fault, code = rng.choice(FIELD_FAULTS)
            return Case(topic, _pack(_chunk(session, **{key: fault})), device, code)
        if roll < 0.60:
            bad = rng.choice([NAN, INF, -INF])
            pcm = np.full(160, bad, "<f4").tobytes()
            return Case(topic, _pack(_chunk(session, format="f32le", pcm=pcm)), device, "bad_audio")
        if roll < 0.63:
            size = rng.randint(MAX_CHUNK_BYTES + 1, MAX_CHUNK_BYTES + 2000)
            return Case(topic, rng.randbytes(size), device, "too_large")
        # valid: each chunk its own session, answered by its final
        rate = rng.choice([8000, 16000, 22050, 44100, 48000, 192000])
        channels = rng.choice([1, 1, 2, 8])
        fmt = rng.choice(["s16le", "f32le"])
        width = 2 if fmt == "s16le" else 4
        frames = rng.randint(0, 160)
        pcm = bytes(frames * channels * width)
        extra: dict[str, object] = {}
        if rng.random() < 0.3:
            extra = {"topic": "fuzz", "lang": "auto", "ts": 1e300, "unknown": [1, {"x": None}]}
        lingers = not hot and self.open_sessions[device] < 2 and rng.random() < 0.3
        open_ended = lingers and rng.random() < 0.5  # no end: it must end by idle timeout
        seq = 3 if lingers and not open_ended else 0  # 3: held for 0-2, flushed after end
        self.open_sessions[device] += lingers
        data = _chunk(session, rate=rate, channels=channels, format=fmt, pcm=pcm, seq=seq, **extra)
        data["end"] = not open_ended
        return Case(topic, _pack(data), device, FINAL, session)

    def raw_case(self, device: str) -> Case:
        rng, topic = self.rng, f"audio/{device}/raw"
        roll = rng.random()
        if roll < 0.4:
            return Case(topic, rng.randbytes(2 * rng.randint(0, 800) + 1), device, "bad_audio")
        if roll < 0.45:
            size = MAX_CHUNK_BYTES + 1 + rng.randint(0, 1000)
            return Case(topic, bytes(size), device, "too_large")
        # valid raw audio: near-silence (a quiet room), taken without a word
        noise = np.asarray([rng.gauss(0, 8) for _ in range(rng.randint(0, 800))])
        return Case(topic, noise.astype("<i2").tobytes(), device, NOTHING)

    def file_case(self, index: int) -> Case:
        device = f"{self.prefix}-file-{index}"  # one file per device: no session limit in play
        topic = f"audio/{device}/file"
        payload, code = self.rng.choice(
            [
                (b"", "decode_failed"),
                (b"this is not audio" * 20, "decode_failed"),
                (b"RIFF\x10\x00\x00\x00WAVEfmt garbage", "decode_failed"),
                (_one_hertz_wav(), "too_large"),
                (bytes(MAX_FILE_BYTES + 1), "too_large"),
            ]
        )
        return Case(topic, payload, device, code)

    def weird_case(self) -> Case:
        rng = self.rng
        roll = rng.random()
        if roll < 0.05:
            return Case("audio/x", rng.randbytes(8), "", "bad_device")  # too few levels
        if roll < 0.10:
            kind = rng.choice(["chunk", "raw", "file"])
            return Case(f"audio//{kind}", rng.randbytes(8), "", "bad_device")
        name = rng.choice(WEIRD_DEVICES)
        kind = rng.choice(["chunk", "chunk", "raw", "file"])
        return Case(f"audio/{name}/{kind}", rng.randbytes(rng.randint(0, 64)), name, "bad_device")

    def cases(self) -> list[Case]:
        rng = self.rng
        cold = [f"{self.prefix}-c{i}" for i in range(COLD_DEVICES)]
        hot = [f"{self.prefix}-hot{i}" for i in range(HOT_DEVICES)]
        singles: list[Case] = []
        for _ in range(7000):
            device = rng.choice(cold)
            roll = rng.random()
            if roll < 0.75:
                singles.append(self.chunk_case(device, hot=False))
            elif roll < 0.93:
                singles.append(self.raw_case(device))
            elif roll < 0.95:
                singles.append(Case(f"audio/{device}/stream", b"later", device, NOTHING))
            else:
                singles.append(self.weird_case())
        singles += [self.weird_case() for _ in range(600)]
        singles += [self.file_case(i) for i in range(60)]
        singles.append(Case(f"audio/{UNANSWERABLE}/raw", b"\x00", UNANSWERABLE, NOTHING))
        rng.shuffle(singles)
        # The hot devices' messages come in runs, each well past the 100-message burst.
        runs = [
            [self.chunk_case(device, hot=True) for _ in range(HOT_RUN)]
            for device in hot
            for _ in range(4)
        ]
        rng.shuffle(runs)
        out: list[Case] = []
        step = len(singles) // (len(runs) + 1)
        for i, run in enumerate(runs):
            out += singles[i * step : (i + 1) * step] + run
        out += singles[len(runs) * step :]
        return out


# --- the test ---------------------------------------------------------------------------------


def _answered(h: Harness, expected_finals: set[str], hot: set[str]) -> int:
    """Messages answered so far: errors, dropped counts, finals of fuzz sessions."""
    errors = sum(
        len(reports)
        if device not in hot
        else sum(1 if e.dropped is None else e.dropped for e in reports)
        for device, reports in list(h.errors.items())
    )
    finals = sum(1 for s in expected_finals if (r := h.results.get(s)) and r.final is not None)
    return errors + finals


async def test_ten_thousand_malformed_messages_crash_nothing_and_each_is_answered(
    node: RunningNode, device: str
) -> None:
    cases = Fuzzer(SEED, device).cases()
    assert len(cases) >= 10_000
    hot = {c.device for c in cases if "-hot" in c.device}
    finals = {c.session for c in cases if c.expect == FINAL and c.session}
    silent = sum(1 for c in cases if c.expect == NOTHING)
    silent_before = [0]
    for case in cases:
        silent_before.append(silent_before[-1] + (case.expect == NOTHING))
    process = psutil.Process(node.process.pid)
    rss_before = process.memory_info().rss
    started = time.monotonic()
    async with harness(node.url) as h, connect(node.url) as pub:
        for start in range(0, len(cases), BATCH):
            for case in cases[start : start + BATCH]:
                await pub.publish(case.topic, case.payload, qos=0)
            sent = min(start + BATCH, len(cases))
            deadline = time.monotonic() + 3.0
            while sent - silent_before[sent] - _answered(h, finals, hot) > IN_FLIGHT:
                if time.monotonic() > deadline:
                    break  # rate_limited counts arrive a second late: do not wait on them
                await asyncio.sleep(0.02)
        publish_s = time.monotonic() - started
        # Wait for everything owed: errors (files take ffmpeg), finals after the idle
        # timeout, the last rate_limited reports a second after the last drop.
        owed = len(cases) - silent
        deadline = time.monotonic() + 30.0
        while _answered(h, finals, hot) < owed and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # anything beyond what is owed would show up now
        answered_s = time.monotonic() - started
        rss_after = process.memory_info().rss
        statuses_before_clip = list(h.statuses)
        # in real time: 50 chunks/s is what the fuzz node's device limit allows
        clip = load(AUDIO / "commands" / "utt013.wav")
        result = await h.session(device, clip, realtime=True)
        print(
            f"fuzz: {len(cases)} messages published in {publish_s:.1f} s, all answered after"
            f" {answered_s:.1f} s; node RSS {rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MB"
        )
        # Shut the node down while listening: its draining status counts open sessions.
        assert node.process.poll() is None, node.log()[-3000:]
        code = await asyncio.to_thread(node.stop)
        await asyncio.sleep(0.5)

    assert code == 0, node.log()[-3000:]
    _check_answers(cases, h, hot, device)
    assert result.session in h.results
    unexpected = [s for s in h.results if s not in finals | {result.session}]
    assert all(s.startswith("raw-") for s in unexpected), unexpected[:5]
    assert statuses_before_clip and statuses_before_clip[-1].state == "ready"
    assert rss_after - rss_before < 100 * 2**20
    assert result.final is not None and "capital" in result.final.text.lower()
    assert not result.final.incomplete and device not in h.errors
    draining = [s for s in h.statuses if s.state == "draining"]
    assert draining and draining[0].sessions == 0, "sessions were left open"
    assert not [r for r in h.results.values() if r.final and r.final.endpoint == "shutdown"]
    log = node.log()
    assert "Traceback" not in log and "handling a message" not in log
    assert "cannot answer a device named 65520 chars" in log


def _check_answers(cases: list[Case], h: Harness, hot: set[str], clip_device: str) -> None:
    expected: dict[str, list[str]] = defaultdict(list)
    for case in cases:
        if case.expect not in (FINAL, NOTHING):
            expected[case.device].append(case.expect)
    finals = {c.session: c.device for c in cases if c.expect == FINAL and c.session}
    got_finals = Counter(finals[s] for s, r in h.results.items() if s in finals and r.final)
    sent = Counter(c.device for c in cases)
    for device in sorted(set(sent) | set(h.errors)):
        if device == clip_device:
            continue
        reports = h.errors.get(device, [])
        if device in hot:
            # Rate-limited: per device, every message processed, refused or counted dropped.
            dropped = sum(e.dropped or 0 for e in reports if e.code == ErrorCode.RATE_LIMITED)
            own = [e for e in reports if e.code != ErrorCode.RATE_LIMITED]
            print(
                f"{device}: {sent[device]} sent, {got_finals[device]} finals,"
                f" {len(own)} errors, {dropped} dropped in {len(reports) - len(own)} reports"
            )
            assert dropped > 0, f"{device} was never throttled"
            assert len(own) + got_finals[device] + dropped == sent[device], device
            continue
        codes = [e.code for e in reports]
        assert ErrorCode.RATE_LIMITED not in codes, f"{device} was throttled"
        assert len(codes) == len(expected[device]), (device, Counter(codes), expected[device])
        fixed = Counter(code for code in expected[device] if code != ANY)
        assert not fixed - Counter(codes), (device, Counter(codes), fixed)
    missing = [s for s, device in finals.items() if device not in hot and s not in h.results]
    assert not missing, f"{len(missing)} valid sessions got no final"
    for session in finals:
        result = h.results.get(session)
        assert result is None or result.final is not None
    assert UNANSWERABLE not in h.errors
