"""Stub out the functions of a module that the code under test can never reach.

Why: the c-wat judge compiles the whole reference module once per candidate,
and wasmtime's compile time is most of a verdict (a 70 KB cJSON module:
~160 ms of ~390 ms). The function under test usually reaches a handful of the
module's functions, so the rest only cost compile time. Each one that cannot
be reached gets the body `unreachable` (same name, same type): function
indices, the table, data and globals stay exactly as they were, so what runs
is what would have run in the full module.

Reachable, from the roots (the function under test, `_initialize`, `start`):
  * direct `call`/`return_call` and `ref.func` targets;
  * for every `call_indirect` of some signature, every table function of that
    signature (a table call of another signature traps either way).
A module that names functions by index anywhere, or a function header
without `(type N)`, is left whole (prune returns None): the names are how
calls are followed here, and guessing would change behaviour.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .wat import Field

_DIRECT = re.compile(r"\b(?:call|return_call|ref\.func)\s+(\$[^\s()]+)")
_BY_INDEX = re.compile(r"\b(?:call|return_call|ref\.func)\s+\d")
_INDIRECT = re.compile(r"\b(?:call_indirect|return_call_indirect)\b[^\n]*?\(type (\d+)\)")
_HEADER_TYPE = re.compile(r"\(func\s+(\$[^\s()]+)\s+\(type (\d+)\)")
_TYPE = re.compile(r"\(type\s+\(;(\d+);\)\s+(.*)\)\s*$", re.S)
_START = re.compile(r"\(start\s+(\$[^\s()]+)\)")


def calls(code: str) -> set[str] | None:
    """The functions `code` names directly; None when it names one by index."""
    if _BY_INDEX.search(code):
        return None
    return set(_DIRECT.findall(code))


@dataclass
class Pruned:
    text: str  # the module with the unreachable functions stubbed
    kept: dict[str, Field]  # the functions left whole, at their offsets in `text`
    stubbed: set[str]
    sigs_called: set[str]  # signatures that some kept call_indirect calls
    sig_of_type: dict[str, str]  # type index -> signature text

    def admits(self, code: str) -> bool:
        """Can `code` replace a kept function here and reach nothing that was stubbed?"""
        named = calls(code)
        if named is None or named & self.stubbed:
            return False
        return {self.sig_of_type.get(t) for t in _INDIRECT.findall(code)} <= self.sigs_called


def _reachable(fields: list[Field], roots: set[str], sig: dict[str, str]) -> tuple[set[str], set[str]] | None:
    """(functions that running `roots` can reach, signatures they call indirectly); None when that
    cannot be told by name."""
    funcs: dict[str, Field] = {}
    func_sig: dict[str, str] = {}
    table: list[str] = []
    for f in fields:
        if f.kind == "func":
            m = _HEADER_TYPE.match(f.text)
            if not m or m.group(2) not in sig:
                return None
            funcs[m.group(1)] = f
            func_sig[m.group(1)] = sig[m.group(2)]
        elif f.kind == "elem":
            if _BY_INDEX.search(f.text) or re.search(r"\bfunc(?:\s+\d+)+", f.text):
                return None
            table += re.findall(r"\$[^\s()]+", f.text)
        elif f.kind == "start":
            m = _START.search(f.text)
            if not m:
                return None
            roots = roots | {m.group(1)}
        elif f.kind in ("global", "export") and _BY_INDEX.search(f.text):
            return None
        elif f.kind in ("global", "export"):
            roots = roots | set(_DIRECT.findall(f.text)) | set(re.findall(r"\(func (\$[^\s()]+)\)", f.text))
    seen: set[str] = set()
    sigs_called: set[str] = set()
    todo = [r for r in roots if r in funcs]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        body = funcs[name].text
        named = calls(body)
        if named is None:
            return None
        todo += [n for n in named if n in funcs and n not in seen]
        new = {sig.get(t) for t in _INDIRECT.findall(body)} - sigs_called
        if new:
            if None in new:
                return None
            sigs_called |= new
            todo += [t for t in table if t in funcs and func_sig[t] in sigs_called and t not in seen]
    return seen, sigs_called


def prune(text: str, fields: list[Field], roots: set[str]) -> Pruned | None:
    """`text` with every function that `roots` (and the module's exports and start) cannot reach
    stubbed; None when the module must stay whole (see the module docstring).

    `fields` must be `text`'s fields in order (text after the last one is kept as it is)."""
    sig = {m.group(1): " ".join(m.group(2).split()) for f in fields if f.kind == "type"
           for m in [_TYPE.match(f.text)] if m}
    found = _reachable(fields, roots, sig)
    if found is None:
        return None
    keep, sigs_called = found
    parts: list[str] = []
    kept: dict[str, Field] = {}
    stubbed: set[str] = set()
    pos = 0
    size = 0
    for f in fields:
        if f.kind != "func":
            continue
        parts.append(text[pos:f.start])
        size += f.start - pos
        m = _HEADER_TYPE.match(f.text)
        if m.group(1) in keep:
            kept[m.group(1)] = replace(f, start=size, end=size + len(f.text))
            body = f.text
        else:
            stubbed.add(m.group(1))
            body = f"(func {m.group(1)} (type {m.group(2)}) unreachable)"
        parts.append(body)
        size += len(body)
        pos = f.end
    parts.append(text[pos:])
    return Pruned("".join(parts), kept, stubbed, sigs_called, sig)
