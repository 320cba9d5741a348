"""Python ⇄ notation, with the `ast` module: the reference compressor, the expander, the comparison.

Compression keeps the syntax tree and drops everything else: comments, blank lines, layout,
redundant parentheses (all gone in `ast`'s own unparser), indentation cut to one space a level,
and identifiers that repeat replaced by fresh one- or two-letter aliases where that saves
tokens after paying for the map. Equality is `ast.dump` without positions: the same program
to the compiler, docstrings and all.
"""

from __future__ import annotations

import ast
import keyword
import warnings
from collections import Counter
from collections.abc import Callable, Iterator

from .aliases import choose_aliases
from .notation import Notation
from .notation import parse as parse_notation

# Every place the Python grammar holds an identifier: (node type, field, how it is stored).
# "one": a str (or None); "many": a list of str; "dotted": "a.b.c", each part renamed.
_FIELDS: list[tuple[type, str, str]] = [
    (ast.Name, "id", "one"),
    (ast.Attribute, "attr", "one"),
    (ast.FunctionDef, "name", "one"),
    (ast.AsyncFunctionDef, "name", "one"),
    (ast.ClassDef, "name", "one"),
    (ast.arg, "arg", "one"),
    (ast.keyword, "arg", "one"),
    (ast.ExceptHandler, "name", "one"),
    (ast.alias, "name", "dotted"),
    (ast.alias, "asname", "one"),
    (ast.ImportFrom, "module", "dotted"),
    (ast.Global, "names", "many"),
    (ast.Nonlocal, "names", "many"),
    (ast.MatchAs, "name", "one"),
    (ast.MatchStar, "name", "one"),
    (ast.MatchMapping, "rest", "one"),
    (ast.MatchClass, "kwd_attrs", "many"),
]
for _n in ("TypeVar", "ParamSpec", "TypeVarTuple"):  # 3.12+
    if hasattr(ast, _n):
        _FIELDS.append((getattr(ast, _n), "name", "one"))
_BY_TYPE: dict[type, list[tuple[str, str]]] = {}
for _t, _f, _k in _FIELDS:
    _BY_TYPE.setdefault(_t, []).append((_f, _k))

# Never an alias: keywords, soft keywords, and `_` (a wildcard in `match`).
_RESERVED = frozenset(keyword.kwlist) | frozenset(getattr(keyword, "softkwlist", ())) | {"_"}


class CodecError(ValueError):
    """The code cannot be compressed or expanded; the message is one line."""


def parse(source: str) -> ast.Module:
    """`ast.parse` with its warnings silenced and every failure as a one-line `CodecError`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        line = getattr(e, "lineno", None)
        msg = getattr(e, "msg", None) or str(e)
        raise CodecError(f"does not parse as Python{f' (line {line})' if line else ''}: {msg}") from None


def dump(tree: ast.AST) -> str:
    """The tree without positions: what "the same program" means here."""
    return ast.dump(tree, include_attributes=False)


def _identifiers(tree: ast.AST) -> Iterator[tuple[ast.AST, str, str]]:
    for node in ast.walk(tree):
        for fname, kind in _BY_TYPE.get(type(node), ()):
            if getattr(node, fname, None) is not None:
                yield node, fname, kind


def names(tree: ast.AST) -> Counter:
    """How often each identifier occurs (dotted import names counted by part)."""
    c: Counter = Counter()
    for node, fname, kind in _identifiers(tree):
        v = getattr(node, fname)
        if kind == "one":
            c[v] += 1
        elif kind == "many":
            c.update(v)
        else:
            c.update(v.split("."))
    return c


def rename(tree: ast.AST, mapping: dict[str, str]) -> ast.AST:
    """Every identifier in `mapping` replaced, in place; the tree is returned."""
    def sub(v: str) -> str:
        return mapping.get(v, v)

    for node, fname, kind in _identifiers(tree):
        v = getattr(node, fname)
        if kind == "one":
            setattr(node, fname, sub(v))
        elif kind == "many":
            setattr(node, fname, [sub(x) for x in v])
        else:
            setattr(node, fname, ".".join(sub(x) for x in v.split(".")))
    return tree


class _TightUnparser(getattr(ast, "_Unparser", object)):  # type: ignore[misc]
    """`ast.unparse` with one space per indentation level instead of four."""

    def fill(self, text=""):
        self.maybe_newline()
        self.write(" " * self._indent + text)


def unparse_tight(tree: ast.AST) -> str:
    try:
        return _TightUnparser().visit(tree)
    except (AttributeError, TypeError):  # pragma: no cover - a Python without the private unparser
        return ast.unparse(tree)


def compress(source: str, count_tokens: Callable[[str], int]) -> str:
    """The reference notation of `source` (a `CodecError` if it does not parse)."""
    tree = parse(source)
    counts = names(tree)
    aliases = choose_aliases(counts, set(counts), count_tokens, _RESERVED)
    body = unparse_tight(rename(tree, aliases))
    note = Notation(body=body, symbols={a: n for n, a in aliases.items()})
    text = note.render()
    if aliases:  # a map that no longer pays for itself (the estimate was off) is dropped
        plain = Notation(body=unparse_tight(rename(parse(body), {a: n for n, a in aliases.items()}))).render()
        if count_tokens(plain) <= count_tokens(text):
            return plain
    return text


def expand(notation: str) -> str:
    """Source code from a notation: the map undone, laid out by `ast.unparse` (a `CodecError` if not)."""
    note = parse_notation(notation)
    tree = parse(note.body)
    return ast.unparse(rename(tree, note.symbols))


def same(original: str, expanded: str) -> bool:
    """Equal syntax trees, positions ignored."""
    return dump(parse(original)) == dump(parse(expanded))
