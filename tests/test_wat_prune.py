"""Stubbing what the function under test cannot reach: the kept set follows calls and table calls."""

from __future__ import annotations

import wasmtime

from codehone.targets.c_wat import wat
from codehone.targets.c_wat.wat_prune import prune

MODULE = """(module
  (type (;0;) (func (param i32) (result i32)))
  (type (;1;) (func (result i32)))
  (type (;2;) (func))
  (import "env" "ext" (func $ext (type 1)))
  (func $_initialize (type 2))
  (func $target (type 0) (param i32) (result i32)
    local.get 0
    call $helper)
  (func $helper (type 0) (param i32) (result i32)
    local.get 0
    local.get 0
    call_indirect (type 0))
  (func $by_table (type 0) (param i32) (result i32)
    local.get 0
    i32.const 1
    i32.add)
  (func $other_type (type 1) (result i32)
    call $ext)
  (func $unused (type 0) (param i32) (result i32)
    local.get 0
    call $helper)
  (table (;0;) 3 3 funcref)
  (memory (;0;) 1)
  (export "_initialize" (func $_initialize))
  (elem (;0;) (i32.const 1) func $by_table $other_type))
"""


def test_prune_keeps_calls_and_table_functions_of_called_signatures():
    fields = wat.module_fields(MODULE)
    p = prune(MODULE, fields, {"$target"})
    assert p is not None
    assert set(p.kept) == {"$_initialize", "$target", "$helper", "$by_table"}
    assert p.stubbed == {"$other_type", "$unused"}
    assert "(func $unused (type 0) unreachable)" in p.text
    for name, f in p.kept.items():  # the kept fields point at their text in the pruned module
        assert p.text[f.start:f.end] == f.text and f.text.startswith(f"(func {name} ")
    # still a valid module, with the same functions at the same indices
    m = wasmtime.Module(wasmtime.Engine(), wasmtime.wat2wasm(p.text))
    assert len(m.imports) == 1 and [e.name for e in m.exports] == ["_initialize"]


def test_admits_only_code_that_reaches_nothing_stubbed():
    p = prune(MODULE, wat.module_fields(MODULE), {"$target"})
    assert p.admits("(func $target (type 0) (param i32) (result i32) local.get 0 call $helper)")
    assert not p.admits("(func $target (type 0) (param i32) (result i32) local.get 0 call $unused)")
    assert not p.admits("(func $target (type 0) (param i32) (result i32) call_indirect (type 1))")
    assert not p.admits("(func $target (type 0) (param i32) (result i32) local.get 0 call 5)")


def test_index_references_leave_the_module_whole():
    by_index = MODULE.replace("call $helper)\n  (func $helper", "call 2)\n  (func $helper")
    assert prune(by_index, wat.module_fields(by_index), {"$target"}) is None
