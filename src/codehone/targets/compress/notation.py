"""The compress notation: an optional symbol map line, then the compressed code.

    notation := [map "\\n"] body
    map      := "~" [entry (" " entry)*]
    entry    := alias "=" name          (alias and name are identifiers of the language)

Example (Python)::

    ~a=configuration b=read_settings
    def b(path):
     a=load(path)
     return a

The body is code of the unit's language with every `alias` standing for its `name`. Aliases are
chosen fresh (no identifier of the original code is spelled like one), so expansion, the
reverse renaming, is exact. The map line is there only when it saves tokens, and always when
the body itself starts with "~" (a Python module can open with `~x`), so the first line is
never ambiguous. The map counts against the token ratio: the ratio is measured on this whole
text.

Why a map of identifiers only, and no string or idiom table: every entry must be undone by a
deterministic expander the judge trusts without trusting any model, and renaming identifier
positions of a syntax tree is the one rewrite that is exactly invertible in both Python
(`ast`) and tree-sitter languages. Everything else that saves tokens (comments, formatting,
blank lines, minimal indentation and spacing) is a rewrite that keeps the syntax tree itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MARK = "~"


class NotationError(ValueError):
    """The text is not in the notation; the message says where (one line)."""


@dataclass
class Notation:
    """A parsed notation: alias → original name, and the body."""

    body: str
    symbols: dict[str, str] = field(default_factory=dict)

    def render(self) -> str:
        if not self.symbols and not self.body.startswith(MARK):
            return self.body
        entries = " ".join(f"{a}={n}" for a, n in self.symbols.items())
        return f"{MARK}{entries}\n{self.body}"


def _is_identifier(s: str) -> bool:
    return s.isidentifier() or (s.replace("$", "_").isidentifier())  # GNU C allows `$` in names


def parse(text: str) -> Notation:
    """The notation in `text`; a `NotationError` for a malformed map line.

    The map's entries are split on single spaces and each must be `alias=name` with two
    identifiers, each alias once: a model's garbled map is an error here, at the parse stage,
    never a silent partial expansion.
    """
    if not text.startswith(MARK):
        return Notation(body=text)
    head, nl, body = text.partition("\n")
    symbols: dict[str, str] = {}
    for i, entry in enumerate(head[len(MARK):].split()):
        alias, eq, name = entry.partition("=")
        if not eq or not _is_identifier(alias) or not _is_identifier(name):
            raise NotationError(f"symbol map entry {i + 1} ({entry[:40]!r}) is not alias=name")
        if alias in symbols:
            raise NotationError(f"symbol map defines {alias!r} twice")
        symbols[alias] = name
    return Notation(body=body if nl else "", symbols=symbols)
