"""A grammar of the answers c-wat asks for: one `(func ...)` in wasm2wat's layout, for constrained decoding.

Why a grammar: a small model trained from scratch spends most of its failures on text that
does not parse or assemble (a made-up instruction, a missing operand, a wrong param list).
With the grammar, llguidance masks every token that would leave it, so each sample is one
well-formed function whose instruction names are real, and whose header (name and wasm type)
is the reference's when the unit is known. Whether it then computes the right thing is the
judge's business, as always.

The grammar is Lark in llguidance's dialect, generated here from the instruction tables below
(the MVP, sign extension, saturating truncation and bulk memory), so it covers what clang emits
for wasm32-wasi and nothing the assembler would refuse by name. Every mined artifact of the
bundled corpus is accepted by it (tested).
"""

from __future__ import annotations

import json
import re

_INT_OPS = ["clz", "ctz", "popcnt", "add", "sub", "mul", "div_s", "div_u", "rem_s", "rem_u", "and", "or", "xor", "shl", "shr_s", "shr_u", "rotl", "rotr", "eqz", "eq", "ne", "lt_s", "lt_u", "gt_s", "gt_u", "le_s", "le_u", "ge_s", "ge_u", "extend8_s", "extend16_s"]
_FLOAT_OPS = ["abs", "neg", "ceil", "floor", "trunc", "nearest", "sqrt", "add", "sub", "mul", "div", "min", "max", "copysign", "eq", "ne", "lt", "gt", "le", "ge"]
_CONVERSIONS = ["i32.wrap_i64", "i32.trunc_f32_s", "i32.trunc_f32_u", "i32.trunc_f64_s", "i32.trunc_f64_u", "i32.reinterpret_f32", "i64.extend_i32_s", "i64.extend_i32_u", "i64.trunc_f32_s", "i64.trunc_f32_u", "i64.trunc_f64_s", "i64.trunc_f64_u", "i64.reinterpret_f64", "i64.extend32_s", "f32.convert_i32_s", "f32.convert_i32_u", "f32.convert_i64_s", "f32.convert_i64_u", "f32.demote_f64", "f32.reinterpret_i32", "f64.convert_i32_s", "f64.convert_i32_u", "f64.convert_i64_s", "f64.convert_i64_u", "f64.promote_f32", "f64.reinterpret_i64", "i32.trunc_sat_f32_s", "i32.trunc_sat_f32_u", "i32.trunc_sat_f64_s", "i32.trunc_sat_f64_u", "i64.trunc_sat_f32_s", "i64.trunc_sat_f32_u", "i64.trunc_sat_f64_s", "i64.trunc_sat_f64_u"]
_PLAIN_CONTROL = ["unreachable", "nop", "return", "drop", "select", "else", "end", "memory.size", "memory.grow", "memory.copy", "memory.fill"]
_MEMORY = ["i32.load", "i64.load", "f32.load", "f64.load", "i32.load8_s", "i32.load8_u", "i32.load16_s", "i32.load16_u", "i64.load8_s", "i64.load8_u", "i64.load16_s", "i64.load16_u", "i64.load32_s", "i64.load32_u", "i32.store", "i64.store", "f32.store", "f64.store", "i32.store8", "i32.store16", "i64.store8", "i64.store16", "i64.store32"]


def plain_ops() -> list[str]:
    """Every instruction written without an immediate."""
    ops = [f"{t}.{op}" for t in ("i32", "i64") for op in _INT_OPS]
    ops += [f"{t}.{op}" for t in ("f32", "f64") for op in _FLOAT_OPS]
    return ops + _CONVERSIONS + _PLAIN_CONTROL


def _alts(words: list[str]) -> str:
    # Longest first: "i32.load8_u" must not be read as "i32.load" then garbage.
    return " | ".join(json.dumps(w) for w in sorted(set(words), key=lambda w: (-len(w), w)))


_IDCHARS = r"[0-9A-Za-z!#$%&'*+\-.\/:<=>?@\\^_`|~]"


def _header_rule(name: str | None, wasm_type: str | None) -> str:
    """The header: free (any name, any type) or fixed to the reference's name and type."""
    if name:
        head = f"(func ${name}"
        if wasm_type is not None:  # the whole header is fixed: wasm2wat writes no (type N) for a named func
            return f"header: {json.dumps(head if wasm_type == '(no params, no result)' else f'{head} {wasm_type}')}"
        return f"header: {json.dumps(head)} params? results?"
    return "header: \"(func $\" NAME type_use? params? results?"


def lark(name: str | None = None, wasm_type: str | None = None) -> str:
    """The grammar, with the header fixed to `name` and `wasm_type` when given (see templates.wasm_type)."""
    return "\n".join([
        "start: header \"\\n\" local_line* body \")\"",
        _header_rule(name, wasm_type),
        "type_use: \" (type \" UINT \")\"",
        "params: \" (param\" (\" \" VALTYPE)+ \")\"",
        "results: \" (result\" (\" \" VALTYPE)+ \")\"",
        "local_line: INDENT \"(local\" (\" \" VALTYPE)+ \")\\n\"",
        "body: (INDENT instr \"\\n\")* INDENT instr",
        "instr: plain | const | local | global | call | branch | table | structured | memory",
        f"plain: {_alts(plain_ops())}",
        "const: (\"i32.const \" | \"i64.const \") INT | (\"f32.const \" | \"f64.const \") FLOAT fcomment?",
        "fcomment: \" (;=\" FCOMMENT \";)\"",
        "local: (\"local.get \" | \"local.set \" | \"local.tee \") UINT",
        "global: (\"global.get \" | \"global.set \") (\"$\" NAME | UINT)",
        "call: \"call $\" NAME | \"call_indirect (type \" UINT \")\"",
        "branch: (\"br \" | \"br_if \") UINT label_ref?",
        "table: \"br_table\" (\" \" UINT label_ref?)+",
        "label_ref: \" (;@\" UINT \";)\"",
        "structured: (\"block\" | \"loop\" | \"if\") block_type? label?",
        "block_type: \" (result \" VALTYPE \")\"",
        "label: \"  ;; label = @\" UINT",
        f"memory: ({_alts(_MEMORY)}) (\" offset=\" UINT)? (\" align=\" UINT)?",
        "VALTYPE: /i32|i64|f32|f64/",
        f"NAME: /{_IDCHARS}+/",
        "UINT: /[0-9]+/",
        "INT: /-?(0x[0-9a-fA-F]+|[0-9]+)/",
        "FLOAT: /-?(inf|nan(:0x[0-9a-fA-F]+)?|0x[0-9a-fA-F]+(\\.[0-9a-fA-F]*)?(p[+-]?[0-9]+)?|[0-9]+(\\.[0-9]*)?(e[+-]?[0-9]+)?)/",
        "FCOMMENT: /[^;\\n]+/",
        "INDENT: /[ ]+/",
    ]) + "\n"


_NAME = re.compile(r"^\s*\(func\s+\$([^\s()]+)")


def for_unit(unit: dict | None) -> str:
    """The grammar for one prompt: the header fixed to the unit's name and wasm type when known."""
    from .templates import wasm_type

    if not unit:
        return lark()
    m = _NAME.match(unit.get("artifact") or "")
    name = m.group(1) if m else unit.get("name")
    t = (unit.get("meta") or {}).get("wasm_type") or wasm_type(unit.get("artifact") or "")
    return lark(name, t)
