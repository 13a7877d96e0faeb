"""Audio decode: PCM conversion, streaming resampling, WAV and ffmpeg-decoded files."""

from __future__ import annotations

import io
import struct
import subprocess
import wave

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orac_node.audio import (
    Samples,
    StreamResampler,
    decode_file_bytes,
    decode_file_bytes_async,
    float_to_s16,
    pcm_to_float,
    read_wav_bytes,
    resample,
)
from orac_node.errors import AudioDecodeError, OracNodeError
from orac_node.wire import AudioFormat
from tests.conftest import AUDIO

CLIP = AUDIO / "commands" / "utt002.wav"


def _sine(rate: int, seconds: float, freq: float = 440.0, amp: float = 0.5) -> Samples:
    t = np.arange(round(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _wav(frames: bytes, *, rate: int, width: int, channels: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(frames)
    return buf.getvalue()


def _clip_samples() -> Samples:
    with wave.open(str(CLIP), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        frames = wav.readframes(wav.getnframes())
    return np.frombuffer(frames, "<i2").astype(np.float32) / np.float32(32768)


def _ffmpeg_encode(wav: bytes, *args: str) -> bytes:
    done = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            "pipe:0",
            *args,
            "pipe:1",
        ],
        input=wav,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def _best_correlation(
    a: npt.NDArray[np.float32], b: npt.NDArray[np.float32], max_lag: int
) -> float:
    """Pearson correlation of a and b at the shift (up to max_lag samples) that aligns them."""
    size = 1 << (a.size + b.size).bit_length()
    cross = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    lags = np.r_[np.arange(0, max_lag + 1), np.arange(-max_lag, 0)]
    lag = int(lags[np.argmax(np.r_[cross[: max_lag + 1], cross[-max_lag:]])])
    n = min(a.size, b.size) - 2 * max_lag
    x = a[max_lag : max_lag + n]
    y = b[max_lag + lag : max_lag + lag + n]
    return float(np.corrcoef(x, y)[0, 1])


# --- pcm_to_float ---------------------------------------------------------------------------


def test_s16le_scaling() -> None:
    pcm = np.array([-32768, 0, 16384, 32767], "<i2").tobytes()
    out = pcm_to_float(pcm, AudioFormat.S16LE, 1)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [-1.0, 0.0, 0.5, 32767 / 32768])


def test_f32le_passes_through_and_clips() -> None:
    values = np.array([-2.0, -0.25, 0.0, 0.75, 3.0], "<f4")
    out = pcm_to_float(values.tobytes(), AudioFormat.F32LE, 1)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [-1.0, -0.25, 0.0, 0.75, 1.0])


def test_stereo_is_downmixed_by_averaging() -> None:
    interleaved = np.array([0.5, -0.5, 1.0, 0.0, 0.25, 0.75], "<f4")  # L R L R L R
    out = pcm_to_float(interleaved.tobytes(), AudioFormat.F32LE, 2)
    np.testing.assert_allclose(out, [0.0, 0.5, 0.5])
    s16 = np.array([16384, 0, -32768, -32768], "<i2").tobytes()
    np.testing.assert_allclose(pcm_to_float(s16, AudioFormat.S16LE, 2), [0.25, -1.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_f32_is_rejected(bad: float) -> None:
    pcm = np.array([0.1, bad, 0.2, 0.3], "<f4").tobytes()
    with pytest.raises(AudioDecodeError):
        pcm_to_float(pcm, AudioFormat.F32LE, 2)
    with pytest.raises(OracNodeError):
        pcm_to_float(pcm, AudioFormat.F32LE, 1)


def test_float_to_s16_round_trips() -> None:
    samples = _sine(16000, 0.1)
    back = pcm_to_float(float_to_s16(samples), AudioFormat.S16LE, 1)
    np.testing.assert_allclose(back, samples, atol=1 / 16384)
    clipped = pcm_to_float(float_to_s16(np.array([2.0, -2.0], np.float32)), AudioFormat.S16LE, 1)
    np.testing.assert_allclose(clipped, [32767 / 32768, -1.0])  # s16's own range


# --- resampling -----------------------------------------------------------------------------


def test_stream_resampler_is_identity_at_16k() -> None:
    samples = _sine(16000, 0.1)
    out = StreamResampler(16000).process(samples)
    np.testing.assert_array_equal(out, samples)


@pytest.mark.parametrize("chunk", [441, 882, 1000, 4410])
def test_stream_resampler_matches_one_shot(chunk: int) -> None:
    rng = np.random.default_rng(3)
    source = _sine(44100, 2.0) + rng.normal(0, 0.05, 88200).astype(np.float32)
    resampler = StreamResampler(44100)
    pieces = [
        resampler.process(source[i : i + chunk], last=i + chunk >= source.size)
        for i in range(0, source.size, chunk)
    ]
    streamed = np.concatenate(pieces)
    whole = resample(source, 44100)
    assert streamed.dtype == np.float32
    assert abs(streamed.size - 32000) <= 16
    assert abs(streamed.size - whole.size) <= 16
    n = min(streamed.size, whole.size)
    np.testing.assert_allclose(streamed[:n], whole[:n], atol=1e-4)


def test_resample_keeps_the_tone() -> None:
    out = resample(_sine(48000, 1.0, freq=1000), 48000)
    assert out.size == 16000
    np.testing.assert_allclose(out[1000:15000], _sine(16000, 1.0, freq=1000)[1000:15000], atol=0.02)


# --- WAV -----------------------------------------------------------------------------------


def test_read_wav_16bit() -> None:
    values = np.array([0, 16384, -16384, 32767, -32768], "<i2")
    out = read_wav_bytes(_wav(values.tobytes(), rate=16000, width=2, channels=1))
    np.testing.assert_allclose(out, values / 32768)


def test_read_wav_8bit_unsigned() -> None:
    values = np.array([128, 255, 0, 192, 64], np.uint8)
    out = read_wav_bytes(_wav(values.tobytes(), rate=16000, width=1, channels=1))
    np.testing.assert_allclose(out, [0.0, 127 / 128, -1.0, 0.5, -0.5])


def test_read_wav_32bit() -> None:
    values = np.array([0, 2**30, -(2**31), 2**31 - 1], "<i4")
    out = read_wav_bytes(_wav(values.tobytes(), rate=16000, width=4, channels=1))
    np.testing.assert_allclose(out, [0.0, 0.5, -1.0, 1.0], atol=1e-6)


def test_read_wav_stereo_48k_is_downmixed_and_resampled() -> None:
    tone = _sine(48000, 1.0, freq=440, amp=0.4)
    left = (tone * 32767).astype("<i2")
    right = np.zeros_like(left)  # silent right channel: downmix halves the amplitude
    frames = np.column_stack([left, right]).reshape(-1).tobytes()
    out = read_wav_bytes(_wav(frames, rate=48000, width=2, channels=2))
    assert out.dtype == np.float32
    assert out.size == 16000
    expected = _sine(16000, 1.0, freq=440, amp=0.2)
    np.testing.assert_allclose(out[500:15500], expected[500:15500], atol=0.01)


def test_read_wav_rejects_non_wav() -> None:
    with pytest.raises(AudioDecodeError):
        read_wav_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(AudioDecodeError):
        read_wav_bytes(b"not a wav at all")


def test_read_wav_rejects_24bit() -> None:
    with pytest.raises(AudioDecodeError):
        read_wav_bytes(_wav(bytes(30), rate=16000, width=3, channels=1))


# --- whole files through ffmpeg ----------------------------------------------------------


@pytest.fixture(scope="module")
def clip_wav() -> bytes:
    return CLIP.read_bytes()


def test_decode_file_bytes_wav_is_exact(clip_wav: bytes) -> None:
    out = decode_file_bytes(clip_wav)
    np.testing.assert_array_equal(out, _clip_samples())


def test_decode_file_bytes_flac_is_lossless(clip_wav: bytes) -> None:
    flac = _ffmpeg_encode(clip_wav, "-f", "flac")
    assert flac[:4] == b"fLaC"
    out = decode_file_bytes(flac)
    reference = _clip_samples()
    assert out.dtype == np.float32
    assert out.size == reference.size
    np.testing.assert_allclose(out, reference, atol=1e-4)


@pytest.mark.parametrize(
    ("container", "args", "magic"),
    [
        ("ogg", ("-c:a", "libvorbis", "-f", "ogg"), b"OggS"),
        ("mp3", ("-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"), b""),
    ],
)
def test_decode_file_bytes_lossy(
    clip_wav: bytes, container: str, args: tuple[str, ...], magic: bytes
) -> None:
    encoded = _ffmpeg_encode(clip_wav, *args)
    assert encoded.startswith(magic), container
    out = decode_file_bytes(encoded)
    reference = _clip_samples()
    assert out.dtype == np.float32
    # codec padding/priming adds at most a few frames (mp3: 1152 samples each)
    assert abs(out.size - reference.size) <= 0.1 * reference.size, (out.size, reference.size)
    assert _best_correlation(reference, out, max_lag=2400) > 0.9


def test_decode_file_bytes_float_wav_falls_back_to_ffmpeg(clip_wav: bytes) -> None:
    float_wav = _ffmpeg_encode(clip_wav, "-c:a", "pcm_f32le", "-f", "wav")
    assert float_wav[:4] == b"RIFF"
    out = decode_file_bytes(float_wav)
    np.testing.assert_allclose(out, _clip_samples(), atol=1e-4)


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x00" * 64, b"this is not audio" * 20, b"RIFF\x10\x00\x00\x00WAVEfmt garbage"],
    ids=["empty", "zeros", "text", "broken-wav"],
)
def test_decode_file_bytes_garbage_is_rejected(garbage: bytes) -> None:
    with pytest.raises(AudioDecodeError):
        decode_file_bytes(garbage)


async def test_decode_file_bytes_async_matches_sync(clip_wav: bytes) -> None:
    flac = _ffmpeg_encode(clip_wav, "-f", "flac")
    np.testing.assert_array_equal(await decode_file_bytes_async(flac), decode_file_bytes(flac))
    np.testing.assert_array_equal(await decode_file_bytes_async(clip_wav), _clip_samples())


async def test_decode_file_bytes_async_garbage_is_rejected() -> None:
    with pytest.raises(AudioDecodeError):
        await decode_file_bytes_async(b"this is not audio" * 20)
    with pytest.raises(AudioDecodeError):
        await decode_file_bytes_async(b"")


# --- properties: raw PCM and file requests never fail with anything but AudioDecodeError ---------


@st.composite
def _pcm(draw: st.DrawFn) -> tuple[bytes, AudioFormat, int]:
    fmt = draw(st.sampled_from(list(AudioFormat)))
    channels = draw(st.integers(1, 8))
    frames = draw(st.integers(0, 64))
    size = frames * channels * fmt.sample_width
    return draw(st.binary(min_size=size, max_size=size)), fmt, channels


@settings(max_examples=300)
@given(_pcm())
def test_pcm_of_whole_frames_decodes_to_bounded_mono_or_bad_audio(
    case: tuple[bytes, AudioFormat, int],
) -> None:
    pcm, fmt, channels = case
    values = np.frombuffer(pcm, "<i2" if fmt is AudioFormat.S16LE else "<f4")
    try:
        out = pcm_to_float(pcm, fmt, channels)
    except AudioDecodeError:
        assert fmt is AudioFormat.F32LE and not np.isfinite(values).all()
        return
    assert out.dtype == np.float32
    assert out.size == len(pcm) // (fmt.sample_width * channels)
    assert np.isfinite(out).all() and np.abs(out).max(initial=0) <= 1.0


@settings(max_examples=200)
@given(st.binary(max_size=400).filter(lambda b: len(b) % 2 == 0))
def test_any_even_raw_payload_is_audio(payload: bytes) -> None:
    # What intake does with audio/<device>/raw once the byte count is even.
    out = pcm_to_float(payload, AudioFormat.S16LE, 1)
    assert out.size == len(payload) // 2
    assert np.isfinite(out).all() and np.abs(out).max(initial=0) <= 1.0


@st.composite
def _riff(draw: st.DrawFn) -> bytes:
    """WAV-shaped bytes with any header values: format, channels, width, rate, sizes."""
    # Mostly plausible PCM headers (which reach the sample conversion), some anything.
    fmt_tag = draw(st.just(1) | st.integers(0, 0xFFFF))
    channels = draw(st.integers(1, 2) | st.integers(0, 12))
    width = draw(st.sampled_from([1, 2, 4]) | st.integers(0, 6))
    rate = draw(
        st.sampled_from([0, 1, 7999, 8000, 16000, 192001, 2**32 - 1]) | st.integers(0, 10**6)
    )
    data = draw(st.binary(max_size=200))
    claimed = draw(st.sampled_from([len(data), len(data) + 1, 2**32 - 1]) | st.integers(0, 400))
    fmt = struct.pack(
        "<HHIIHH",
        fmt_tag,
        channels,
        rate,
        (rate * channels * width) & 0xFFFFFFFF,
        (channels * width) & 0xFFFF,
        width * 8,
    )
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", claimed) + data
    cut = draw(st.integers(0, len(body)))
    body = body if draw(st.booleans()) else body[:cut]
    return b"RIFF" + struct.pack("<I", len(body)) + body


@settings(max_examples=500)
@given(_riff() | st.binary(max_size=100), st.none() | st.floats(0.001, 5))
def test_read_wav_on_any_header_gives_bounded_audio_or_audio_decode_error(
    data: bytes, max_s: float | None
) -> None:
    try:
        out = read_wav_bytes(data, max_s)
    except AudioDecodeError:
        return
    assert out.dtype == np.float32 and np.isfinite(out).all()
    if max_s is not None:
        # the 8 kHz floor bounds the resampling factor: at most 2x plus filter slack
        assert out.size <= 16_000 * max_s + 64


@settings(max_examples=25)
@given(_riff() | st.binary(max_size=64))
def test_decode_file_bytes_on_any_input_gives_bounded_audio_or_audio_decode_error(
    data: bytes,
) -> None:
    # Runs ffmpeg for whatever the WAV reader refuses, hence few examples.
    try:
        out = decode_file_bytes(data, max_s=2.0)
    except AudioDecodeError:
        return
    assert out.dtype == np.float32 and out.size <= 2 * 16_000 + 64


def test_a_wav_claiming_one_hertz_cannot_blow_up_into_gigabytes() -> None:
    """4 KB of float samples at 1 Hz would be 1000 s (64 MB) at 16 kHz; the cap stops it."""
    fmt = struct.pack("<HHIIHH", 3, 1, 1, 4, 4, 32)
    data = np.full(1000, 0.25, "<f4").tobytes()
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
    wav = b"RIFF" + struct.pack("<I", len(body)) + body
    with pytest.raises(AudioDecodeError):
        read_wav_bytes(wav)  # rate outside 8-192 kHz: left to ffmpeg
    assert decode_file_bytes(wav, max_s=3.0).size == 3 * 16_000


def test_a_16_bit_recording_sent_as_s16_arrives_sample_for_sample() -> None:
    """What the SDK's satellite sends is what the file holds: streaming a recording and
    transcribing the file decode the same samples (beam search is sensitive to one step)."""
    every_value = np.arange(-32768, 32768, dtype=np.int16)
    as_read = every_value.astype(np.float32) / np.float32(32768)  # how a WAV file is read
    sent = float_to_s16(as_read)
    assert np.array_equal(np.frombuffer(sent, "<i2"), every_value)
    assert np.array_equal(pcm_to_float(sent, AudioFormat.S16LE, 1), as_read)


def test_floats_beyond_full_scale_are_clipped_when_sent() -> None:
    loud = np.array([1.0, -1.0, 1.5, -7.0, 0.49999 / 32768], dtype=np.float32)
    assert np.frombuffer(float_to_s16(loud), "<i2").tolist() == [32767, -32768, 32767, -32768, 0]
