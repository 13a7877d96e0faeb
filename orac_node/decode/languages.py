"""Which languages a model can be asked for, and the language a session decodes in.

A session's language is the satellite's ``lang``, else its topic's, else the
node's ``decode.language`` (ingest/intake.py). The wire contract accepts
region tags (``pt-BR``) because satellites have them; whisper.cpp knows only
the primary subtag (``pt``) and, given anything else, fails the whole decode.
So a session's language is checked when it opens, against the models that
will decode it, and the sender is told at once (``unsupported_language``)
instead of getting an empty final later:

- ``auto`` is always accepted: a multilingual model detects the language per
  utterance (the final carries it and its probability), an English-only one
  decodes English.
- A code whisper.cpp does not know is refused.
- A language other than English is refused when one of the models that would
  decode the session is English-only (whisper.cpp's ``*.en`` models, whose
  vocabulary has no language tokens): they would answer in English whatever
  was said, which is worse than a clear error.
"""

from __future__ import annotations

from functools import cache

import _pywhispercpp as pw

AUTO = "auto"
ENGLISH = "en"


@cache
def whisper_languages() -> tuple[str, ...]:
    """Every language code whisper.cpp knows (what a multilingual model can be asked for)."""
    return tuple(pw.whisper_lang_str(i) for i in range(pw.whisper_lang_max_id() + 1))


def model_languages(multilingual: bool) -> list[str]:
    """The languages a model offers: ``auto`` and all of whisper's, or English only."""
    return [AUTO, *whisper_languages()] if multilingual else [ENGLISH]


def whisper_code(language: str) -> str:
    """The code whisper.cpp takes for a contract language: ``pt-BR`` is ``pt``."""
    return language.split("-", 1)[0].lower()


def unsupported(language: str, models: dict[str, bool]) -> str | None:
    """Why ``language`` cannot be decoded by ``models`` (name: multilingual); None if it can."""
    if language == AUTO:
        return None
    code = whisper_code(language)
    if code not in whisper_languages():
        return f"language {language!r} is not one Whisper knows (see describe's languages)"
    english_only = sorted(name for name, multilingual in models.items() if not multilingual)
    if code != ENGLISH and english_only:
        return (
            f"model {english_only[0]} is English-only and cannot decode {language!r}; send"
            " lang en or auto, or give the topic a multilingual model"
        )
    return None
