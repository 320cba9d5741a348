"""Reference outcomes kept as the difference from the memory the call started with.

Why: the c-wat judge keeps the reference's outcome on every test of a unit (~130), so a further
candidate for the unit runs only its own side. Each outcome held a copy of linear memory from the
stack top up (~1 MB on cJSON): four units per process came to ~0.5 GB, twice that at -j 2. A call
changes a few KB of it; the rest is the start image (memory after `_initialize`, the grown pages,
the input arena and seeded statics), which is rebuilt from the test's inputs when it is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .wasm_run import Outcome

GAP = 32  # changed runs closer than this are stored as one


def start_image(initial: bytes, grow_pages: int, arena: bytes, statics: tuple, keep_from: int) -> bytes:
    """Linear memory from `keep_from` up as the call under test found it: `initial` (after
    `_initialize`), `grow_pages` more pages with the arena at their start, then the statics written
    (as wasm_run.run does it). One copy of each part: this runs once per test of every verdict."""
    base = len(initial)
    head: bytes | bytearray = initial
    if statics:
        head = bytearray(initial)
        for addr, data in statics:
            if addr >= 0 and addr + len(data) <= base:
                head[addr:addr + len(data)] = data
    rest = grow_pages * 65536 - len(arena)
    return b"".join((memoryview(head)[keep_from:], arena, _zeros(rest)))


def _zeros(n: int) -> memoryview:
    global _ZEROS
    if len(_ZEROS) < n:
        _ZEROS = bytes(n)
    return memoryview(_ZEROS)[:n]


_ZEROS = b""


@dataclass(frozen=True)
class Packed:
    outcome: Outcome  # with memory=b""
    size: int  # len(memory)
    runs: tuple[tuple[int, bytes], ...]  # (offset, bytes) where memory differs from the start image


def pack(o: Outcome, start: bytes) -> Packed:
    mem = np.frombuffer(o.memory, dtype=np.uint8)
    ref = np.zeros(len(mem), dtype=np.uint8)
    n = min(len(mem), len(start))
    ref[:n] = np.frombuffer(start, dtype=np.uint8, count=n)
    idx = np.flatnonzero(mem != ref)
    runs = []
    if len(idx):
        breaks = np.flatnonzero(np.diff(idx) > GAP)
        starts = np.concatenate(([idx[0]], idx[breaks + 1]))
        ends = np.concatenate((idx[breaks], [idx[-1]])) + 1
        runs = [(int(s), o.memory[s:e]) for s, e in zip(starts, ends, strict=True)]
    return Packed(replace(o, memory=b""), len(o.memory), tuple(runs))


def unpack(p: Packed, start: bytes) -> Outcome:
    view = memoryview(start)
    parts: list = []
    at = 0
    for off, data in p.runs:
        parts += [view[at:min(off, len(start))], _zeros(max(0, off - max(at, len(start)))), data]
        at = off + len(data)
    parts += [view[min(at, len(start)):p.size], _zeros(max(0, p.size - max(at, len(start))))]
    return replace(p.outcome, memory=b"".join(parts))


def held(p: Packed | Outcome) -> int:
    """Bytes of memory an outcome keeps (for the tests)."""
    return sum(len(d) for _, d in p.runs) if isinstance(p, Packed) else len(p.memory)
