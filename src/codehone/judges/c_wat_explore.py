"""Coverage-guided search for inputs that reach deeper into the reference function.

Random memory rarely gets past `if (state->mode != GZ_READ) return -1;`, so a
judge that only generates inputs blindly tests the first few lines of most
real functions, and a wrong candidate that differs further down passes. This
is a small fuzzer, run once per unit on the *reference* (never the candidate):

  * instrument: a copy of the reference function gets a probe after every
    `block`, `loop`, `if`, `else`, `end` and `br_if` (a byte store into a
    coverage page placed after the input arena);
  * explore: starting from the seeded inputs, mutate one (arena words near
    the pointer arguments or anywhere, scalar arguments) toward the function's
    own constants, NULL, small numbers and arena addresses; keep a mutated
    input when a run that *returns* sets a probe no earlier input set
    (a trapping run compares little: both sides just trap); the answers of
    stubbed imports (their seed) are mutated too;
  * the kept inputs become extra tests, identical for reference and candidate.

A fixed number of runs (not a time budget) keeps the search deterministic for a
seed, so a verdict does not depend on machine load.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from . import c_wat_inputs as inputs
from . import wasm_run

_PROBE_AFTER = re.compile(r"^\s*(block|loop|if|else|end|br_if)\b")


def instrument(func_text: str, cov_addr: int) -> tuple[str, int]:
    """The function with a coverage probe after each control-flow point; (text, number of probes)."""
    out: list[str] = []
    n = 0
    lines = func_text.splitlines()
    for i, line in enumerate(lines):
        out.append(line)
        code = line.split(";;")[0].rstrip()
        if _PROBE_AFTER.match(code) and not code.endswith(")"):
            indent = re.match(r"\s*", lines[min(i + 1, len(lines) - 1)]).group(0) or "    "
            out.append(f"{indent}i32.const {cov_addr + n}\n{indent}i32.const 1\n{indent}i32.store8")
            n += 1
    return "\n".join(out), n


@dataclass
class Explorer:
    prepared: wasm_run.Prepared  # the module with the instrumented reference
    probes: int
    cov_offset: int  # where the coverage page starts in Outcome.memory


def _value(rng: random.Random, consts: tuple[int, ...], base: int, size: int) -> int:
    r = rng.random()
    if consts and r < 0.35:
        return rng.choice(consts) + rng.choice((0, 0, 0, 1, -1))
    if r < 0.5:
        return 0
    if r < 0.65:
        return rng.choice((1, 2, 3, 4, 8, 16, 32, 64, 128, 255, 256, -1))
    if r < 0.9:
        return base + rng.randrange(0, size - 64, 8)
    return rng.getrandbits(32)


def _mutate(rng: random.Random, inp: inputs.TestInput, params: list[inputs.Param], consts: tuple[int, ...],
            hints: tuple[tuple[int, int, int], ...]) -> inputs.TestInput:
    arena = bytearray(inp.arena)
    args = list(inp.args)
    size = len(arena)
    ptrs = [a - inp.base for a, p in zip(args, params, strict=True)
            if p.kind in ("ptr", "str", "ambiguous") and isinstance(a, int) and 0 <= a - inp.base < size - 256]
    scalars = [j for j, p in enumerate(params) if p.kind in ("scalar", "ambiguous")]
    for _ in range(rng.choice((1, 1, 2, 3, 4))):
        r = rng.random()
        if scalars and (r < 0.2 or not ptrs and r < 0.6):
            j = rng.choice(scalars)
            w = params[j].wasm
            v = (rng.choice(consts) + rng.choice((0, 1, -1))) if consts and rng.random() < 0.5 else \
                inputs.scalar(rng, w, 10**6, j, [], consts)
            args[j] = inputs._wrap(v, w)
        elif ptrs and r < 0.75:
            off = rng.choice(ptrs)
            if hints and rng.random() < 0.2:
                inputs._apply_hints(rng, arena, off, hints)
                continue
            at = off + 4 * rng.randrange(0, 48)
            arena[at:at + 4] = (_value(rng, consts, inp.base, size) & 0xFFFFFFFF).to_bytes(4, "little")
        elif ptrs and r < 0.85:
            off = rng.choice(ptrs)  # a byte, for char fields and strings
            arena[off + rng.randrange(0, 64)] = rng.choice((0, 1, 2, rng.randrange(256), *b"\"{[:,0-a"))
        else:
            at = 4 * rng.randrange(0, size // 4)
            arena[at:at + 4] = (_value(rng, consts, inp.base, size) & 0xFFFFFFFF).to_bytes(4, "little")
    stub = rng.getrandbits(16) if rng.random() < 0.3 else inp.stub_seed
    return inputs.TestInput(args, bytes(arena), inp.base, stub)


def explore(ex: Explorer, seeds: list[inputs.TestInput], params: list[inputs.Param], consts: tuple[int, ...],
            hints: tuple[tuple[int, int, int], ...], seed: int, runs: int, keep: int, fuel: int,
            memory_bytes: int, keep_from: int) -> list[inputs.TestInput]:
    """Up to `keep` inputs, beyond `seeds`, each of which reached a probe nothing before it did."""
    rng = random.Random(f"explore:{seed}")
    seen: set[int] = set()
    pool: list[inputs.TestInput] = []
    found: list[inputs.TestInput] = []
    limits = wasm_run.Limits(fuel, 5.0, memory_bytes)

    def coverage(inp: inputs.TestInput) -> set[int] | None:
        o = wasm_run.run(ex.prepared, "__codehone_target", inp.args, inp.arena, inputs.ARENA_PAGES + 1, limits,
                         keep_from, stub_seed=inp.stub_seed)
        if o.kind != "return":
            return None
        page = o.memory[ex.cov_offset: ex.cov_offset + ex.probes]
        return {i for i, b in enumerate(page) if b}

    for inp in seeds:
        cov = coverage(inp)
        if cov is not None:
            seen |= cov
            pool.append(inp)
    if not pool:
        pool = list(seeds)
    for _ in range(runs):
        if len(found) >= keep or len(seen) >= ex.probes:
            break
        parent = rng.choice(pool[-16:]) if found and rng.random() < 0.5 else rng.choice(pool)
        child = _mutate(rng, parent, params, consts, hints)
        cov = coverage(child)
        if cov is not None and cov - seen:
            seen |= cov
            pool.append(child)
            found.append(child)
    return found
