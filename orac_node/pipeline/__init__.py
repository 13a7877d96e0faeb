"""The transcription pipeline: from an audio message to its partials and its one final.

pipeline.py  Pipeline: the data path, top-down (start reading here)
progress.py  Progress: partial window and speculative final of one open utterance
messages.py  building Partial and Final from an utterance and a decode
"""

from orac_node.pipeline.pipeline import Pipeline

__all__ = ["Pipeline"]
