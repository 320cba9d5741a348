"""The c-wat judge: is this `(func ...)` the same function as the compiler's, when run?

Stages (the verdict's `stage` is the last one reached):
  parse     the candidate (or the ```wat fence in it) is exactly one `(func ...)`
            form with nothing but comments around it, and no inline import/export.
  assemble  it is spliced into the unit's reference module in place of the
            original function (so `call $other`, `global.get $__stack_pointer`
            and the data segments resolve by name) and `wat2wasm` (see
            WAT2WASM_FEATURES) assembles and validates the module; errors
            carry the candidate's own line numbers. The signature must stay.
  validate  wasmtime compiles the module (its validator is the one that runs it).
  execute   differential execution against the reference, which is built by
            the *same* round trip (wasm2wat of the mined module, the same
            export added, wat2wasm), so both sides differ only in the function.

Differential execution (see `wasm_run` for the sandbox, `c_wat_inputs` for the
inputs, `c_wat_explore` for the coverage-guided ones): each test instantiates
both modules fresh, runs `_initialize`, writes the same seeded arena past the
end of memory, calls the function with the same arguments, and compares
  * the return values (floats bit for bit; NaNs are canonicalised),
  * linear memory from the initial stack pointer up (data, heap, arena) and
    its size: the stack below it is dead after the return and may differ
    (zig's wasm-ld puts the stack first; otherwise all memory is compared),
  * every mutable global (the stack pointer must be restored),
  * the log of calls to imports from other translation units (an argument
    that is a stack address is logged as such, not by value: frame layouts
    may differ),
  * what it wrote to stdout and stderr.

Traps: when the reference traps on an input (unreachable, out-of-bounds,
division by zero, proc_exit, ...), the candidate must trap too. The kind of
trap is not compared (two correct translations may fault at different points
on undefined behaviour), nor is memory (a trap leaves it half-written). A
proc_exit is a defined end, not a fault: the candidate must exit with the
same code, and its output, import calls and memory are compared as after a
return. When the reference runs out of fuel or
time, or calls imports more than wasm_run.MAX_HOST_CALLS times, the test is
*skipped*: nothing can be said about that input. The
candidate gets the same wall clock and at most `10 * reference fuel + 1M`
instructions (the full fuel when the reference trapped: the counter is not
exact after a trap), so an infinite loop is stopped quickly and reported.

A unit whose reference cannot be instantiated or initialised (an import that
is not a function, a trap in `_initialize`) is judged up to `validate` and
says so in a warning; it is not a pass of the execute stage.

Inputs: `tests` seeded ones as described in c_wat_inputs; then, when the unit
carries `meta.c_params` (parameter types and struct layouts mine read from the
compiler's DWARF) or the function uses static data at constant addresses,
half as many again with typed objects behind the pointers (c_wat_layout:
finite, consistent lists; function pointers that name functions of a type the
code calls indirectly) and, in every other one, seeded statics; then up to
`tests` more that a coverage-guided search of the reference found (c_wat_explore:
comparison-operand replacement, strcmp-like calls anywhere in the module logged
and the other string written in, coverage of both sides of every branch and
select, the program's own strings as tokens, siblings of each new path, and
boundary variants of ordering comparisons). Stubbed
imports answer 0, 1, -1, 2 or an address, and in one test of four like an
allocator.

What it cannot see (measured by benchmarks/c_wat_mutants.py): code behind
checks that none of these inputs get past (deep struct invariants, such as a
valid deflate state; pointers that must come from the module's own malloc),
boundaries of computed operands (`a + b <= c` where no operand is an input
word), and effects that only a stubbed import could observe (a value stored in
a stack struct that only an external stub receives). A passing verdict means
"no difference found on these inputs", and `counts` says how many ran,
trapped or were skipped.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import wasmtime

from ...records import Diagnostic, Verdict
from ...toolchains import wabt
from ..verdict import standard_counts
from . import explore, inputs, memory_diff, scratch, wasm_run, wat, wat_prune

TARGET_EXPORT = "__codehone_target"
ISOLATION = "wasmtime"
MAX_CANDIDATE_CHARS = 1 << 20
DEFAULT_FUEL = 20_000_000
DEFAULT_MEMORY = 256 << 20

# wabt's defaults (the features clang emits for wasm32-wasi) plus atomics. Not --enable-all: in
# wabt 1.0.42 that turns on the "compact imports" encoding, which wasmtime rejects.
WAT2WASM_FEATURES = ["--enable-threads"]

_FENCE = re.compile(r"```[ \t]*(?:wat|wasm|wast|lisp|scheme)?[ \t]*\n(.*?)```", re.S | re.I)


def extract_code(text: str) -> str:
    """The first fenced code block that holds a `(func`, else the whole text."""
    for m in _FENCE.finditer(text):
        if "(func" in m.group(1):
            return m.group(1)
    return text


# ---------------------------------------------------------------- parse


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def parse_candidate(code: str, name: str) -> tuple[str | None, list[Diagnostic]]:
    """The candidate as one `(func $name ...)` form, or diagnostics saying why not."""
    if len(code) > MAX_CANDIDATE_CHARS:
        return None, [Diagnostic(f"candidate is {len(code)} characters; the limit is {MAX_CANDIDATE_CHARS}",
                                 code="too_large")]
    try:
        spans = wat.forms(code)
    except wat.WatSyntaxError as e:
        m = re.search(r"offset (\d+)", str(e))
        return None, [Diagnostic(str(e), code="unbalanced", line=_line_of(code, int(m.group(1))) if m else None)]
    if len(spans) != 1:
        return None, [Diagnostic(f"expected exactly one (func ...) form, found {len(spans)}", code="not_one_form",
                                 line=_line_of(code, spans[1][0]) if len(spans) > 1 else None)]
    s, e = spans[0]
    outside = code[:s] + " " + code[e:]
    outside = re.sub(r";;[^\n]*", "", outside)
    outside = re.sub(r"\(;.*?;\)", "", outside, flags=re.S)
    if outside.strip():
        stray = outside.strip().split()[0]
        return None, [Diagnostic(f"text outside the (func ...) form: {stray[:40]!r}", code="stray_text")]
    form = code[s:e]
    m = re.match(r"\(\s*func\b\s*(\$[^\s()]+)?", form)
    if not m:
        head = re.match(r"\(\s*(\S*)", form).group(1)
        return None, [Diagnostic(f"the form is ({head} ...), not (func ...)", code="not_func",
                                 line=_line_of(code, s))]
    inner = form[1:-1]
    for fs, fe in wat.forms(inner):
        kw = re.match(r"\(\s*([a-z0-9_.]+)", inner[fs:fe])
        if kw and kw.group(1) in ("import", "export"):
            return None, [Diagnostic(f"inline ({kw.group(1)} ...) is not allowed in the candidate",
                                     code="inline_" + kw.group(1), line=_line_of(code, s + 1 + fs))]
    # The function keeps the unit's name, whatever the candidate called it, so callers resolve.
    form = form[: m.start(1)] + name + form[m.end(1):] if m.group(1) else form[: m.end()] + " " + name + form[m.end():]
    return form, []


# ---------------------------------------------------------------- reference modules


@dataclass
class Layout:
    keep_from: int  # first compared address: the initial stack pointer when the stack is first
    globals: list[str]  # export names of mutable globals


def _module_wat(wasm_path: Path) -> str:
    r = subprocess.run(wabt.limited([wabt.tool("wasm2wat"), "--no-check", "--disable-annotations",
                                     os.fspath(wasm_path)]), capture_output=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"wasm2wat failed: {r.stderr.decode(errors='replace')[:300]}")
    return r.stdout.decode("utf-8", "replace")


def _with_exports(module_wat: str, fields: list[wat.Field], name: str) -> tuple[str, Layout]:
    """Add exports for the function under test and every mutable global, before the module's `)`.

    They go at the end, so the offsets in `fields` stay valid for the new text.
    """
    gidx = 0
    exports = [f'(export "{TARGET_EXPORT}" (func {name}))']
    names: list[str] = []
    sp = None
    min_data = None
    for f in fields:
        if f.kind == "import" and re.search(r"\(global\b", f.text):
            gidx += 1
        elif f.kind == "global":
            if re.search(r"\(mut\s", f.text[:200]):
                exp = f"__codehone_g{gidx}"
                exports.append(f'(export "{exp}" (global {gidx}))')
                names.append(exp)
                if f.name == "$__stack_pointer":
                    m = re.search(r"\(i32\.const\s+(-?\d+)\)", f.text)
                    sp = int(m.group(1)) & 0xFFFFFFFF if m else None
            gidx += 1
        elif f.kind == "data":
            m = re.search(r"\(i32\.const\s+(-?\d+)\)", f.text[:300])
            if m:
                off = int(m.group(1)) & 0xFFFFFFFF
                min_data = off if min_data is None else min(min_data, off)
    keep_from = sp if sp is not None and (min_data is None or min_data >= sp) else 0
    end = module_wat.rstrip().rfind(")")
    text = module_wat[:end] + "  " + "\n  ".join(exports) + "\n" + module_wat[end:]
    return text, Layout(keep_from, names)


@dataclass
class Reference:
    module_wat: str  # with the exports added, the reference function in place, unreachable code stubbed
    func: wat.Field  # its place in module_wat
    params: list[str]
    results: list[str]
    layout: Layout
    prepared: wasm_run.Prepared | None = None
    base: int = 0  # where the arena starts: the end of memory after _initialize
    error: str | None = None  # why it cannot be executed
    outcomes: dict = field(default_factory=dict)  # (seed, test, fuel, mem) -> Outcome (memory_diff.Packed)
    inputs: dict = field(default_factory=dict)  # (seed, tests) -> [TestInput], the seeded ones
    analysis: tuple | None = None  # see _analysis
    extra: dict = field(default_factory=dict)  # (seed, tests, runs, fuel, mem) -> [TestInput] found by exploring
    explorer: explore.Explorer | None = None
    callees: str = ""  # the text of the functions it calls directly: their constants guide inputs too
    callee_fields: list = field(default_factory=list)  # their wat.Field, to trace their loads
    fptrs: tuple[int, ...] = ()  # table indices of functions that a call_indirect here could call
    table: dict = field(default_factory=dict)  # type index -> table indices of that type, allocators first
    tokens: tuple[bytes, ...] = ()  # static strings the code names (inputs.string_tokens)
    explore_error: str | None = None
    full: tuple[str, wat.Field] | None = None  # the module with nothing stubbed, for candidates that need it
    funcs: dict = field(default_factory=dict)  # name -> wat.Field: the whole functions of module_wat
    statics: bytes = b""  # memory as _initialize left it
    pruned: wat_prune.Pruned | None = None


# Units whose reference (with its cached outcomes: ~1 MB of memory per test) a process keeps. check()
# judges a unit's candidates one after another, so a few are enough; more only costs memory.
REF_CACHE_UNITS = 4
_WAT_CACHE: OrderedDict[str, tuple[str, list[wat.Field]]] = OrderedDict()
_REF_CACHE: OrderedDict[tuple[str, str], Reference] = OrderedDict()


def _lru_put(cache: OrderedDict, key, value, size: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > size:
        cache.popitem(last=False)


def _func_types(func_text: str) -> tuple[list[str], list[str]]:
    """(params, results) of a `(func ...)`: its leading (param ...)/(result ...) forms only, never
    the `(result i32)` of a block or `if` further down."""
    params: list[str] = []
    results: list[str] = []
    inner = func_text[1:-1]
    head = re.match(r"\s*func\b\s*(\$[^\s()]+)?", inner)
    pos = head.end() if head else 0
    for s, e in wat.forms(inner):
        gap = re.sub(r";;[^\n]*|\(;.*?;\)", "", inner[pos:s], flags=re.S)
        if gap.strip():
            break  # an instruction: the header is over
        pos = e
        part = inner[s:e]
        kw = re.match(r"\(\s*(param|result|local|type)\b(.*)\)$", part, re.S)
        if not kw:
            break
        if kw.group(1) in ("param", "result"):
            body = re.sub(r"^\s*\$\S+", "", kw.group(2))
            types = re.findall(r"\b(i32|i64|f32|f64|v128|funcref|externref)\b", body)
            (params if kw.group(1) == "param" else results).extend(types)
    return params, results


_ALLOCATOR = re.compile(r"alloc|free", re.I)
_CALL_INDIRECT = re.compile(r"\bcall_indirect\b[^\n]*?\(type (\d+)\)")


def table_by_type(fields: list[wat.Field]) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Type index -> the table indices of the functions of that type: (allocator-like ones by name,
    the others). Type identity by index: wasm2wat prints each distinct signature once."""
    type_of: dict[str, str] = {}
    for f in fields:
        m = None
        if f.kind == "func" and f.name:
            m = re.search(r"\(type (\d+)\)", f.text[:300])
            name = f.name
        elif f.kind == "import":
            m = re.search(r"\(func (\$\S+) \(type (\d+)\)", f.text)
            if m:
                type_of[m.group(1)] = m.group(2)
            continue
        if m:
            type_of[name] = m.group(1)
    plain: dict[str, list[int]] = {}
    allocators: dict[str, list[int]] = {}
    for f in fields:
        m = re.match(r"\(elem\b[^\n]*?\(i32\.const (\d+)\)\s*func((?:\s+\$[^\s()]+)+)", f.text) \
            if f.kind == "elem" else None
        if m:
            for k, nm in enumerate(m.group(2).split()):
                if nm in type_of:
                    bucket = allocators if _ALLOCATOR.search(nm.rsplit(".", 1)[-1]) else plain
                    bucket.setdefault(type_of[nm], []).append(int(m.group(1)) + k)
    return {t: (tuple(allocators.get(t, [])), tuple(plain.get(t, []))) for t in set(plain) | set(allocators)}


def table_candidates(fields: list[wat.Field], code: str, limit: int = 16,
                     by_type: dict | None = None) -> tuple[int, ...]:
    """Table indices of the functions whose type a `call_indirect` in `code` calls, allocator-like
    ones (by name) first and three times over.

    A function pointer in a struct (zlib's `strm->zalloc`) is a table index; a random small
    number names a function of the wrong type (or none) and the call traps, so nothing behind
    the first indirect call was ever compared. These indices are what a C caller could have
    stored there.
    """
    wanted = dict.fromkeys(_CALL_INDIRECT.findall(code))
    if not wanted:
        return ()
    by_type = table_by_type(fields) if by_type is None else by_type
    out: list[int] = []
    allocators: list[int] = []
    for t in wanted:
        a, o = by_type.get(t, ((), ()))
        allocators += a
        out += o
    # Weighted: a struct of function pointers is most often an allocator's hooks (cJSON's
    # allocate/deallocate, zlib's zalloc/zfree), and a call through a non-allocator there fails at once.
    allocators = sorted(set(allocators))[:4]
    out = sorted(set(out))
    return tuple(allocators * 3 + out[: max(0, limit - len(allocators))])


def reference(unit: dict, modules_dir: Path, memory_bytes: int = DEFAULT_MEMORY) -> Reference:
    """The unit's reference module, round-tripped and prepared once per process (LRU)."""
    sha = unit["meta"]["module"]
    name = unit["meta"].get("wat_name") or "$" + unit["name"]
    key = (sha, name)
    if key in _REF_CACHE:
        _REF_CACHE.move_to_end(key)
        return _REF_CACHE[key]
    if sha in _WAT_CACHE:
        mod_wat, fields = _WAT_CACHE[sha]
        _WAT_CACHE.move_to_end(sha)
    else:
        mod_wat = _module_wat(Path(modules_dir) / f"{sha}.wasm")
        fields = wat.module_fields(mod_wat)  # slow on big modules: once per module
        _lru_put(_WAT_CACHE, sha, (mod_wat, fields), 4)
    text, layout = _with_exports(mod_wat, fields, name)
    func = next((f for f in fields if f.kind == "func" and f.name == name), None)
    if func is None:
        raise KeyError(f"{name} is not a function of module {sha[:12]}")
    params, results = _func_types(func.text)
    full = (text, func)
    pruned = wat_prune.prune(text, fields, {name})
    by_name = {f.name: f for f in fields if f.kind == "func" and f.name}
    if pruned is not None:
        text, func = pruned.text, pruned.kept[name]
        by_name = dict(pruned.kept)
    ref = Reference(text, func, params, results, layout, full=full, pruned=pruned, funcs=by_name)
    called = dict.fromkeys(re.findall(r"\bcall (\$[^\s()]+)", func.text))
    ref.callee_fields = [by_name[c] for c in list(called)[:12] if c in by_name and c != name]
    ref.callees = "\n".join(f.text for f in ref.callee_fields)
    by_type = table_by_type(fields)
    ref.table = {t: a + o for t, (a, o) in by_type.items()}
    ref.fptrs = table_candidates(fields, func.text + "\n" + ref.callees, by_type=by_type)
    wasm, diags = assemble(text, func.start, func.text)
    if wasm is None:
        ref.error = "the reference module does not reassemble: " + "; ".join(d.message for d in diags[:2])
    else:
        try:
            ref.prepared = wasm_run.prepare(wasm, layout.globals)
            ref.base, memory = _probe_base(ref.prepared, memory_bytes)
            ref.statics = memory
            ref.tokens = inputs.string_tokens(func.text + "\n" + ref.callees, memory, max(1024, layout.keep_from))
        except Exception as e:  # instantiation or _initialize failed: not executable here
            ref.error = f"the reference module cannot run: {str(e).splitlines()[0][:300]}"
    _lru_put(_REF_CACHE, key, ref, REF_CACHE_UNITS)
    return ref


def _probe_base(prep: wasm_run.Prepared, memory_bytes: int) -> tuple[int, bytes]:
    """Instantiate once and run `_initialize`: the arena goes at the end of memory it leaves.
    Returns (that end, the memory as `_initialize` left it)."""
    store = wasm_run.new_store(wasm_run.Limits(DEFAULT_FUEL, 10.0, memory_bytes))
    inst = wasm_run.instantiate(prep, store)
    ex = inst.exports(store)
    init = wasm_run._get(ex, "_initialize")
    if init is not None:
        init(store)
    mem = wasm_run._get(ex, "memory")
    if not isinstance(mem, wasmtime.Memory):
        return 0, b""
    return mem.data_len(store), mem.read(store, 0, mem.data_len(store))


# ---------------------------------------------------------------- assemble


_WABT_ERR = re.compile(r"^[^:\n]*:(\d+):(\d+): (error|warning): (.*)$", re.M)


def assemble(module_wat: str, func_start: int, func_text: str) -> tuple[bytes | None, list[Diagnostic]]:
    """wat2wasm; diagnostics inside the function get the function's own line numbers."""
    first = _line_of(module_wat, func_start)
    last = first + func_text.count("\n")
    with tempfile.TemporaryDirectory(prefix="codehone-wat-", dir=scratch.scratch_root()) as d:
        src, out = Path(d) / "m.wat", Path(d) / "m.wasm"
        src.write_text(module_wat, encoding="utf-8")
        try:
            r = subprocess.run(wabt.limited([wabt.tool("wat2wasm"), *WAT2WASM_FEATURES, str(src), "-o", str(out)]),
                               capture_output=True, timeout=120)
        except subprocess.TimeoutExpired:
            return None, [Diagnostic("wat2wasm ran over 120 s", code="assemble_timeout")]
        if r.returncode == 0 and out.exists():
            return out.read_bytes(), []
    err = r.stderr.decode("utf-8", "replace")
    diags = []
    for m in _WABT_ERR.finditer(err):
        line = int(m.group(1))
        inside = first <= line <= last
        msg = m.group(4) if inside else f"{m.group(4)} (outside the function, module line {line})"
        diags.append(Diagnostic(msg, code="wat2wasm", line=line - first + 1 if inside else None,
                                level=m.group(3)))
    if not diags and (r.returncode < 0 or "bad_alloc" in err or "out of memory" in err.lower()):
        diags.append(Diagnostic(f"wat2wasm ran out of its {wabt.MEMORY_MB} MiB", code="assemble_memory"))
    if not diags:
        diags.append(Diagnostic(err.strip()[:500] or "wat2wasm failed", code="wat2wasm"))
    return None, diags[:20]


# ---------------------------------------------------------------- execute


def _describe(o: wasm_run.Outcome) -> str:
    if o.kind == "return":
        vals = ", ".join(_fmt(v) for v in o.values)
        return f"returned ({vals})"
    return f"{o.kind}: {o.message}"


def _fmt(v: object) -> str:
    if isinstance(v, tuple) and v and v[0] == "f":
        import struct

        return repr(struct.unpack("<d", bytes.fromhex(v[1]))[0])
    return repr(v)


def compare(ref: wasm_run.Outcome, cand: wasm_run.Outcome, keep_from: int) -> str | None:
    """None when the candidate behaves like the reference, else what differs."""
    if ref.kind in ("trap", "exit"):
        if cand.kind == ref.kind == "exit" and cand.message != ref.message:
            return f"expected {ref.message}, got {cand.message}"
        if cand.kind == ref.kind == "exit":
            return _effects(ref, cand, keep_from)  # an exit is a defined end: its effects must agree
        if cand.kind in ("trap", "exit"):
            return None
        return f"expected a trap ({ref.message}), got {_describe(cand)}"
    if cand.kind != "return":
        return f"expected {_describe(ref)}, got {_describe(cand)}"
    if cand.values != ref.values:
        return f"expected {_describe(ref)}, got {_describe(cand)}"
    if cand.globals != ref.globals:
        return f"mutable globals differ after the call: expected {ref.globals}, got {cand.globals}"
    return _effects(ref, cand, keep_from)


def _effects(ref: wasm_run.Outcome, cand: wasm_run.Outcome, keep_from: int) -> str | None:
    """Imports called, output written, memory left: compared after a return or a proc_exit."""
    if cand.output != ref.output:
        i = next((k for k, (a, b) in enumerate(zip(ref.output, cand.output, strict=False)) if a != b),
                 min(len(ref.output), len(cand.output)))
        return (f"output differs at byte {i}: expected {ref.output[i:i + 40]!r}, "
                f"got {cand.output[i:i + 40]!r}")
    if cand.log != ref.log or cand.host_calls != ref.host_calls:
        i = next((k for k, (a, b) in enumerate(zip(ref.log, cand.log, strict=False)) if a != b), min(len(ref.log), len(cand.log)))
        exp = ref.log[i] if i < len(ref.log) else "no call"
        got = cand.log[i] if i < len(cand.log) else "no call"
        return f"external calls differ at call {i}: expected {exp}, got {got}"
    if cand.memory_pages != ref.memory_pages:
        return f"memory size differs: expected {ref.memory_pages} pages, got {cand.memory_pages}"
    if cand.memory != ref.memory:
        i = next(k for k in range(min(len(ref.memory), len(cand.memory))) if ref.memory[k] != cand.memory[k])
        n = sum(1 for a, b in zip(ref.memory, cand.memory, strict=True) if a != b)
        return (f"memory differs at address {keep_from + i:#x} ({n} bytes differ): expected "
                f"{ref.memory[i:i + 8].hex()}, got {cand.memory[i:i + 8].hex()}")
    return None


def judge(
    candidate: str,
    *,
    unit: dict,
    modules_dir: Path,
    tests: int = 64,
    seed: int = 0,
    fuel: int = DEFAULT_FUEL,
    timeout_s: float = 20.0,
    memory_bytes: int = DEFAULT_MEMORY,
    explore_runs: int = 2000,
) -> Verdict:
    """Judge one candidate function for `unit` (a mined c-wat unit) against its reference module.

    `tests` seeded inputs, plus up to `tests` more found by `explore_runs` coverage-guided runs
    of the reference (0 turns that off); see c_wat_explore. 64 rather than 32 tests: on 234 real
    mutants it caught 71.8% instead of 68.4%, for about a third more judging time. 2000 runs
    (stopping after 600 without new coverage) rather than 1000/300: on 12 hard mutants x 4 seeds
    it caught 39 of 48 instead of 29, for ~50% more time on a unit's first verdict only (the
    search is done once per unit; 3000/900 caught 40).
    """
    try:
        v = _judge(candidate, unit, Path(modules_dir), tests, seed, fuel, timeout_s, memory_bytes, explore_runs)
    finally:
        wasm_run.release_memory()
    return with_schema(v)


def with_schema(v: Verdict) -> Verdict:
    """The verdict schema's counts (targets/verdict.py): compiled = assembled and validated (the
    judge went on to execute, or passed validation with nothing to run); errors = the assembler's
    or validator's errors; run/passed/failed = differential inputs."""
    built = v.stage == "execute" or (v.stage == "validate" and v.ok)
    errors = 0 if built else max(1, sum(d.level == "error" for d in v.diagnostics))
    c = v.counts
    v.counts = {**c, **standard_counts(compiled=built, errors=errors, run=c.get("run", 0), passed=c.get("passed", 0),
                                       failed=c.get("failed", 0), timeouts=c.get("timeouts", 0))}
    return v


def _judge(candidate: str, unit: dict, modules_dir: Path, tests: int, seed: int, fuel: int, timeout_s: float,
           memory_bytes: int, explore_runs: int) -> Verdict:
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    name = unit["meta"].get("wat_name") or "$" + unit["name"]
    code = extract_code(candidate)
    form, diags = parse_candidate(code, name)
    timings["parse"] = time.monotonic() - t0
    if form is None:
        return Verdict(False, "parse", diags, timings=timings, isolation=ISOLATION)

    t = time.monotonic()
    try:
        ref = reference(unit, Path(modules_dir), memory_bytes)
    except (OSError, RuntimeError, KeyError, wat.WatSyntaxError, subprocess.TimeoutExpired) as e:
        return Verdict(False, "assemble", [Diagnostic(f"reference module unavailable: {e}", code="no_reference")],
                       timings=timings, isolation=ISOLATION)
    if _func_types(form) != (ref.params, ref.results):
        p, r = _func_types(form)
        return Verdict(False, "assemble", [Diagnostic(
            f"the signature must stay (param {' '.join(ref.params)}) (result {' '.join(ref.results)}); the "
            f"candidate has (param {' '.join(p)}) (result {' '.join(r)})", code="signature_mismatch", line=1)],
            timings=timings, isolation=ISOLATION)
    module, func = (ref.module_wat, ref.func) if ref.pruned is None or ref.pruned.admits(form) else ref.full
    text = module[: func.start] + form + module[func.end:]
    wasm, diags = assemble(text, func.start, form)
    timings["assemble"] = time.monotonic() - t
    if wasm is None:
        return Verdict(False, "assemble", diags, timings=timings, isolation=ISOLATION)

    t = time.monotonic()
    try:
        cand = wasm_run.prepare(wasm, ref.layout.globals)
    except Exception as e:
        timings["validate"] = time.monotonic() - t
        return Verdict(False, "validate", [Diagnostic(str(e).strip()[:1000], code="wasmtime")],
                       timings=timings, isolation=ISOLATION)
    timings["validate"] = time.monotonic() - t
    if ref.prepared is None or ref.error:
        return Verdict(True, "validate", [Diagnostic(f"not executed: {ref.error}", code="not_executable",
                                                     level="warning")],
                       counts={"tests": 0, "executed": False}, timings=timings, isolation=ISOLATION)

    t = time.monotonic()
    verdict = _execute(ref, cand, unit, tests, seed, fuel, timeout_s, memory_bytes, explore_runs)
    timings["execute"] = time.monotonic() - t
    verdict.timings = {**timings, **verdict.timings}
    return verdict


def _explorer(ref: Reference) -> explore.Explorer | None:
    """The instrumented copy of the reference, built once per unit (after _analysis: it takes the
    static addresses from there)."""
    if ref.explorer is None and ref.explore_error is None:
        cov_addr = ref.base + inputs.GROW_PAGES * inputs.PAGE
        main = explore.instrument(ref.func.text, cov_addr, table=ref.table)
        # The direct callees get the load trace and the comparison log too (no probes): checks such as
        # zlib's inflateStateCheck(strm) read the input there.
        edits = {ref.func.name: (ref.func, main.text)}
        cmps, ordering, probes = main.cmps, main.ordering, main.probes
        for f in ref.callee_fields:
            # Their branches count as coverage too (a wrapper's behaviour is its callees'; `if
            # (grow(a) != OK) return err` is passed by inputs on which the callee succeeds), while
            # there is room for their probes in the coverage page.
            sub = explore.instrument(f.text, cov_addr, cmp_start=cmps, table=ref.table, probe_start=probes)
            if sub.probes == 0:
                sub = explore.instrument(f.text, cov_addr, probes=False, cmp_start=cmps, table=ref.table)
            else:
                probes = sub.probes
            cmps, ordering = cmps + sub.cmps, ordering + sub.ordering
            edits[f.name] = (f, sub.text)
        for name, f in ref.funcs.items():  # strcmp-like functions at any depth log their arguments
            if explore.compares_strings(name, f.text):
                text = edits[name][1] if name in edits else f.text
                edits[name] = (f, explore.hook_compare(text, cov_addr, "mem" in name.lower() or "bcmp" in name))
        edits = sorted(((f.start, f.end, new) for f, new in edits.values()), reverse=True)
        module = ref.module_wat
        for start, end, new in edits:
            module = module[:start] + new + module[end:]
        wasm, diags = assemble(module, 0, module)
        try:
            if wasm is None:
                raise RuntimeError("; ".join(d.message for d in diags[:2]))
            prep = wasm_run.prepare(wasm, ref.layout.globals)
            ref.explorer = explore.Explorer(prep, probes, cov_addr - ref.layout.keep_from, cmps, ordering,
                                            ref.statics, ref.fptrs, explore.addends(ref.func.text + "\n" + ref.callees),
                                            ref.analysis[5] if ref.analysis else (), own_probes=main.probes)
        except Exception as e:  # exploring is an improvement, never a requirement
            ref.explore_error = str(e)[:300]
    return ref.explorer


def _analysis(ref: Reference, unit: dict) -> tuple:
    """What input generation reads off the unit and its reference code, worked out once per reference:
    (params, C types, integer constants, field hints, float constants, static addresses)."""
    if ref.analysis is None:
        c_params = unit["meta"].get("c_params")
        code = ref.func.text + "\n" + ref.callees
        ref.analysis = (
            inputs.param_kinds(unit.get("signature", ""), unit["name"], ref.params, ref.results, c_params),
            c_params.get("types") if c_params else None,
            inputs.constants(code),
            inputs.field_hints(code),
            inputs.float_constants(ref.func.text),
            inputs.static_addresses(code, ref.layout.keep_from, ref.base),
        )
    return ref.analysis


def _execute(ref: Reference, cand: wasm_run.Prepared, unit: dict, tests: int, seed: int, fuel: int,
             timeout_s: float, memory_bytes: int, explore_runs: int) -> Verdict:
    deadline = time.monotonic() + timeout_s
    params, types, consts, hints, fconsts, statics = _analysis(ref, unit)
    kinds = [p.kind for p in params]
    # `tests` untyped inputs, then half as many again with the C types and seeded statics: extra,
    # not instead (on the mutant benchmark, replacing untyped tests lost 7 of the catches they made).
    # Built once per (unit, seed, tests): every candidate for the unit sees the same ones.
    base_inputs = ref.inputs.get((seed, tests))
    if base_inputs is None:
        base_inputs = [inputs.make_input(params, seed, i, ref.base, consts, hints, fconsts, fptrs=ref.fptrs)
                       for i in range(tests)]
        if (types and any(p.ctype is not None for p in params)) or statics:
            base_inputs += [inputs.make_input(params, seed, i, ref.base, consts, hints, fconsts, types, statics,
                                              ref.fptrs) for i in range(tests, tests + tests // 2)]
        ref.inputs[(seed, tests)] = base_inputs
    ekey = (seed, tests, explore_runs, fuel, memory_bytes)
    if explore_runs > 0 and ekey not in ref.extra:
        ex = _explorer(ref)
        ref.extra[ekey] = explore.explore(ex, base_inputs, params, consts, hints, seed, explore_runs, tests,
                                          min(fuel, 2_000_000), memory_bytes, ref.layout.keep_from,
                                          ref.tokens) if ex else []
    all_inputs = base_inputs + ref.extra.get(ekey, [])
    hot = _hot_outcomes(ref)
    total = len(all_inputs)
    counts = {"tests": total, "explored": total - len(base_inputs), "typed": len(base_inputs) - tests,
              "run": 0, "passed": 0, "failed": 0, "skipped": 0, "timeouts": 0,
              "reference_traps": 0, "pointer_params": sum(p.kind in ("ptr", "str") for p in params),
              "ambiguous_params": sum(p.kind == "ambiguous" for p in params), "executed": True}
    for i, inp in enumerate(all_inputs):
        left = deadline - time.monotonic()
        if left <= 0:  # the reference is what used the time (a slow candidate fails in `compare`)
            counts["skipped"] += total - i
            break
        key = (seed, i, fuel, memory_bytes, ekey if i >= len(base_inputs) else None)
        r = hot.get(key) or ref.outcomes.get(key)
        if r is None:
            r = wasm_run.run(ref.prepared, TARGET_EXPORT, inp.args, inp.arena, inputs.GROW_PAGES,
                             wasm_run.Limits(fuel, left, memory_bytes), ref.layout.keep_from,
                             stub_seed=inp.stub_seed, statics=inp.statics, stack_top=ref.layout.keep_from)
            if r.kind != "timeout":
                ref.outcomes[key] = memory_diff.pack(r, _start(ref, inp)) if r.memory else r
                hot[key] = r
        elif isinstance(r, memory_diff.Packed):
            r = hot[key] = memory_diff.unpack(r, _start(ref, inp))
        if r.kind in ("fuel", "timeout", "error"):
            counts["skipped"] += 1
            counts["timeouts"] += r.kind == "timeout"
            continue
        counts["run"] += 1
        if r.kind in ("trap", "exit"):
            counts["reference_traps"] += 1
        # wasmtime's fuel counter is exact only on a normal return (a trap can leave it unflushed).
        budget = min(fuel, 10 * r.fuel_used + 1_000_000) if r.kind == "return" else fuel
        c = wasm_run.run(cand, TARGET_EXPORT, inp.args, inp.arena, inputs.GROW_PAGES,
                         wasm_run.Limits(budget, max(0.05, deadline - time.monotonic()), memory_bytes),
                         ref.layout.keep_from, stub_seed=inp.stub_seed, statics=inp.statics,
                         expect_memory=r.memory if r.kind == "return" else None, stack_top=ref.layout.keep_from)
        why = compare(r, c, ref.layout.keep_from)
        if why is None:
            counts["passed"] += 1
            continue
        counts["failed"] += 1
        counts["timeouts"] += c.kind == "timeout"
        if c.kind == "fuel":
            why = f"{why} (the reference used {r.fuel_used} instructions; the candidate was allowed {budget})"
        args = ", ".join(f"{k}={_fmt(wasm_run._norm(a))}" for k, a in zip(kinds, inp.args, strict=True))
        msg = f"test {i} ({args}): {why}"
        code = {"fuel": "out_of_fuel", "timeout": "timeout"}.get(c.kind, "mismatch")
        return Verdict(False, "execute", [Diagnostic(msg, code=code)], counts=counts, isolation=ISOLATION)
    diags = []
    if counts["run"] == 0:
        diags.append(Diagnostic("no test could be run: the reference ran out of fuel or time on every input",
                                code="no_tests", level="warning"))
    elif counts["reference_traps"] == counts["run"]:
        diags.append(Diagnostic("the reference trapped on every input: only trapping was compared",
                                code="all_traps", level="warning"))
    return Verdict(True, "execute", diags, counts=counts, isolation=ISOLATION)


_HOT: list = [None, {}]  # [the reference judged last, its outcomes with memory expanded]


def _hot_outcomes(ref: Reference) -> dict:
    """The reference outcomes of the unit judged last, memory and all: check() judges a unit's
    candidates one after another, and expanding each outcome from its packed form for every one
    of them cost ~8% of a warm verdict. One unit's worth (~1 MB per test) is kept this way; the
    others stay packed (memory_diff)."""
    if _HOT[0] is not ref:
        _HOT[0], _HOT[1] = ref, {}
    return _HOT[1]


def _start(ref: Reference, inp: inputs.TestInput) -> bytes:
    """Memory from the compared start up as the call under test finds it (see memory_diff)."""
    return memory_diff.start_image(ref.statics, inputs.GROW_PAGES, inp.arena, inp.statics, ref.layout.keep_from)


def cache_key(candidate: str, unit: dict) -> str:
    """What a verdict depends on, for a content-addressed verdict cache."""
    h = hashlib.sha256()
    for part in (candidate, unit["meta"]["module"], unit["meta"].get("wat_name", ""), unit.get("signature", ""),
                 wasmtime.__version__ if hasattr(wasmtime, "__version__") else "", wabt.version()):
        h.update(part.encode("utf-8", "replace") + b"\0")
    return h.hexdigest()
