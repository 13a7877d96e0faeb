"""A/B tests: which devices get the candidate, and the figures each variant collects."""

from __future__ import annotations

from orac_node.decode.experiment import (
    CANDIDATE,
    CHAMPION,
    REMEMBERED_FINALS,
    Experiment,
    ExperimentStats,
    in_share,
    words,
)

DEVICES = [f"satellite-{n}" for n in range(2000)]


def test_a_share_of_devices_is_stable_and_grows_only_by_adding_devices() -> None:
    tenth = {d for d in DEVICES if in_share(d, 0.1)}
    fifth = {d for d in DEVICES if in_share(d, 0.2)}
    assert 160 <= len(tenth) <= 240  # 10 % of 2000, give or take the hash's spread
    assert tenth < fifth  # raising the share keeps everyone who had the candidate
    assert tenth == {d for d in DEVICES if in_share(d, 0.1)}  # the same every time
    assert not any(in_share(d, 0.0) for d in DEVICES)
    assert all(in_share(d, 1.0) for d in DEVICES)


def test_shadow_mode_publishes_the_champion_for_everyone() -> None:
    split, shadow = Experiment("base", 0.5), Experiment("base", 1.0, shadow=True)
    assert {split.variant(d) for d in DEVICES} == {CHAMPION, CANDIDATE}
    assert {shadow.variant(d) for d in DEVICES} == {CHAMPION}


def _final(
    stats: ExperimentStats,
    n: int,
    variant: str,
    text: str,
    *,
    rejected: str | None = None,
    confidence: float = 0.8,
    latency_ms: float = 20.0,
) -> None:
    stats.final(
        device="d",
        session=f"s{n}",
        variant=variant,
        text=text,
        rejected=rejected,
        confidence=confidence,
        latency_ms=latency_ms,
        decode_ms=300.0,
    )


def test_the_report_counts_each_variant_and_core_retries() -> None:
    stats = ExperimentStats()
    assert stats.report() is None  # no test running
    stats.start(Experiment("base", 0.5))
    _final(stats, 1, CHAMPION, "Turn on the lights.", confidence=0.6)
    _final(stats, 2, CHAMPION, "", rejected="low_confidence", confidence=0.1)
    _final(stats, 3, CANDIDATE, "Turn on the lights.", confidence=0.9, latency_ms=40.0)
    stats.retranscribed("d", "s1", "turn on the lights")  # agrees (case, punctuation aside)
    stats.retranscribed("d", "s3", "Turn off the lights.")  # does not
    stats.retranscribed("d", "unknown", "anything")  # not a final of this test: ignored
    report = stats.report()
    assert report is not None
    champion, candidate = report["variants"][CHAMPION], report["variants"][CANDIDATE]
    assert (champion["finals"], champion["rejected"]) == (2, {"low_confidence": 1})
    assert champion["rejected_share"] == 0.5
    assert champion["confidence_p50"] == 0.6  # rejected finals' confidence is not text's
    assert (champion["retranscribed"], champion["retranscribe_agreement"]) == (1, 1.0)
    assert (candidate["latency_ms_p50"], candidate["retranscribe_agreement"]) == (40.0, 0.0)
    assert "shadow_figures" not in report


def test_shadow_figures_and_a_new_test_starts_from_zero() -> None:
    stats = ExperimentStats()
    stats.start(Experiment("base", 1.0, shadow=True))
    stats.shadow(published="Set a timer.", candidate="set a timer", rejected=False,
                 confidence=0.7, decode_ms=500.0)  # fmt: skip
    stats.shadow(published="Set a timer.", candidate="", rejected=True, confidence=0.1,
                 decode_ms=450.0)  # fmt: skip
    shadow = (stats.report() or {})["shadow_figures"]
    assert shadow == {
        "compared": 2,
        "agreement": 0.5,
        "candidate_rejected_share": 0.5,
        "candidate_confidence_p50": 0.7,
        "candidate_decode_ms_p50": 475.0,
    }
    stats.start(Experiment("base", 1.0, shadow=True))  # the same test: figures kept
    assert (stats.report() or {})["shadow_figures"]["compared"] == 2
    stats.start(Experiment("small", 0.1))
    assert (stats.report() or {})["variants"] == {}


def test_only_recent_finals_are_remembered_for_retries() -> None:
    stats = ExperimentStats()
    stats.start(Experiment("base", 0.5))
    for n in range(REMEMBERED_FINALS + 10):
        _final(stats, n, CHAMPION, "hello")
    stats.retranscribed("d", "s0", "hello")  # forgotten
    stats.retranscribed("d", f"s{REMEMBERED_FINALS + 9}", "hello")
    assert (stats.report() or {})["variants"][CHAMPION]["retranscribed"] == 1
    assert words("It's 5 o'clock, Bob!") == ["it's", "5", "o'clock", "bob"]
