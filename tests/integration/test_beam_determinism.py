"""Beam search gives the same tokens for the same audio, whatever was decoded before.

The PyPI build of whisper.cpp reseeds decoder 0's sampler only when a model
loads, so beam search (which draws its candidates from it) gave other text for
11 of the 20 commands after one other decode. The project's patched build
(orac_node/whisperbuild.py) reseeds it at every call. Here every second shared
command is decoded right after every other one of them, on one engine, and must
give the tokens a freshly loaded engine gives.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

from orac_node.audio import Samples, load_audio_file
from orac_node.decode.decoding import DecodeOptions, Decoding
from orac_node.decode.engine import WhisperEngine, seeded_sampling
from tests.conftest import AUDIO, MODEL

BEAM = DecodeOptions(beam_size=5)
CLIPS = sorted((AUDIO / "commands").glob("*.wav"))[::2]
"""Ten commands, 91 decodes in CI (all twenty took 381, nearly two minutes): with the
unpatched build half of all commands changed after a single other decode, so ten
catch it as surely."""


def every_pair_once(n: int) -> list[int]:
    """An order of 0..n-1 in which every ordered pair (a, b), a != b, stands side by side.

    An Eulerian circuit of the complete directed graph (Hierholzer): n(n-1)+1 items.
    """
    unused = {a: [b for b in range(n) if b != a] for a in range(n)}
    stack, circuit = [0], []
    while stack:
        here = stack[-1]
        if unused[here]:
            stack.append(unused[here].pop())
        else:
            circuit.append(stack.pop())
    return circuit[::-1]


def test_every_pair_once() -> None:
    order = every_pair_once(5)
    assert len(order) == 5 * 4 + 1
    assert set(itertools.pairwise(order)) == {(a, b) for a in range(5) for b in range(5) if a != b}


def _tokens(decoding: Decoding) -> list[tuple[str, float, float, float]]:
    return [(w.word, w.start, w.end, w.p) for w in decoding.words]


def test_the_installed_binding_is_the_patched_build() -> None:
    assert seeded_sampling(), "run `python -m orac_node.whisperbuild` (the setup does)"


def test_each_command_after_each_other_gives_the_same_tokens() -> None:
    audio: list[Samples] = [load_audio_file(path) for path in CLIPS]
    order = every_pair_once(len(audio))
    half = len(order) // 2
    # Two engines of one thread each, side by side (decoding releases the GIL), each
    # walking half of the order; the halves share one clip, so no pair is lost.
    with ThreadPoolExecutor(max_workers=2) as pool:
        fresh = list(pool.map(lambda clip: _engine().decode(clip, BEAM), audio))
        walks = pool.map(lambda part: _walk(audio, part), [order[: half + 1], order[half:]])
        decoded = [pair for walk in walks for pair in walk]
    differ = {
        f"{CLIPS[index].name}: {decoding.text!r} != {fresh[index].text!r}"
        for index, decoding in decoded
        if (decoding.text, _tokens(decoding)) != (fresh[index].text, _tokens(fresh[index]))
    }
    assert differ == set()


def _engine() -> WhisperEngine:
    return WhisperEngine(
        MODEL, threads=1
    )  # the thread count changes float rounding: one everywhere


def _walk(audio: list[Samples], order: list[int]) -> list[tuple[int, Decoding]]:
    engine = _engine()
    return [(index, engine.decode(audio[index], BEAM)) for index in order]
