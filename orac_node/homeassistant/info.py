"""The ``info`` event a Wyoming client gets for ``describe``: what the node can transcribe.

Home Assistant offers a Wyoming STT entity the languages its models list, and
streams to it when ``supports_transcript_streaming`` is set.
"""

from __future__ import annotations

from wyoming.info import AsrModel, AsrProgram, Attribution, Info

from orac_node import __version__
from orac_node.decode.languages import AUTO
from orac_node.decode.modelpool import ModelPool

ORAC_NODE = Attribution(name="orac-node", url="")  # the project publishes no home page yet
WHISPER = Attribution(
    name="OpenAI Whisper, via whisper.cpp", url="https://github.com/ggml-org/whisper.cpp"
)


def node_info(pool: ModelPool) -> Info:
    """The node as one ASR program; its finals model first (what a session decodes with).

    ``auto`` is the contract's request for detection, not a language, so it is
    left out: Home Assistant matches the list against its pipeline's language.
    """
    names = [pool.finals, *(n for n in pool.names if n != pool.finals)]
    loaded = set(pool.loaded)
    models = [
        AsrModel(
            name=name,
            attribution=WHISPER,
            installed=name in loaded or name == pool.finals,
            description=f"Whisper {name}",
            version=None,
            languages=[code for code in pool.languages(name) if code != AUTO],
        )
        for name in names
    ]
    program = AsrProgram(
        name="orac-node",
        attribution=ORAC_NODE,
        installed=True,
        description="orac-node: streaming speech to text (whisper.cpp) for voice satellites",
        version=__version__,
        models=models,
        supports_transcript_streaming=True,
    )
    return Info(asr=[program])
