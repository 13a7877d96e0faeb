"""Endpointer: when an utterance is over, from VAD window probabilities (32 ms each)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from orac_node.audio.vad import WINDOW_S
from orac_node.config import EndpointSection
from orac_node.ingest.endpoint import HYSTERESIS, Endpointer, EndpointRules, EndReason

SPEECH, QUIET = 0.9, 0.05


def _rules(**changes: float) -> EndpointRules:
    # 0.3 s of silence = 10 windows (9 windows = 0.288 s); 0.16 s of speech = 5 windows
    values = {
        "threshold": 0.5,
        "silence_s": 0.3,
        "min_speech_s": 0.16,
        "max_duration_s": 30.0,
        "no_speech_timeout_s": 8.0,
    }
    values.update(changes)
    return EndpointRules(**values)


def _probs(*runs: tuple[float, int]) -> npt.NDArray[np.float32]:
    return np.concatenate([np.full(n, p, np.float32) for p, n in runs])


def _window_of_endpoint(ep: Endpointer, probs: npt.NDArray[np.float32]) -> tuple[EndReason, int]:
    """Feed one window at a time; the reason and the 1-based window it came on."""
    for i, p in enumerate(probs, start=1):
        reason = ep.update(np.array([p], np.float32))
        if reason is not None:
            return reason, i
    raise AssertionError("no endpoint")


def test_rules_from_config_convert_milliseconds() -> None:
    rules = EndpointRules.from_config(
        EndpointSection(silence_ms=700, min_speech_ms=160, max_duration_s=12, vad_threshold=0.4)
    )
    assert rules == EndpointRules(
        threshold=0.4,
        silence_s=0.7,
        min_speech_s=0.16,
        max_duration_s=12.0,
        no_speech_timeout_s=8.0,
    )


def test_silence_after_enough_speech_ends_on_the_exact_window() -> None:
    ep = Endpointer(_rules())
    reason, window = _window_of_endpoint(ep, _probs((SPEECH, 5), (QUIET, 50)))
    assert reason is EndReason.SILENCE
    assert window == 5 + 10
    assert ep.trailing_silence_s == pytest.approx(10 * WINDOW_S)
    assert ep.speech_end_s == pytest.approx(5 * WINDOW_S)


def test_update_stops_at_the_endpoint_window() -> None:
    ep = Endpointer(_rules())
    assert ep.update(_probs((SPEECH, 5), (QUIET, 50))) is EndReason.SILENCE
    assert ep.windows == 15
    assert ep.audio_s == pytest.approx(15 * WINDOW_S)


def test_silence_does_not_end_before_min_speech() -> None:
    ep = Endpointer(_rules())
    # a 4-window blip is under min speech (5 windows): the silence after it is not an end
    assert ep.update(_probs((SPEECH, 4), (QUIET, 100))) is None
    assert not ep.speech_started
    assert ep.speech_start_s is None
    assert ep.speech_s == pytest.approx(4 * WINDOW_S)
    # real speech later still endpoints on silence
    assert ep.update(_probs((SPEECH, 5), (QUIET, 9))) is None
    assert ep.update(_probs((QUIET, 1))) is EndReason.SILENCE


def test_interrupted_speech_runs_do_not_add_up_to_a_start() -> None:
    ep = Endpointer(_rules())
    assert ep.update(_probs((SPEECH, 3), (QUIET, 2), (SPEECH, 3), (QUIET, 40))) is None
    assert not ep.speech_started


def test_speech_start_is_where_the_qualifying_run_began() -> None:
    ep = Endpointer(_rules())
    ep.update(_probs((QUIET, 10), (SPEECH, 6)))
    assert ep.speech_started
    assert ep.speech_start_s == pytest.approx(10 * WINDOW_S)
    assert ep.speech_end_s == pytest.approx(16 * WINDOW_S)


def test_silence_resets_on_speech() -> None:
    ep = Endpointer(_rules())
    assert ep.update(_probs((SPEECH, 5), (QUIET, 9), (SPEECH, 1), (QUIET, 9))) is None
    assert ep.trailing_silence_s == pytest.approx(9 * WINDOW_S)
    assert ep.update(_probs((QUIET, 1))) is EndReason.SILENCE


def test_hysteresis_keeps_speech_going_below_threshold() -> None:
    between = 0.5 - HYSTERESIS / 2  # under the threshold, above threshold - hysteresis
    ep = Endpointer(_rules())
    assert ep.update(_probs((SPEECH, 5), (between, 40))) is None
    assert ep.speech_s == pytest.approx(45 * WINDOW_S)
    assert ep.trailing_silence_s == 0
    # dropping below threshold - hysteresis leaves speech; the same value then is silence
    assert ep.update(_probs((0.5 - HYSTERESIS - 0.05, 1), (between, 8))) is None
    assert ep.trailing_silence_s == pytest.approx(9 * WINDOW_S)
    assert ep.update(_probs((between, 1))) is EndReason.SILENCE


def test_hysteresis_does_not_start_speech() -> None:
    ep = Endpointer(_rules())
    assert ep.update(_probs((0.45, 100))) is None
    assert ep.speech_s == 0
    assert not ep.speech_started


def test_max_duration_ends_continuous_speech() -> None:
    ep = Endpointer(_rules(max_duration_s=1.0))
    reason, window = _window_of_endpoint(ep, _probs((SPEECH, 100)))
    assert reason is EndReason.MAX_DURATION
    assert window == 32  # 31 windows = 0.992 s, 32 = 1.024 s
    assert ep.speech_s == pytest.approx(32 * WINDOW_S)


def test_speech_timeout_when_nobody_speaks() -> None:
    ep = Endpointer(_rules(no_speech_timeout_s=1.0))
    reason, window = _window_of_endpoint(ep, _probs((QUIET, 100)))
    assert reason is EndReason.SPEECH_TIMEOUT
    assert window == 32
    assert ep.speech_s == 0


def test_no_speech_timeout_does_not_apply_once_speech_started() -> None:
    ep = Endpointer(_rules(no_speech_timeout_s=1.0, silence_s=0.0, max_duration_s=5.0))
    assert ep.update(_probs((SPEECH, 5), (QUIET, 100))) is None
    assert ep.update(_probs((QUIET, 100))) is EndReason.MAX_DURATION


def test_silence_zero_disables_silence_endpointing() -> None:
    ep = Endpointer(_rules(silence_s=0.0, max_duration_s=10.0))
    reason, window = _window_of_endpoint(ep, _probs((SPEECH, 10), (QUIET, 400)))
    assert reason is EndReason.MAX_DURATION
    assert window == 313  # ceil(10 / 0.032)


def test_speech_accounting_counts_every_speech_window() -> None:
    ep = Endpointer(_rules())
    probs = _probs((QUIET, 3), (SPEECH, 7), (QUIET, 3), (SPEECH, 2), (0.3, 1), (SPEECH, 4))
    assert ep.update(probs) is None
    assert ep.windows == 20
    assert ep.speech_windows == 13
    assert ep.speech_s == pytest.approx(13 * WINDOW_S)
    assert ep.audio_s == pytest.approx(20 * WINDOW_S)


def test_chunking_does_not_change_the_result() -> None:
    rng = np.random.default_rng(7)
    probs = rng.random(300).astype(np.float32)
    whole = Endpointer(_rules(no_speech_timeout_s=100.0))
    whole_reason = whole.update(probs)
    pieces = Endpointer(_rules(no_speech_timeout_s=100.0))
    piece_reason = None
    for piece in np.array_split(probs, 37):
        piece_reason = pieces.update(piece)
        if piece_reason is not None:
            break
    assert piece_reason == whole_reason
    assert (pieces.windows, pieces.speech_windows) == (whole.windows, whole.speech_windows)


def test_empty_update_changes_nothing() -> None:
    ep = Endpointer(_rules())
    assert ep.update(np.empty(0, np.float32)) is None
    assert ep.windows == 0
    assert ep.audio_s == 0
