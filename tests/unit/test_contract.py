"""Wire contract: every field of every payload round-trips, every fault has its code."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orac_node.errors import ContractError, OracNodeError
from orac_node.wire import (
    MAX_SEQ,
    PROTOCOL_VERSION,
    AudioChunk,
    AudioFormat,
    AudioKind,
    ErrorCode,
    ErrorReport,
    Final,
    NodeStatus,
    Partial,
    Segment,
    Word,
    audio_topic,
    audio_topic_device,
    decode_transcript,
    error_topic,
    error_topic_fits,
    is_valid_name,
    parse_audio_topic,
    status_topic,
    transcript_topic,
)

# --- helpers ---------------------------------------------------------------------------


def _valid_map(**changes: Any) -> dict[str, Any]:
    """A valid chunk as a plain msgpack map, with keys changed (or removed with ...)."""
    data: dict[str, Any] = {
        "v": 1,
        "session": "sess-1",
        "seq": 0,
        "rate": 16000,
        "channels": 1,
        "format": "s16le",
        "pcm": b"\x00\x00" * 4,
        "end": False,
    }
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def _pack(data: object) -> bytes:
    return msgpack.packb(data, use_bin_type=True)


def _code_of(payload: bytes) -> str:
    with pytest.raises(ContractError) as info:
        AudioChunk.decode(payload)
    return info.value.code


def _assert_json_keys(payload: bytes, obj: object) -> None:
    """The JSON carries exactly the dataclass's fields (no silently dropped field)."""
    assert dataclasses.is_dataclass(obj)
    keys = set(json.loads(payload))
    assert keys == {f.name for f in dataclasses.fields(obj)}


# --- topics ------------------------------------------------------------------------------


def test_topic_builders() -> None:
    assert audio_topic("kitchen") == "audio/kitchen/chunk"
    assert audio_topic("kitchen", AudioKind.RAW) == "audio/kitchen/raw"
    assert audio_topic("kitchen", AudioKind.FILE) == "audio/kitchen/file"
    assert transcript_topic("home_assistant") == "transcript/home_assistant"
    assert status_topic("orac-box") == "orac/node/orac-box/status"
    assert error_topic("kitchen") == "orac/device/kitchen/error"


@pytest.mark.parametrize("kind", list(AudioKind))
def test_parse_audio_topic_round_trips_builder(kind: AudioKind) -> None:
    assert parse_audio_topic(audio_topic("living-room.2", kind)) == ("living-room.2", kind)


@pytest.mark.parametrize(
    "topic",
    [
        "audio/kitchen",  # too few levels
        "audio/kitchen/chunk/extra",  # too many levels
        "video/kitchen/chunk",  # wrong root
        "audio/kitchen left/chunk",  # space in the device
        "audio//chunk",  # empty device
        "audio/+/chunk",  # wildcard as a device
        "audio/-kitchen/chunk",  # must start alphanumeric
        "audio/" + "k" * 65 + "/chunk",  # too long
    ],
)
def test_parse_audio_topic_rejects_as_bad_device(topic: str) -> None:
    with pytest.raises(ContractError) as info:
        parse_audio_topic(topic)
    assert info.value.code == ErrorCode.BAD_DEVICE


@pytest.mark.parametrize("kind", ["stream", "chunk2", ""])
def test_unknown_last_level_is_left_for_later_versions(kind: str) -> None:
    assert parse_audio_topic(f"audio/kitchen/{kind}") == ("kitchen", None)


@pytest.mark.parametrize(
    ("topic", "device"),
    [
        ("audio/kitchen/chunk", "kitchen"),
        ("audio/kitchen/left/chunk", "kitchen/left"),
        ("audio//chunk", ""),
        ("audio/kitchen", ""),
    ],
)
def test_audio_topic_device_keeps_the_raw_device_for_replies(topic: str, device: str) -> None:
    assert audio_topic_device(topic) == device


def test_name_rules() -> None:
    assert is_valid_name("a")
    assert is_valid_name("k" * 64)
    assert not is_valid_name("k" * 65)
    for bad in ("", "a b", "a/b", "#", "é", "_x"):
        assert not is_valid_name(bad), bad


def test_contract_error_is_an_orac_node_error() -> None:
    with pytest.raises(OracNodeError):
        AudioChunk.decode(b"\xc1")


# --- AudioChunk round trips ----------------------------------------------------------------


def test_audio_chunk_round_trips_every_field() -> None:
    chunk = AudioChunk(
        session="0f8c-uuid",
        seq=41,
        rate=44100,
        channels=2,
        format=AudioFormat.F32LE,
        pcm=bytes(range(16)),
        end=True,
        topic="home_assistant",
        lang="en-US",
        ts=1_732_400_000.125,
    )
    assert AudioChunk.decode(chunk.encode()) == chunk
    raw = msgpack.unpackb(chunk.encode(), raw=False)
    assert raw == {
        "v": 1,
        "session": "0f8c-uuid",
        "seq": 41,
        "rate": 44100,
        "channels": 2,
        "format": "f32le",
        "pcm": bytes(range(16)),
        "end": True,
        "topic": "home_assistant",
        "lang": "en-US",
        "ts": 1_732_400_000.125,
    }


def test_audio_chunk_optional_fields_are_omitted_when_none() -> None:
    chunk = AudioChunk(
        session="s", seq=0, rate=16000, channels=1, format=AudioFormat.S16LE, pcm=b"\x01\x02"
    )
    raw = msgpack.unpackb(chunk.encode(), raw=False)
    assert set(raw) == {"v", "session", "seq", "rate", "channels", "format", "pcm", "end"}
    decoded = AudioChunk.decode(chunk.encode())
    assert decoded == chunk
    assert (decoded.topic, decoded.lang, decoded.ts, decoded.end) == (None, None, None, False)


@pytest.mark.parametrize(("key", "value"), [("topic", "kitchen"), ("lang", "auto"), ("ts", 12.5)])
def test_audio_chunk_each_optional_field_alone(key: str, value: Any) -> None:
    plain = AudioChunk(
        session="s", seq=3, rate=16000, channels=1, format=AudioFormat.S16LE, pcm=b""
    )
    chunk = dataclasses.replace(plain, **{key: value})
    decoded = AudioChunk.decode(chunk.encode())
    assert getattr(decoded, key) == value
    assert decoded == chunk


def test_audio_chunk_null_optionals_and_int_ts_are_accepted() -> None:
    decoded = AudioChunk.decode(_pack(_valid_map(topic=None, lang=None, ts=1700000000)))
    assert decoded.topic is None and decoded.lang is None
    assert decoded.ts == 1_700_000_000.0 and isinstance(decoded.ts, float)


def test_audio_chunk_frames() -> None:
    chunk = AudioChunk(
        session="s", seq=0, rate=16000, channels=2, format=AudioFormat.F32LE, pcm=bytes(8 * 5)
    )
    assert chunk.frames == 5


# --- AudioChunk validation: one test per branch --------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xc1", b"\x92\x01", b"\x83\xa1v\x01", _pack(1) + b"\x00", b"\x91" * 5000],
    ids=["empty", "reserved-byte", "truncated-array", "truncated-map", "extra-data", "deep"],
)
def test_bad_msgpack_is_bad_payload(payload: bytes) -> None:
    assert _code_of(payload) == ErrorCode.BAD_PAYLOAD


@pytest.mark.parametrize("value", [[1, 2], "chunk", 7, None, b"bytes"])
def test_not_a_map_is_bad_payload(value: object) -> None:
    assert _code_of(_pack(value)) == ErrorCode.BAD_PAYLOAD


def test_map_with_unhashable_key_is_contract_error() -> None:
    # A msgpack map whose key is an array (0x81 fixmap, 0x90 empty array, value 1):
    # a hostile or buggy sender must get bad_payload, not crash the decoder.
    assert _code_of(b"\x81\x90\x01") == ErrorCode.BAD_PAYLOAD
    assert _code_of(b"\x81\x80\x01") == ErrorCode.BAD_PAYLOAD


@pytest.mark.parametrize("key", ["v", "session", "seq", "rate", "channels", "format", "pcm", "end"])
def test_missing_required_key_is_bad_field(key: str) -> None:
    assert _code_of(_pack(_valid_map(**{key: ...}))) == ErrorCode.BAD_FIELD


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("v", "1"),
        ("v", 1.0),
        ("session", 5),
        ("session", b"sess"),
        ("seq", "0"),
        ("seq", 0.0),
        ("rate", 16000.0),
        ("channels", "1"),
        ("format", 1),
        ("pcm", "\x00\x00"),
        ("pcm", [0, 0]),
        ("end", 0),
        ("end", "false"),
        ("topic", 5),
        ("lang", ["en"]),
        ("ts", "now"),
    ],
)
def test_wrong_type_is_bad_field(key: str, value: object) -> None:
    assert _code_of(_pack(_valid_map(**{key: value}))) == ErrorCode.BAD_FIELD


@pytest.mark.parametrize("key", ["v", "seq", "rate", "channels", "ts"])
def test_bool_is_not_accepted_as_number(key: str) -> None:
    assert _code_of(_pack(_valid_map(**{key: True}))) == ErrorCode.BAD_FIELD


@pytest.mark.parametrize("version", [0, 2, 99])
def test_unsupported_version(version: int) -> None:
    assert _code_of(_pack(_valid_map(v=version))) == ErrorCode.UNSUPPORTED_VERSION


@pytest.mark.parametrize("session", ["", "a b", "tab\there", "é", "x" * 129, "new\nline"])
def test_bad_session_is_bad_field(session: str) -> None:
    assert _code_of(_pack(_valid_map(session=session))) == ErrorCode.BAD_FIELD


@pytest.mark.parametrize("session", ["x", "x" * 128, "!~", "550e8400-e29b-41d4-a716-446655440000"])
def test_good_sessions_are_accepted(session: str) -> None:
    assert AudioChunk.decode(_pack(_valid_map(session=session))).session == session


@pytest.mark.parametrize(
    ("seq", "ok"), [(-1, False), (0, True), (MAX_SEQ, True), (MAX_SEQ + 1, False)]
)
def test_seq_range(seq: int, ok: bool) -> None:
    payload = _pack(_valid_map(seq=seq))
    if ok:
        assert AudioChunk.decode(payload).seq == seq
    else:
        assert _code_of(payload) == ErrorCode.BAD_FIELD


@pytest.mark.parametrize(
    ("rate", "ok"), [(0, False), (7999, False), (8000, True), (192000, True), (192001, False)]
)
def test_rate_range_is_bad_rate(rate: int, ok: bool) -> None:
    payload = _pack(_valid_map(rate=rate))
    if ok:
        assert AudioChunk.decode(payload).rate == rate
    else:
        assert _code_of(payload) == ErrorCode.BAD_RATE


@pytest.mark.parametrize(("channels", "ok"), [(0, False), (1, True), (8, True), (9, False)])
def test_channels_range(channels: int, ok: bool) -> None:
    payload = _pack(_valid_map(channels=channels, pcm=b"\x00\x00" * channels * 2))
    if ok:
        assert AudioChunk.decode(payload).channels == channels
    else:
        assert _code_of(payload) == ErrorCode.BAD_FIELD


@pytest.mark.parametrize("fmt", ["s24le", "S16LE", "mp3", ""])
def test_unknown_format_is_unsupported_format(fmt: str) -> None:
    assert _code_of(_pack(_valid_map(format=fmt))) == ErrorCode.UNSUPPORTED_FORMAT


@pytest.mark.parametrize(
    ("fmt", "channels", "n_bytes"),
    [("s16le", 1, 3), ("s16le", 2, 2), ("s16le", 2, 6), ("f32le", 1, 6), ("f32le", 2, 4)],
)
def test_partial_frames_are_bad_audio(fmt: str, channels: int, n_bytes: int) -> None:
    payload = _pack(_valid_map(format=fmt, channels=channels, pcm=bytes(n_bytes)))
    assert _code_of(payload) == ErrorCode.BAD_AUDIO


def test_empty_pcm_is_whole_frames() -> None:
    assert AudioChunk.decode(_pack(_valid_map(pcm=b""))).frames == 0


@pytest.mark.parametrize("topic", ["", "a/b", "+", "#", "with space", "-lead"])
def test_invalid_topic_is_bad_field(topic: str) -> None:
    assert _code_of(_pack(_valid_map(topic=topic))) == ErrorCode.BAD_FIELD


@pytest.mark.parametrize("lang", ["", "EN", "english", "e", "en_US", "en-", "auto "])
def test_invalid_lang_is_bad_field(lang: str) -> None:
    assert _code_of(_pack(_valid_map(lang=lang))) == ErrorCode.BAD_FIELD


@pytest.mark.parametrize("lang", ["en", "auto", "yue", "en-US", "zh-Hant"])
def test_valid_lang_is_accepted(lang: str) -> None:
    assert AudioChunk.decode(_pack(_valid_map(lang=lang))).lang == lang


@pytest.mark.parametrize("ts", [math.inf, -math.inf, math.nan])
def test_non_finite_ts_is_bad_field(ts: float) -> None:
    assert _code_of(_pack(_valid_map(ts=ts))) == ErrorCode.BAD_FIELD


# --- AudioChunk properties --------------------------------------------------------------------

_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True)
_langs = st.from_regex(r"auto|[a-z]{2,3}(-[A-Za-z]{2,4})?", fullmatch=True)


@st.composite
def _chunks(draw: st.DrawFn) -> AudioChunk:
    fmt = draw(st.sampled_from(list(AudioFormat)))
    channels = draw(st.integers(1, 8))
    frames = draw(st.integers(0, 40))
    return AudioChunk(
        session=draw(
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=128)
        ),
        seq=draw(st.integers(0, MAX_SEQ)),
        rate=draw(st.integers(8000, 192000)),
        channels=channels,
        format=fmt,
        pcm=draw(
            st.binary(
                min_size=frames * channels * fmt.sample_width,
                max_size=frames * channels * fmt.sample_width,
            )
        ),
        end=draw(st.booleans()),
        topic=draw(st.none() | _names),
        lang=draw(st.none() | _langs),
        ts=draw(st.none() | st.floats(allow_nan=False, allow_infinity=False)),
    )


@given(_chunks())
def test_any_valid_chunk_round_trips_exactly(chunk: AudioChunk) -> None:
    decoded = AudioChunk.decode(chunk.encode())
    assert decoded == chunk
    assert decoded.frames * chunk.channels * chunk.format.sample_width == len(chunk.pcm)


def _decode_or_contract_error(payload: bytes) -> None:
    try:
        result = AudioChunk.decode(payload)
    except ContractError as exc:
        code = exc.code
    else:
        assert isinstance(result, AudioChunk)
        return
    assert code in set(ErrorCode)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_decode_arbitrary_bytes_never_raises_anything_else(payload: bytes) -> None:
    _decode_or_contract_error(payload)


_msgpack_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
_msgpack_values = st.recursive(
    _msgpack_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers(-5, 5), inner, max_size=4)
    ),
    max_leaves=12,
)
_chunk_keys = st.sampled_from(
    ["v", "session", "seq", "rate", "channels", "format", "pcm", "end", "topic", "lang", "ts"]
)


@settings(max_examples=300)
@given(
    st.dictionaries(
        _chunk_keys | st.text(max_size=8) | st.integers(-(2**63), 2**64 - 1), _msgpack_values
    )
)
def test_decode_arbitrary_maps_never_raises_anything_else(data: dict[Any, Any]) -> None:
    _decode_or_contract_error(_pack(data))


@settings(max_examples=300)
@given(
    st.dictionaries(_chunk_keys, _msgpack_values, max_size=3),
    st.lists(_chunk_keys, max_size=3),
)
def test_decode_nearly_valid_maps_never_raises_anything_else(
    changes: dict[str, Any], removed: list[str]
) -> None:
    data = _valid_map(**changes)
    for key in removed:
        data.pop(key, None)
    _decode_or_contract_error(_pack(data))


# --- JSON payloads -----------------------------------------------------------------------------


def _partial() -> Partial:
    return Partial(
        node="orac-box",
        model="tiny.en",
        device="kitchen",
        session="s-1",
        topic="home_assistant",
        text="turn on the kit",
        stable="turn on",
        unstable="the kit",
        seq=7,
        audio_s=1.25,
        lag_ms=80.5,
        decode_ms=150.25,
        ts=1_732_400_000.5,
    )


def _final() -> Final:
    return Final(
        node="orac-box",
        model="base.en",
        device="kitchen",
        session="s-2",
        topic="general",
        text="Turn on the lights. ♪ café",
        language="en",
        confidence=0.8125,
        reason="silence",
        endpoint="silence",
        rejected="hallucination",
        audio_s=2.5,
        speech_s=1.75,
        chunks=125,
        gaps=2,
        duplicates=3,
        incomplete=True,
        latency_ms=312.5,
        decode_ms=180.0,
        queue_ms=12.5,
        ts=1_732_400_001.25,
        words=[Word("Turn", 0.25, 0.5, 0.9), Word("on", 0.5, 0.75, 0.875)],
        segments=[Segment(0.0, 1.5, "Turn on"), Segment(1.5, 2.5, "the lights.")],
        wake_word="computer",
        stable_revised=True,
    )


def test_partial_round_trips_every_field() -> None:
    partial = _partial()
    payload = partial.encode()
    _assert_json_keys(payload, partial)
    assert json.loads(payload)["type"] == "partial"
    assert json.loads(payload)["v"] == PROTOCOL_VERSION
    assert decode_transcript(payload) == partial
    assert decode_transcript(payload.decode()) == partial


def test_final_round_trips_every_field_including_words_and_segments() -> None:
    final = _final()
    payload = final.encode()
    _assert_json_keys(payload, final)
    data = json.loads(payload)
    assert data["type"] == "final"
    assert data["words"][1] == {"word": "on", "start": 0.5, "end": 0.75, "p": 0.875}
    assert data["segments"][0] == {"start": 0.0, "end": 1.5, "text": "Turn on"}
    assert "café" in payload.decode()  # readable with mosquitto_sub, not \u-escaped
    decoded = decode_transcript(payload)
    assert isinstance(decoded, Final)
    assert decoded == final
    assert all(isinstance(w, Word) for w in decoded.words)
    assert all(isinstance(s, Segment) for s in decoded.segments)


def test_final_without_words_or_rejection() -> None:
    final = dataclasses.replace(_final(), words=[], segments=[], rejected=None)
    decoded = decode_transcript(final.encode())
    assert decoded == final
    assert isinstance(decoded, Final) and decoded.rejected is None


@pytest.mark.parametrize("state", ["starting", "ready", "draining", "offline"])
def test_node_status_round_trips_every_field(state: Any) -> None:
    status = NodeStatus(
        node="orac-box",
        state=state,
        version="0.1.0",
        model="tiny.en",
        sessions=3,
        queued=2,
        ts=9.5,
        last_final_ms=21.5,
    )
    payload = status.encode()
    _assert_json_keys(payload, status)
    assert NodeStatus.decode(payload) == status
    assert NodeStatus.decode(payload.decode()) == status


def test_error_report_round_trips_every_field() -> None:
    report = ErrorReport(
        node="orac-box",
        device="kitchen",
        code=ErrorCode.BAD_RATE,
        message="rate 4000 Hz outside 8000-192000",
        ts=12.25,
        session="s-9",
        seq=17,
    )
    payload = report.encode()
    _assert_json_keys(payload, report)
    assert ErrorReport.decode(payload) == report
    minimal = ErrorReport(node="n", device="d", code="bad_payload", message="m", ts=0.5)
    assert ErrorReport.decode(minimal.encode()) == minimal


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"[1, 2]", ErrorCode.BAD_PAYLOAD),
        (b'{"type": "interim"}', ErrorCode.BAD_FIELD),
        (b'{"text": "hi"}', ErrorCode.BAD_FIELD),
        (b'{"type": "partial", "text": "missing the rest"}', ErrorCode.BAD_FIELD),
    ],
)
def test_decode_transcript_rejects(payload: bytes, code: ErrorCode) -> None:
    with pytest.raises(ContractError) as info:
        decode_transcript(payload)
    assert info.value.code == code


def test_a_newer_writers_fields_are_ignored_and_missing_ones_refused() -> None:
    # version 1 grows by optional fields: an older reader must read a newer node's finals
    data = json.loads(_partial().encode())
    data["added_in_a_later_release"] = {"any": ["thing"]}
    assert decode_transcript(json.dumps(data)) == _partial()
    del data["stable"]
    with pytest.raises(ContractError) as info:
        decode_transcript(json.dumps(data))
    assert info.value.code == ErrorCode.BAD_FIELD


# --- properties of the JSON decoders (what clients run on transcripts, status, errors) --------

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)
_transcript_keys = st.sampled_from(
    [f.name for f in dataclasses.fields(Final)] + [f.name for f in dataclasses.fields(Partial)]
)
_JSON_DECODERS = [decode_transcript, NodeStatus.decode, ErrorReport.decode]


def _only_contract_errors(payload: bytes | str) -> None:
    codes = []
    for decoder in _JSON_DECODERS:
        try:
            decoder(payload)
        except ContractError as exc:
            codes.append(exc.code)
    assert set(codes) <= set(ErrorCode)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_json_decoders_on_arbitrary_bytes_raise_only_contract_errors(payload: bytes) -> None:
    _only_contract_errors(payload)


@settings(max_examples=300)
@given(_json_values)
def test_json_decoders_on_arbitrary_json_raise_only_contract_errors(value: object) -> None:
    _only_contract_errors(json.dumps(value))


@settings(max_examples=300)
@given(
    st.sampled_from([_partial(), _final()]),
    st.dictionaries(_transcript_keys, _json_values, max_size=4),
    st.lists(_transcript_keys, max_size=3),
)
def test_nearly_valid_transcripts_raise_only_contract_errors(
    valid: Partial | Final, changes: dict[str, Any], removed: list[str]
) -> None:
    data = json.loads(valid.encode())
    data.update(changes)
    for key in removed:
        data.pop(key, None)
    _only_contract_errors(json.dumps(data))


@pytest.mark.parametrize("payload", [b"[" * 100_000, b'{"a":' * 50_000, b"1" * 5000])
def test_json_nesting_and_huge_numbers_are_bad_payload(payload: bytes) -> None:
    for decoder in _JSON_DECODERS:
        with pytest.raises(ContractError) as info:
            decoder(payload)
        assert info.value.code == ErrorCode.BAD_PAYLOAD


_finite = st.floats(allow_nan=False, allow_infinity=False)
_short = st.text(max_size=30)
_words = st.builds(Word, _short, _finite, _finite, _finite)
_segments = st.builds(Segment, _finite, _finite, _short)


@given(
    st.builds(
        Partial,
        node=_short,
        model=_short,
        device=_short,
        session=_short,
        topic=_short,
        text=_short,
        stable=_short,
        unstable=_short,
        seq=st.integers(0, 2**40),
        audio_s=_finite,
        lag_ms=_finite,
        decode_ms=_finite,
        ts=_finite,
    )
)
def test_any_partial_round_trips(partial: Partial) -> None:
    assert decode_transcript(partial.encode()) == partial


@given(
    st.builds(
        Final,
        node=_short,
        model=_short,
        device=_short,
        session=_short,
        topic=_short,
        text=st.text(max_size=200),
        language=_short,
        confidence=_finite,
        reason=_short,
        endpoint=_short,
        rejected=st.none() | _short,
        audio_s=_finite,
        speech_s=_finite,
        chunks=st.integers(0, 2**40),
        gaps=st.integers(0, 2**40),
        duplicates=st.integers(0, 2**40),
        incomplete=st.booleans(),
        latency_ms=_finite,
        decode_ms=_finite,
        queue_ms=_finite,
        ts=_finite,
        speculative=st.booleans(),
        words=st.lists(_words, max_size=5),
        segments=st.lists(_segments, max_size=3),
        wake_word=st.none() | _short,
        stable_revised=st.booleans(),
    )
)
def test_any_final_round_trips(final: Final) -> None:
    assert decode_transcript(final.encode()) == final


@given(
    st.builds(
        NodeStatus,
        node=_short,
        state=st.sampled_from(["starting", "ready", "draining", "offline"]),
        version=_short,
        model=_short,
        sessions=st.integers(0, 10**6),
        queued=st.integers(0, 10**6),
        ts=_finite,
        last_final_ms=st.none() | _finite,
    ),
    st.builds(
        ErrorReport,
        node=_short,
        device=st.text(max_size=100),
        code=st.sampled_from(list(ErrorCode)).map(str),
        message=st.text(max_size=100),
        ts=_finite,
        session=st.none() | _short,
        seq=st.none() | st.integers(0, MAX_SEQ),
        dropped=st.none() | st.integers(1, 10**9),
    ),
)
def test_any_status_and_error_report_round_trip(status: NodeStatus, report: ErrorReport) -> None:
    assert NodeStatus.decode(status.encode()) == status
    assert ErrorReport.decode(report.encode()) == report


def test_rate_limited_report_carries_the_drop_count() -> None:
    report = ErrorReport("n", "kitchen", ErrorCode.RATE_LIMITED, "over", 1.0, dropped=812)
    assert json.loads(report.encode())["dropped"] == 812
    assert ErrorReport.decode(report.encode()).dropped == 812


# --- properties of topics and msgpack extension types ------------------------------------------


@settings(max_examples=500)
@given(st.text(max_size=80))
def test_parse_audio_topic_raises_only_contract_errors(topic: str) -> None:
    try:
        device, _ = parse_audio_topic(topic)
    except ContractError as exc:
        code = exc.code
    else:
        assert is_valid_name(device)
        assert device == audio_topic_device(topic)
        return
    assert code == ErrorCode.BAD_DEVICE


@pytest.mark.parametrize(
    ("device", "fits"),
    [
        ("kitchen", True),
        ("k" * 65_517, True),
        ("k" * 65_518, False),
        ("é" * 32_758, True),
        ("é" * 32_759, False),
    ],
)
def test_error_topic_fits_mqtts_topic_limit(device: str, fits: bool) -> None:
    assert error_topic_fits(device) is fits
    assert (len(error_topic(device).encode()) <= 65_535) is fits


_ext_values = st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)) | st.builds(
    msgpack.Timestamp, st.integers(0, 2**32 - 1), st.integers(0, 999_999_999)
)


@settings(max_examples=300)
@given(
    st.dictionaries(_chunk_keys, _ext_values | _msgpack_values, max_size=4),
    st.dictionaries(_ext_values, _msgpack_values, max_size=2),
)
def test_decode_maps_with_extension_types_raise_only_contract_errors(
    changes: dict[str, Any], odd_keys: dict[Any, Any]
) -> None:
    data: dict[Any, Any] = _valid_map(**changes)
    data.update(odd_keys)
    _decode_or_contract_error(_pack(data))
