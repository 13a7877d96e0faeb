"""Whisper's vocabulary: GPT-2's byte-level token spelling, and where whisper.cpp puts its specials.

Whisper's BPE tokens are byte strings. Tokenizer files (Hugging Face's, and
CTranslate2's vocabulary.json/.txt copied from them) spell each byte as one
printable character: bytes that are printable Latin-1 stand for themselves,
the other 68 (controls, space, soft hyphen, ...) are moved to U+0100 and up in
byte order. So a space is "Ġ" and a token that is half of a UTF-8 character
is still spellable. whisper.cpp stores the raw bytes, so a conversion undoes
that spelling exactly, partial characters included.

whisper.cpp does not read the special tokens' ids from the file: it derives
them from n_vocab (see ``special_token_ids``). A converter checks the
source vocabulary against those ids, or the model would decode with its
task and timestamp tokens in the wrong places.
"""

from __future__ import annotations

from orac_node.errors import ModelError
from orac_node.models.layout import MULTILINGUAL_MIN_VOCAB

STORED_TOKENS = 50257
"""Tokens a ggml file stores: GPT-2's vocabulary size, the first 50257 ids. That is
the byte-level BPE tokens plus <|endoftext|> in English-only models (id 50256), and
the first 50257 tokens of the multilingual vocabulary, whose id 50256 is an empty
token, in multilingual ones. whisper.cpp's reference models (for-tests-ggml-*.bin)
store exactly these; it names every later id itself ([_SOT_], [_TT_42], ...)."""
LANGUAGE_TOKENS_BASE = 51765
"""whisper.cpp's language count is n_vocab - 51765 (minus one more when multilingual,
for the moved <|endoftext|>): 51864 - 51765 = 99 for English-only vocabularies."""
_DEFAULT_LANGUAGES = 98
"""whisper.cpp's default special ids are the English-only ones; in a multilingual
vocabulary its task, prompt and timestamp tokens sit (languages - 98) ids further on:
1 for the 99-language models, 2 for large-v3's 100."""


def _spelling() -> dict[str, int]:
    """Character -> byte of GPT-2's byte-level alphabet."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    to_char = {byte: chr(byte) for byte in printable}
    moved = (byte for byte in range(256) if byte not in to_char)
    to_char |= {byte: chr(256 + rank) for rank, byte in enumerate(moved)}
    return {char: byte for byte, char in to_char.items()}


BYTE_OF_CHAR = _spelling()
"""The 256 characters of the byte-level alphabet and the byte each one spells."""


def token_bytes(token: str) -> bytes:
    """The raw bytes a byte-level token spells; ModelError if it uses other characters."""
    try:
        return bytes(BYTE_OF_CHAR[char] for char in token)
    except KeyError as exc:
        raise ModelError(f"token {token!r} is not in GPT-2's byte-level spelling") from exc


def special_token_ids(n_vocab: int) -> dict[int, tuple[str, ...]]:
    """The ids whisper.cpp assigns to special tokens for ``n_vocab``, with their accepted names.

    Mirrors ``whisper_vocab``: fixed ids for English-only models; in
    multilingual ones <|endoftext|> and <|startoftranscript|> move up one and
    the task, prompt and timestamp tokens move by the number of languages
    beyond 98.
    """
    multilingual = n_vocab >= MULTILINGUAL_MIN_VOCAB
    languages = n_vocab - LANGUAGE_TOKENS_BASE - int(multilingual)
    shift = languages - _DEFAULT_LANGUAGES if multilingual else 0
    eot = 50256 + int(multilingual)
    return {
        eot: ("<|endoftext|>",),
        eot + 1: ("<|startoftranscript|>",),
        50357 + shift: ("<|translate|>",),
        50358 + shift: ("<|transcribe|>",),
        50359 + shift: ("<|startoflm|>",),
        50360 + shift: ("<|startofprev|>",),
        # OpenAI renamed it for large-v3; Hugging Face's vocabularies carry either name.
        50361 + shift: ("<|nocaptions|>", "<|nospeech|>"),
        50362 + shift: ("<|notimestamps|>",),
        50363 + shift: ("<|0.00|>",),
    }
