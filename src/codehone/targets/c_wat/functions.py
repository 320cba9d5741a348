"""Find every C function definition in a file with tree-sitter-c, with its doc comment.

tree-sitter parses C without preprocessing, so definitions inside `#if`/`#ifdef`
branches and `extern "C"` blocks are all seen (which of them the compiler
actually builds is decided later, by compiling). Doc comments are the comment
block directly above a definition (`/** */`, `///`, or adjacent `//` lines);
a license banner is never a doc comment.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import tree_sitter_c
from tree_sitter import Language, Node, Parser


@dataclass
class CFunction:
    name: str
    signature: str
    doc: str | None
    source: str
    line: int  # 1-based line of the definition's first line
    end_line: int
    is_static: bool
    in_preproc: bool  # defined inside an #if/#ifdef/#else branch
    has_error: bool  # tree-sitter found a syntax error inside it
    conditions: list[str] = field(default_factory=list)  # macros whose definition would enable its branch


@functools.lru_cache(maxsize=1)
def _parser() -> Parser:
    return Parser(Language(tree_sitter_c.language()))


_LICENSE_WORDS = re.compile(
    r"copyright|\blicen[cs]e|spdx-license|permission is hereby granted|all rights reserved|"
    r"redistribution and use|warranty|public domain",
    re.IGNORECASE,
)


def _declarator_name(node: Node | None) -> str | None:
    """Walk a (possibly pointer/parenthesised) declarator down to the function's identifier."""
    while node is not None:
        if node.type == "function_declarator":
            inner = node.child_by_field_name("declarator")
            # int (*f(void))(int) : the function is the innermost function_declarator
            while inner is not None and inner.type in ("parenthesized_declarator", "pointer_declarator"):
                sub = inner.child_by_field_name("declarator") or (
                    inner.named_children[0] if inner.named_children else None
                )
                if sub is not None and sub.type == "function_declarator":
                    return _declarator_name(sub)
                inner = sub
            if inner is not None and inner.type == "identifier":
                return inner.text.decode("utf-8", "replace")
            return None
        if node.type in ("pointer_declarator", "parenthesized_declarator", "attributed_declarator"):
            node = node.child_by_field_name("declarator") or (node.named_children[0] if node.named_children else None)
            continue
        return None
    return None


def _clean_comment(text: str) -> str:
    """Strip comment markers, keep the words."""
    text = text.strip()
    if text.startswith("/*"):
        text = text[2:]
        if text.endswith("*/"):
            text = text[:-2]
        text = text.lstrip("*!")
        lines = [re.sub(r"^\s*\*+ ?", "", ln) for ln in text.splitlines()]
    else:
        lines = [re.sub(r"^\s*//[/!]?\s?", "", ln) for ln in text.splitlines()]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    # Dedent uniformly.
    indents = [len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()]
    cut = min(indents) if indents else 0
    return "\n".join(ln[cut:].rstrip() for ln in lines).strip()


def _is_doc_style(text: str) -> bool:
    t = text.lstrip()
    return t.startswith(("/**", "/*!", "///", "//!", "//", "/*"))


def _doc_for(node: Node, first_code_line: int) -> str | None:
    """The comment block that ends on the line right above `node` (no blank line between)."""
    comments: list[Node] = []
    expect_row = node.start_point[0]
    prev = node.prev_sibling
    while prev is not None and prev.type == "comment":
        if prev.end_point[0] != expect_row - 1 and prev.end_point[0] != expect_row:
            break
        txt = prev.text.decode("utf-8", "replace")
        is_line = txt.lstrip().startswith("//")
        if comments and not is_line:
            break  # a block comment above a run of // lines is a separate comment
        comments.insert(0, prev)
        expect_row = prev.start_point[0]
        if not is_line:
            break
        prev = prev.prev_sibling
    if not comments:
        return None
    raw = "\n".join(c.text.decode("utf-8", "replace") for c in comments)
    if not _is_doc_style(raw):
        return None
    if _LICENSE_WORDS.search(raw):
        return None
    # A banner at the very top of the file, before any code, is file-level, not the function's,
    # unless it sits directly on the function (handled by adjacency above).
    if comments[0].start_point[0] < first_code_line and comments[0].start_point[0] == 0 and len(raw) > 400:
        return None
    doc = _clean_comment(raw) if not comments[0].text.decode().lstrip().startswith("//") else _clean_comment(raw)
    return doc or None


def _first_code_line(root: Node) -> int:
    for child in root.children:
        if child.type != "comment":
            return child.start_point[0]
    return 1 << 30


def extract(source: str | bytes) -> list[CFunction]:
    """All function definitions in a C file, in source order."""
    data = source.encode("utf-8", "surrogateescape") if isinstance(source, str) else source
    tree = _parser().parse(data)
    root = tree.root_node
    first_code = _first_code_line(root)
    out: list[CFunction] = []
    # Each entry: node, inside a preprocessor branch?, macros enabling it, macros enabling the enclosing
    # #if (what an #elif/#else sibling inherits instead of this branch's own condition).
    stack: list[tuple[Node, bool, tuple[str, ...], tuple[str, ...]]] = [(root, False, (), ())]
    found: list[tuple[Node, bool, tuple[str, ...]]] = []
    while stack:
        node, in_pp, conds, outer = stack.pop()
        for child in node.children:
            if child.type == "function_definition":
                found.append((child, in_pp, conds))
            elif child.type in ("preproc_if", "preproc_ifdef"):
                stack.append((child, True, conds + tuple(_positive_macros(child)), conds))
            elif child.type in ("preproc_elif", "preproc_elifdef"):
                stack.append((child, True, outer + tuple(_positive_macros(child)), outer))
            elif child.type == "preproc_else":
                stack.append((child, True, outer, outer))
            elif child.type in ("translation_unit", "linkage_specification", "declaration_list", "ERROR"):
                stack.append((child, in_pp, conds, outer))
    found.sort(key=lambda t: t[0].start_byte)
    for node, in_pp, conds in found:
        decl = node.child_by_field_name("declarator")
        name = _declarator_name(decl)
        body = node.child_by_field_name("body")
        if not name or body is None:
            continue
        sig = data[node.start_byte : body.start_byte].decode("utf-8", "replace").strip()
        sig = re.sub(r"\s+", " ", sig)
        is_static = any(
            c.type == "storage_class_specifier" and c.text == b"static" for c in node.children
        )
        out.append(
            CFunction(
                name=name,
                signature=sig,
                doc=_doc_for(node, first_code),
                source=data[node.start_byte : node.end_byte].decode("utf-8", "replace"),
                line=node.start_point[0] + 1,
                end_line=node.end_point[0] + 1,
                is_static=is_static,
                in_preproc=in_pp,
                has_error=node.has_error,
                conditions=list(dict.fromkeys(conds)),
            )
        )
    return out


def _positive_macros(node: Node) -> list[str]:
    """Macros that, when defined, make this #if/#ifdef branch active (not those under `!`)."""
    if node.type in ("preproc_ifdef", "preproc_elifdef"):
        if node.children and node.children[0].type in ("#ifndef", "#elifndef"):
            return []
        name = node.child_by_field_name("name")
        return [name.text.decode()] if name is not None else []
    cond = node.child_by_field_name("condition")
    out: list[str] = []
    q = [cond] if cond is not None else []
    while q:
        n = q.pop()
        if n.type == "unary_expression" and n.children and n.children[0].type == "!":
            continue
        if n.type == "binary_expression" and n.child_by_field_name("operator") is not None and \
                n.child_by_field_name("operator").type in ("==", "!=", "<", ">", "<=", ">="):
            continue  # `#if X == 2` needs a value, not just a definition
        if n.type == "identifier":
            out.append(n.text.decode())
        q.extend(n.children)
    return out


def _directive_nodes(source: str | bytes) -> Iterator[Node]:
    """Every node outside function bodies and declarations, in source order: where the
    preprocessor directives (#if, #ifdef, #include) of a file live."""
    data = source.encode("utf-8", "surrogateescape") if isinstance(source, str) else source
    stack = list(reversed(_parser().parse(data).root_node.children))
    while stack:
        node = stack.pop()
        yield node
        if node.type not in ("function_definition", "declaration", "comment"):
            stack.extend(reversed(node.children))


def implementation_macros(source: str | bytes) -> list[str]:
    """Macros that guard an implementation inside a header (stb-style `#ifdef FOO_IMPLEMENTATION`).

    Found structurally: the macros that enable an #ifdef/#if branch holding function
    definitions, and whose name says IMPL.
    """
    names: list[str] = []
    for node in _directive_nodes(source):
        if node.type in ("preproc_ifdef", "preproc_if") and _contains_function(node):
            for nm in _positive_macros(node):
                if "IMPL" in nm.upper() and nm not in names:
                    names.append(nm)
    return names


def _contains_function(node: Node) -> bool:
    q = list(node.children)
    while q:
        n = q.pop()
        if n.type == "function_definition":
            return True
        q.extend(n.children)
    return False


def includes(source: str | bytes) -> list[str]:
    """The paths named by the file's `#include "..."` and `#include <...>` directives, in order."""
    out: list[str] = []
    for node in _directive_nodes(source):
        if node.type == "preproc_include":
            p = node.child_by_field_name("path")
            if p is not None:
                out.append(p.text.decode("utf-8", "replace").strip('"<>'))
    return out
