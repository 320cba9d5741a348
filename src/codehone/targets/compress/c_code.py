"""C ⇄ notation, with tree-sitter: the reference compressor, the expander, the comparison.

The compressed body is the file's tokens (tree-sitter's leaves) with comments dropped and a
space only where two tokens would otherwise fuse (two word characters, or two operator
characters: `a - -b`, `x+ +y`). Preprocessor directives keep their own lines, because a newline
ends a directive. Literals and macro bodies (`preproc_arg`: raw text tree-sitter does not
parse) are kept verbatim. Identifiers (`identifier`, `field_identifier`, `type_identifier`,
`statement_identifier`) that repeat get fresh aliases where that saves tokens.

"The same program" is the same tree without trivia: the pre-order sequence of node types,
with the text of each leaf, comments left out and macro bodies compared without trailing
blanks. That is a syntactic check, as the `ast` comparison is for Python; it does not claim
the preprocessor would expand both the same way inside a macro body, which is kept verbatim.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator

from .aliases import choose_aliases
from .notation import Notation
from .notation import parse as parse_notation

IDENT_TYPES = frozenset({"identifier", "field_identifier", "type_identifier", "statement_identifier"})
# Nodes emitted as their source text: their insides are not separate tokens (string contents,
# `<stdio.h>`, a macro body).
ATOMIC = frozenset({"string_literal", "char_literal", "system_lib_string", "preproc_arg", "raw_string_literal"})
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")
_OPER = frozenset("+-*/%<>=&|!^.:#~?")
# Never an alias: C keywords (a `static` alias would change the parse).
_C_KEYWORDS = (
    "auto break case char const continue default do double else enum extern float for goto if inline int long "
    "register restrict return short signed sizeof static struct switch typedef union unsigned void volatile while "
    "_Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn _Static_assert _Thread_local asm "
    "bool true false NULL nullptr typeof alignas alignof constexpr static_assert thread_local")
_RESERVED = frozenset(_C_KEYWORDS.split())
MAX_DEPTH = 2000


class CodecError(ValueError):
    """The code cannot be compressed or expanded; the message is one line."""


@functools.lru_cache(maxsize=1)
def _parser():
    import tree_sitter_c
    from tree_sitter import Language, Parser

    return Parser(Language(tree_sitter_c.language()))


def parse(source: str):
    """The tree-sitter tree of `source`; a `CodecError` when it has syntax errors."""
    tree = _parser().parse(source.encode("utf-8", "surrogatepass"))
    if tree.root_node.has_error:
        raise CodecError("does not parse as C (tree-sitter reports a syntax error)")
    return tree


def _tokens(node) -> Iterator:
    """The leaves (atomic nodes counted as leaves), comments skipped, in source order."""
    stack = [node]
    while stack:
        n = stack.pop()
        if n.type == "comment":
            continue
        if n.child_count == 0 or n.type in ATOMIC:
            yield n
        else:
            stack.extend(reversed(n.children))


def _is_directive(leaf) -> bool:
    return leaf.type.startswith("#") or leaf.type == "preproc_directive"


def _text(leaf) -> str:
    t = leaf.text.decode("utf-8", "surrogatepass")
    return t.rstrip() if leaf.type == "preproc_arg" else t


def _emit(tree, source: bytes, mapping: dict[str, str]) -> str:
    """The tokens of `tree`, as tight as C allows, with identifiers in `mapping` renamed."""
    leaves = list(_tokens(tree.root_node))
    out: list[str] = []
    last = ""
    in_directive = False
    for i, leaf in enumerate(leaves):
        text = _text(leaf)
        if leaf.type in IDENT_TYPES:
            text = mapping.get(text, text)
        if _is_directive(leaf):
            if last and not last.endswith("\n"):
                out.append("\n")
            in_directive = True
        elif last and not last.endswith("\n") and (
                leaf.type == "preproc_arg"  # `#define X (1)` must not become `#define X(1)`
                or (last[-1] in _WORD and text[:1] in _WORD) or (last[-1] in _OPER and text[:1] in _OPER)):
            out.append(" ")
        out.append(text)
        last = text
        if in_directive:
            nxt = leaves[i + 1].start_byte if i + 1 < len(leaves) else len(source)
            if b"\n" in source[leaf.end_byte:nxt] or i + 1 == len(leaves):
                out.append("\n")
                last = "\n"
                in_directive = False
    return "".join(out)


def signature(tree) -> list[tuple[str, str | None]]:
    """The tree without trivia: pre-order (type, leaf text or None), comments left out."""
    out: list[tuple[str, str | None]] = []
    stack = [(tree.root_node, 0)]
    while stack:
        n, d = stack.pop()
        if n.type == "comment":
            continue
        if d > MAX_DEPTH:
            raise CodecError(f"nesting deeper than {MAX_DEPTH}")
        leaf = n.child_count == 0 or n.type in ATOMIC
        out.append((n.type, _text(n) if leaf else None))
        if not leaf:
            stack.extend((c, d + 1) for c in reversed(n.children))
    return out


def names(tree) -> Counter:
    return Counter(_text(n) for n in _tokens(tree.root_node) if n.type in IDENT_TYPES)


def compress(source: str, count_tokens: Callable[[str], int]) -> str:
    """The reference notation of `source` (a `CodecError` if it does not parse, or would not survive)."""
    data = source.encode("utf-8", "surrogatepass")
    tree = parse(source)
    counts = names(tree)
    want = signature(tree)
    aliases = choose_aliases(counts, set(counts), count_tokens, _RESERVED)
    for mapping in ([aliases] if aliases else []) + [{}]:
        text = Notation(body=_emit(tree, data, mapping), symbols={a: n for n, a in mapping.items()}).render()
        try:
            if signature(parse(expand(text))) == want:
                return text
        except CodecError:
            continue
    raise CodecError("the tight form parses differently from the original (kept out: not lossless)")


def expand(notation: str) -> str:
    """Source code from a notation: the map undone, in the tight layout (a `CodecError` if not C)."""
    note = parse_notation(notation)
    tree = parse(note.body)
    return _emit(tree, note.body.encode("utf-8", "surrogatepass"), note.symbols)


def same(original: str, expanded: str) -> bool:
    """Equal trees without trivia."""
    return signature(parse(original)) == signature(parse(expanded))
