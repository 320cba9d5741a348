"""The code in a model's reply: the first fenced block, whatever its language tag, else the whole reply.

Why the first block and not the longest or the one tagged with the target's
language: the datasets ask for the code alone, and a model that wraps it in a
fence does so once; a second block is usually an example or a repetition.
Why an unclosed fence still counts: a reply cut at max_new_tokens loses its
closing fence, and the judge should see the code it did write, not the fence.
"""

from __future__ import annotations

import re

# An opening fence of 3+ backticks or tildes at a line start, an optional info string, then the body
# up to a closing fence of the same kind and at least the same length (CommonMark), or the end.
_OPEN = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)\n", re.MULTILINE)


def extract_code(text: str) -> str:
    """The body of the first fenced code block in `text`, or `text` itself when there is none."""
    m = _OPEN.search(text)
    if m is None:
        return text
    fence = m.group("fence")
    close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE)
    end = close.search(text, m.end())
    body = text[m.end(): end.start() if end else len(text)]
    return body[:-1] if body.endswith("\n") else body


def fence_language(text: str) -> str | None:
    """The info string's first word of the first fence (e.g. "rust"), or None without a fence."""
    m = _OPEN.search(text)
    if m is None:
        return None
    info = m.group("info").strip().split()
    return info[0] if info else ""
