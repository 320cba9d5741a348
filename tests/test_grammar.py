"""Constrained decoding for c-wat: the answer grammar accepts real wasm2wat output and holds samples to it."""

from __future__ import annotations

import llguidance
import llguidance.hf
import pytest

from codehone.sampling import load_model, sample
from codehone.targets.c_wat import grammar
from serve_fixtures import make_tiny_model

# Shapes wasm2wat prints for clang -O2 output (taken from mined units of the bundled corpus).
REAL = [
    "(func $fp_barrierf (param f32) (result f32)\n    local.get 0)",
    "(func $f (param i32 i32) (result i32)\n    (local i32 i32)\n    global.get $__stack_pointer\n    i32.const 16\n"
    "    i32.sub\n    local.tee 2\n    global.set $__stack_pointer\n    block  ;; label = @1\n      local.get 0\n"
    "      i32.load offset=8 align=1\n      br_if 0 (;@1;)\n      loop  ;; label = @2\n        local.get 1\n"
    "        i32.load8_u offset=3\n        br_table 0 (;@2;) 1 (;@1;) 0 (;@2;)\n      end\n    end\n"
    "    call $helper\n    i32.const 8\n    call_indirect (type 2)\n    local.get 2)",
    "(func $g (param f64) (result f64)\n    local.get 0\n    f64.const 0x1.8p+1 (;=3;)\n    f64.mul\n"
    "    f64.const -inf (;=-inf;)\n    f64.max)",
    "(func $h\n    i32.const 0\n    i64.const -9223372036854775808\n    i64.store offset=1024\n"
    "    loop (result i32)  ;; label = @1\n      i32.const 1\n    end\n    drop)",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_model(make_tiny_model(tmp_path_factory.mktemp("g")))


def _accepts(tok, lark: str, text: str) -> bool:
    m = llguidance.LLMatcher(llguidance.hf.from_tokenizer(tok), llguidance.grammar_from("lark", lark))
    ok = m.consume_tokens(tok(text, add_special_tokens=False)["input_ids"])
    return bool(ok) and not m.is_error() and m.is_accepting()


def test_the_grammar_accepts_what_wasm2wat_prints_and_refuses_junk(tiny):
    _, tok = tiny
    for text in REAL:
        assert _accepts(tok, grammar.lark(), text), text
    assert not _accepts(tok, grammar.lark(), "(func $f\n    i32.bogus)")  # no such instruction
    assert not _accepts(tok, grammar.lark(), "(func $f\n    local.get)")  # a missing operand
    assert not _accepts(tok, grammar.lark(), "(func $f\n    nop) trailing")


def test_a_unit_grammar_fixes_the_name_and_the_wasm_type(tiny):
    _, tok = tiny
    unit = {"name": "f", "artifact": "(func $f (param i32 i32) (result i32)\n    local.get 0)"}
    lark = grammar.for_unit(unit)
    assert _accepts(tok, lark, "(func $f (param i32 i32) (result i32)\n    local.get 1)")
    assert not _accepts(tok, lark, "(func $f (param i32) (result i32)\n    local.get 0)")  # other type
    assert not _accepts(tok, lark, "(func $g (param i32 i32) (result i32)\n    local.get 0)")  # other name


def test_constrained_samples_are_well_formed_and_deterministic(tiny):
    model, tok = tiny
    units = [{"name": "add", "artifact": "(func $add (param i32 i32) (result i32)\n    local.get 0)"},
             {"name": "neg", "artifact": "(func $neg (param f64) (result f64)\n    local.get 0)"}]
    prompts = [[{"role": "user", "content": f"Implement: {u['name']}"}] for u in units]
    grammars = [grammar.for_unit(u) for u in units]
    kw = dict(n=2, temperature=0.9, max_new_tokens=64, seed=3)
    free = sample(model, tok, prompts, **kw)
    held = sample(model, tok, prompts, grammars=grammars, **kw)
    again = sample(model, tok, prompts, grammars=grammars, **kw)
    known = set(grammar.plain_ops()) | {"i32.const", "i64.const", "f32.const", "f64.const", "local.get", "local.set",
                                         "local.tee", "global.get", "global.set", "call", "call_indirect", "br",
                                         "br_if", "br_table", "block", "loop", "if", "(local"} | set(grammar._MEMORY)
    for u, rows in zip(units, held, strict=True):
        header = u["artifact"].split("\n")[0]
        for c in rows:
            if not c.stopped_at_eos:  # ran out of tokens mid-answer: still a prefix of the grammar
                assert c.text.startswith(header[: len(c.text)]) or c.text.startswith(header)
                continue
            lines = c.text.split("\n")
            assert lines[0] == header and c.text.endswith(")"), c.text
            assert all(ln.split()[0].rstrip(")") in known for ln in lines[1:]), c.text
    assert [[c.text for c in r] for r in held] == [[c.text for c in r] for r in again]
    assert not all(c.text.startswith("(func $") for r in free for c in r)  # the untrained model, unheld
