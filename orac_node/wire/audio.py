"""Audio in: ``audio/<device>/chunk`` (msgpack), ``raw`` (bare PCM) and ``file``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self

import msgpack

from orac_node.errors import ContractError
from orac_node.wire.base import (
    LANG_RE,
    NAME_RE,
    PROTOCOL_VERSION,
    ErrorCode,
    finite_number,
    is_valid_name,
    optional,
    require,
    session_field,
)

SAMPLE_RATE = 16_000
"""Rate of everything after ingest: whisper.cpp and the VAD both want 16 kHz."""
AUDIO_FILTER = "audio/#"
"""The node subscribes to all of audio/ (one subscription, so no message arrives
twice) and so also sees, and can answer, a device name of several levels."""
# Rates a real microphone or codec produces; anything outside is a bug upstream.
MIN_RATE, MAX_RATE = 8_000, 192_000
MAX_CHANNELS = 8
MAX_SEQ = 2**31 - 1


class AudioKind(StrEnum):
    """The three ways audio enters the node (last level of the audio topic)."""

    CHUNK = "chunk"
    RAW = "raw"
    FILE = "file"


class AudioFormat(StrEnum):
    """Sample encodings accepted in :attr:`AudioChunk.format`."""

    S16LE = "s16le"
    F32LE = "f32le"

    @property
    def sample_width(self) -> int:
        """Bytes per sample."""
        return 2 if self is AudioFormat.S16LE else 4


def audio_topic(device: str, kind: AudioKind = AudioKind.CHUNK) -> str:
    """Topic a satellite publishes audio on."""
    return f"audio/{device}/{kind.value}"


def audio_topic_device(topic: str) -> str:
    """The device part of ``audio/<device>/<kind>``, even an invalid one ("" if none).

    Replies to a malformed message go to this device's error topic.
    """
    parts = topic.split("/")
    return "/".join(parts[1:-1]) if len(parts) >= 3 else ""


def parse_audio_topic(topic: str) -> tuple[str, AudioKind | None]:
    """Split ``audio/<device>/<kind>`` into its device and kind.

    The kind is None for a last level this contract version does not define
    (left alone for future use). Raises :class:`ContractError`
    (``bad_device``) when the device is not one valid topic level.
    """
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != "audio":
        raise ContractError(ErrorCode.BAD_DEVICE, f"not an audio/<device>/<kind> topic: {topic!r}")
    device = audio_topic_device(topic)
    try:
        kind: AudioKind | None = AudioKind(parts[-1])
    except ValueError:
        kind = None
    if not is_valid_name(device):
        raise ContractError(
            ErrorCode.BAD_DEVICE,
            f"device {device!r} must be one topic level matching {NAME_RE.pattern}",
        )
    return device, kind


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """One msgpack message on ``audio/<device>/chunk``."""

    session: str
    seq: int
    rate: int
    channels: int
    format: AudioFormat
    pcm: bytes
    end: bool = False
    topic: str | None = None
    lang: str | None = None
    ts: float | None = None
    v: int = PROTOCOL_VERSION

    @property
    def frames(self) -> int:
        """Number of sample frames (samples per channel) in ``pcm``."""
        return len(self.pcm) // (self.format.sample_width * self.channels)

    def encode(self) -> bytes:
        """Serialize to the msgpack map satellites send."""
        data: dict[str, Any] = {
            "v": self.v,
            "session": self.session,
            "seq": self.seq,
            "rate": self.rate,
            "channels": self.channels,
            "format": self.format.value,
            "pcm": self.pcm,
            "end": self.end,
        }
        for key in ("topic", "lang", "ts"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return msgpack.packb(data, use_bin_type=True)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        """Parse and validate a chunk; raise :class:`ContractError` on any fault."""
        try:
            data = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        # TypeError: a map key that is itself a map or array (unhashable).
        except (
            ValueError,
            TypeError,
            msgpack.ExtraData,
            msgpack.FormatError,
            msgpack.StackError,
        ) as exc:
            raise ContractError(ErrorCode.BAD_PAYLOAD, f"not a msgpack message: {exc}") from exc
        if not isinstance(data, dict):
            raise ContractError(ErrorCode.BAD_PAYLOAD, "chunk must be a msgpack map")
        version = require(data, "v", int)
        if version != PROTOCOL_VERSION:
            raise ContractError(ErrorCode.UNSUPPORTED_VERSION, f"v={version}, this node speaks 1")
        session = session_field(data)
        seq = require(data, "seq", int)
        if not 0 <= seq <= MAX_SEQ:
            raise ContractError(ErrorCode.BAD_FIELD, f"seq {seq} out of range")
        rate = require(data, "rate", int)
        if not MIN_RATE <= rate <= MAX_RATE:
            raise ContractError(ErrorCode.BAD_RATE, f"rate {rate} Hz outside {MIN_RATE}-{MAX_RATE}")
        channels = require(data, "channels", int)
        if not 1 <= channels <= MAX_CHANNELS:
            raise ContractError(ErrorCode.BAD_FIELD, f"channels {channels} outside 1-8")
        try:
            fmt = AudioFormat(require(data, "format", str))
        except ValueError:
            raise ContractError(
                ErrorCode.UNSUPPORTED_FORMAT, f"format {data['format']!r}: use s16le or f32le"
            ) from None
        pcm = require(data, "pcm", bytes)
        if len(pcm) % (fmt.sample_width * channels):
            raise ContractError(ErrorCode.BAD_AUDIO, "pcm length is not a whole number of frames")
        end = require(data, "end", bool)
        topic = optional(data, "topic", str)
        if topic is not None and not is_valid_name(topic):
            raise ContractError(ErrorCode.BAD_FIELD, f"topic {topic!r} is not a valid name")
        lang = optional(data, "lang", str)
        if lang is not None and not LANG_RE.fullmatch(lang):
            raise ContractError(ErrorCode.BAD_FIELD, f"lang {lang!r} is not a language code")
        return cls(
            session=session,
            seq=seq,
            rate=rate,
            channels=channels,
            format=fmt,
            pcm=pcm,
            end=end,
            topic=topic,
            lang=lang,
            ts=finite_number(data, "ts"),
            v=version,
        )
