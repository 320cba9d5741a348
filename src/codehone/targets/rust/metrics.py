"""Idiomatic score and doc-comment rate for Rust, from the tree-sitter syntax tree.

Both are read from the syntax tree, never from regexes over text, so a pattern
inside a string or a comment does not count.

Idiomatic patterns (each counted, and reported per pattern in the verdict):

  good                                   bad
  ----                                   ---
  try_operator      `expr?`              unwrap_in_lib   `.unwrap()` / `.expect()` outside
  iterator_chain    a method chain                       tests and `fn main`
                    using iterator       index_loop      `for i in 0..v.len()`
                    adapters (map,       unsafe_block    `unsafe { ... }`
                    filter, collect...)  allow_attr      `#[allow(...)]`
  derive            `#[derive(...)]`     debug_print     `println!`/`dbg!`/`eprintln!`
  impl_block        `impl T` / `impl                     outside tests and `fn main`
                    Trait for T`         todo_macro      `todo!`/`unimplemented!`
  if_let            `if let` / `while let` / `let ... else`
  match_expr        `match`

score = (1 + good) / (2 + good + bad): a Laplace-smoothed share of good
patterns, so an empty file scores 0.5, and one bad pattern among many good
ones costs little.

Doc rate = documented public items / public items, where a public item is a
fn, struct, enum, trait, type, const, static, mod or union declared `pub`
(including methods inside impl blocks) and documented means a `///` or `/** */`
comment right above it (attributes may sit in between). A file with no public
items has no doc rate (None), rather than a fake 0 or 1.
"""

from __future__ import annotations

import functools
from typing import Any

_ITER_ADAPTERS = {
    "map", "filter", "filter_map", "flat_map", "fold", "collect", "sum", "product", "any", "all",
    "find", "find_map", "position", "enumerate", "zip", "take", "skip", "take_while", "skip_while",
    "chain", "rev", "count", "min_by_key", "max_by_key", "for_each", "flatten", "windows", "chunks",
    "peekable", "scan", "try_fold", "cloned", "copied", "partition", "step_by",
}  # fmt: skip
_ITER_SOURCES = {
    "iter",
    "iter_mut",
    "into_iter",
    "chars",
    "bytes",
    "lines",
    "split",
    "split_whitespace",
    "keys",
    "values",
    "drain",
    "windows",
    "chunks",
}
_PUB_ITEMS = {
    "function_item",
    "struct_item",
    "enum_item",
    "trait_item",
    "type_item",
    "const_item",
    "static_item",
    "mod_item",
    "union_item",
}
GOOD = ("try_operator", "iterator_chain", "derive", "impl_block", "if_let", "match_expr")
BAD = ("unwrap_in_lib", "index_loop", "unsafe_block", "allow_attr", "debug_print", "todo_macro")


@functools.lru_cache(maxsize=1)
def _parser():
    import tree_sitter_rust
    from tree_sitter import Language, Parser

    return Parser(Language(tree_sitter_rust.language()))


def parse(source: str):
    """The tree-sitter tree of `source` (its root has .has_error for syntax errors)."""
    return _parser().parse(source.encode("utf-8", "surrogatepass"))


def _text(node) -> str:
    return node.text.decode("utf-8", "replace") if node.text is not None else ""


def _attrs_before(node) -> list[str]:
    """The attribute texts attached to `node` (preceding attribute_item siblings)."""
    out = []
    sib = node.prev_named_sibling
    while sib is not None and sib.type in ("attribute_item", "line_comment", "block_comment"):
        if sib.type == "attribute_item":
            out.append(_text(sib))
        sib = sib.prev_named_sibling
    return out


def _is_doc(node) -> bool:
    return node.type in ("line_comment", "block_comment") and any(
        c.type == "outer_doc_comment_marker" for c in node.children
    )


def _documented(node) -> bool:
    sib = node.prev_named_sibling
    while sib is not None and sib.type in ("attribute_item", "line_comment", "block_comment"):
        if _is_doc(sib):
            return True
        sib = sib.prev_named_sibling
    return False


def _is_test_context(node) -> bool:
    attrs = " ".join(_attrs_before(node)).replace(" ", "")
    if "#[test]" in attrs or "cfg(test)" in attrs:
        return True
    if node.type == "function_item":
        name = node.child_by_field_name("name")
        if (
            name is not None
            and _text(name) == "main"
            and node.parent is not None
            and node.parent.type == "source_file"
        ):
            return True
    return False


def _callee(call):
    """The field_expression a method call calls (`recv.name(...)` or `recv.name::<T>(...)`), if any."""
    fn = call.child_by_field_name("function")
    if fn is not None and fn.type == "generic_function":
        fn = fn.child_by_field_name("function")
    return fn if fn is not None and fn.type == "field_expression" else None


def _method_name(call) -> str | None:
    fn = _callee(call)
    f = fn.child_by_field_name("field") if fn is not None else None
    return _text(f) if f is not None else None


def _outer_call(call):
    """The method call whose receiver is `call` (the next link of a chain), if any."""
    p = call.parent
    if p is None or p.type != "field_expression":
        return None
    p = p.parent
    if p is not None and p.type == "generic_function":
        p = p.parent
    return p if p is not None and p.type == "call_expression" else None


def _is_iter_chain(call) -> bool:
    """A call to an adapter whose receiver chain starts from an iterator source (iter(), chars()...)."""
    if _method_name(call) not in _ITER_ADAPTERS:
        return False
    node = call
    while node is not None and node.type == "call_expression":
        name = _method_name(node)
        if name in _ITER_SOURCES:
            return True
        fn = _callee(node)
        node = fn.child_by_field_name("value") if fn is not None else None
    return False


def _is_index_loop(node) -> bool:
    value = node.child_by_field_name("value")
    if value is None or value.type != "range_expression":
        return False
    t = _text(value).replace(" ", "")
    return t.startswith("0..") and t.endswith(".len()")


def analyze(tree) -> dict[str, Any]:
    """Per-pattern counts, the idiomatic score, and public/documented item counts."""
    counts = dict.fromkeys(GOOD + BAD, 0)
    pub_items = documented = 0
    stack = [(tree.root_node, False)]
    while stack:
        node, in_test = stack.pop()
        t = node.type
        if t in _PUB_ITEMS or t in ("impl_item",):
            in_test = in_test or _is_test_context(node)
        if t == "try_expression":
            counts["try_operator"] += 1
        elif t == "call_expression":
            name = _method_name(node)
            if name in ("unwrap", "expect") and not in_test:
                counts["unwrap_in_lib"] += 1
            # Count a chain once: at its outermost adapter call.
            parent_call = _outer_call(node)
            outer = parent_call is not None and _is_iter_chain(parent_call)
            if not outer and _is_iter_chain(node):
                counts["iterator_chain"] += 1
        elif t == "attribute_item":
            a = _text(node).replace(" ", "")
            if a.startswith("#[derive("):
                counts["derive"] += 1
            elif a.startswith("#[allow("):
                counts["allow_attr"] += 1
        elif t == "impl_item":
            counts["impl_block"] += 1
        elif t in ("let_condition", "let_chain") or (
            t == "let_declaration" and node.child_by_field_name("alternative")
        ):
            counts["if_let"] += 1
        elif t == "match_expression":
            counts["match_expr"] += 1
        elif t == "for_expression" and _is_index_loop(node):
            counts["index_loop"] += 1
        elif t == "unsafe_block":
            counts["unsafe_block"] += 1
        elif t == "macro_invocation":
            m = node.child_by_field_name("macro")
            name = _text(m) if m is not None else ""
            if name in ("println", "print", "eprintln", "eprint", "dbg") and not in_test:
                counts["debug_print"] += 1
            elif name in ("todo", "unimplemented"):
                counts["todo_macro"] += 1
        if t in _PUB_ITEMS and any(
            c.type == "visibility_modifier" and _text(c) == "pub" for c in node.children
        ):
            pub_items += 1
            documented += _documented(node)
        for c in node.children:
            stack.append((c, in_test))
    good = sum(counts[k] for k in GOOD)
    bad = sum(counts[k] for k in BAD)
    return {
        "patterns": counts,
        "idiomatic_score": round((1 + good) / (2 + good + bad), 4),
        "pub_items": pub_items,
        "documented_pub_items": documented,
        "doc_rate": round(documented / pub_items, 4) if pub_items else None,
    }


def has_main(tree) -> bool:
    """A top-level `fn main`: the file is a binary crate."""
    for c in tree.root_node.named_children:
        if c.type == "function_item":
            n = c.child_by_field_name("name")
            if n is not None and _text(n) == "main":
                return True
    return False


def has_tests(tree) -> bool:
    """Any `#[test]` attribute anywhere (the tests may sit in a `mod tests`)."""
    stack = [tree.root_node]
    while stack:
        n = stack.pop()
        if n.type == "attribute_item" and _text(n).replace(" ", "") == "#[test]":
            return True
        stack.extend(n.children)
    return False
