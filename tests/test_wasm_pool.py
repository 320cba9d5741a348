"""wasm_run on wasmtime's pooling allocator: slots are reused, so each of these checks that reuse
changes nothing the judge can see, and that running out of slots is the judge's error, not a verdict."""

from __future__ import annotations

import subprocess
import sys

import pytest
import wasmtime

from codehone.targets.c_wat import wasm_run

# `poke(addr)`: return the word at addr, then store 42 there. A fresh memory always answers 0.
WAT = """
(module
  (memory (export "memory") 64)
  (func (export "poke") (param $a i32) (result i32)
    (local $old i32)
    (local.set $old (i32.load (local.get $a)))
    (i32.store (local.get $a) (i32.const 42))
    (local.get $old))
  (func (export "grow") (param $n i32) (result i32)
    (memory.grow (local.get $n))))
"""
LIMITS = wasm_run.Limits(fuel=10**6, deadline_s=5.0, memory_bytes=16 << 20)


@pytest.fixture(scope="module")
def prep() -> wasm_run.Prepared:
    return wasm_run.prepare(bytes(wasmtime.wat2wasm(WAT)), [])


def test_this_machine_gets_the_pooling_allocator(prep):
    assert wasm_run.ALLOCATOR == "pooling"


@pytest.mark.parametrize("addr", [100, wasm_run.KEEP_RESIDENT - 4, wasm_run.KEEP_RESIDENT + 4096, (64 << 16) - 4])
def test_a_reused_slot_starts_zeroed(prep, addr):
    # inside the part kept resident (zeroed in place) and beyond it (decommitted)
    got = [wasm_run.run(prep, "poke", [addr], b"", 0, LIMITS, 0) for _ in range(3)]
    assert [o.kind for o in got] == ["return"] * 3
    assert [o.values for o in got] == [(0,)] * 3


def test_the_store_limit_not_the_pool_stops_growth(prep):
    # 64 pages (4 MiB) now; the 16 MiB limit allows 192 more pages, not 193
    assert wasm_run.run(prep, "grow", [193], b"", 0, LIMITS, 0).values == (-1,)
    assert wasm_run.run(prep, "grow", [192], b"", 0, LIMITS, 0).values == (64,)


def test_a_full_pool_is_a_judge_error_not_an_outcome(prep):
    held = []
    try:
        for _ in range(wasm_run.POOL_SLOTS):
            store = wasmtime.Store(wasm_run.engine())
            held.append((store, prep.pre.instantiate(store)))
        with pytest.raises(wasm_run.PoolFull, match="pool exhausted"):
            wasm_run.run(prep, "poke", [100], b"", 0, LIMITS, 0)
    finally:
        held.clear()
    assert wasm_run.run(prep, "poke", [100], b"", 0, LIMITS, 0).values == (0,)


def test_without_the_pooling_api_the_engine_falls_back(monkeypatch):
    from wasmtime import _bindings

    monkeypatch.delattr(_bindings, "wasmtime_pooling_allocation_strategy_set")
    assert wasm_run._pooled_engine() is None


def test_the_pool_takes_a_table_larger_than_its_default_limit():
    big = wasm_run.prepare(bytes(wasmtime.wat2wasm(
        '(module (table 30000 funcref) (func (export "f") (result i32) (table.size 0)))')), [])
    assert wasm_run.run(big, "f", [], b"", 0, LIMITS, 0).values == (30000,)


def test_under_an_address_space_rlimit_the_default_allocator_runs():
    # wasmtime aborts the process when it cannot reserve the pool, so the pool is not even tried
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (64 << 30, 64 << 30))\n"
        "import wasmtime\nfrom codehone.targets.c_wat import wasm_run as w\n"
        "p = w.prepare(bytes(wasmtime.wat2wasm('(module (func (export \"f\") (result i32) i32.const 7))')), [])\n"
        "o = w.run(p, 'f', [], b'', 0, w.Limits(10**6, 5.0, 1 << 20), 0)\n"
        "print(w.ALLOCATOR, o.kind, o.values)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-500:]
    assert r.stdout.split() == ["on-demand", "return", "(7,)"]
