"""Typed inputs: build the objects a function's pointer parameters point to, from their C layouts.

Mine records each unit's parameter types and struct layouts from the
compiler's DWARF (`meta["c_params"]`, see codehone.wasm_dwarf). With them a
`z_streamp strm` gets a real `z_stream` in the arena: its pointer fields point
to further objects of the right types (`strm->state` to a `deflate_state`
whose `strm` field sometimes points back), its integer fields hold small
numbers, enum values or the function's own constants, its `char *` fields
NUL-terminated strings. Random words get past `if (!strm || !strm->state)`
rarely and past five such checks almost never; typed objects get past most
of them, so the judge compares what the function does further down.

Everything is drawn from the caller's seeded `random.Random`, so the
reference and the candidate see identical bytes.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

MAX_ELEMS = 256  # array elements filled one by one; the rest keep the arena's random content
BUFFER_SIZES = (16, 64, 256, 1024, 4096)  # for `T *` where T is not a struct: a buffer of some length


@dataclass
class Arena:
    """A bump allocator over the input arena (offsets relative to its start)."""

    data: bytearray
    base: int  # the arena's address in linear memory
    top: int = 0
    limit: int = 0
    objects: dict[str, list[int]] = field(default_factory=dict)  # type id -> offsets of objects of that type
    fptrs: tuple[int, ...] = ()  # table indices a function pointer field may hold (c_wat.table_candidates)

    def alloc(self, size: int, align: int = 8) -> int | None:
        at = (self.top + align - 1) // align * align
        if at + max(size, 1) > self.limit:
            return None
        self.top = at + max(size, 1)
        return at

    def put(self, off: int, value: int, size: int) -> None:
        if off >= 0 and off + size <= len(self.data):
            self.data[off:off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def funcptr(rng: random.Random, fptrs: tuple[int, ...], spare: range) -> int:
    """A function pointer (table index): one of `fptrs` (functions of a type the code calls
    indirectly) three times in four, else any index in `spare`."""
    return rng.choice(fptrs) if fptrs and rng.random() < 0.75 else rng.choice(spare)


def _strip(types: dict, tid: str | None) -> dict | None:
    return types.get(tid) if tid is not None else None


def is_char(types: dict, tid: str | None) -> bool:
    d = _strip(types, tid)
    return d is not None and d["k"] == "int" and d["size"] == 1


def _int_value(rng: random.Random, d: dict, consts: tuple[int, ...]) -> int:
    if d.get("enum") and rng.random() < 0.8:
        return rng.choice(d["enum"])
    r = rng.random()
    if r < 0.3:
        return 0
    if r < 0.6:
        return rng.choice((1, 1, 2, 3, 4, 8, 16, 32, 255, -1))
    if consts and r < 0.8:
        return rng.choice(consts) + rng.choice((0, 0, 1, -1))
    if r < 0.9:
        return rng.randint(0, 1024)
    return rng.getrandbits(8 * d["size"])


def fill(rng: random.Random, a: Arena, off: int, tid: str | None, types: dict, consts: tuple[int, ...],
         text, depth: int, ancestors: dict[str, int]) -> None:
    """Write a value of type `tid` at arena offset `off`."""
    d = _strip(types, tid)
    if d is None:
        return  # void or unknown: the arena's random bytes stay
    k = d["k"]
    if k == "int":
        a.put(off, _int_value(rng, d, consts), d["size"])
    elif k == "float":
        v = rng.choice((0.0, 1.0, -1.0, 0.5, rng.uniform(-100, 100), rng.uniform(0, 1)))
        if d["size"] == 4:
            a.data[off:off + 4] = struct.pack("<f", v)
        elif d["size"] == 8:
            a.data[off:off + 8] = struct.pack("<d", v)
    elif k == "fptr":
        a.put(off, funcptr(rng, a.fptrs, range(4)), 4)
    elif k == "ptr":
        a.put(off, pointer(rng, a, d.get("to"), types, consts, text, depth, ancestors), 4)
    elif k in ("struct", "union"):
        fields = d["fields"][:1] if k == "union" and rng.random() < 0.7 else d["fields"]
        link = _first_link(types, tid, fields)
        for foff, ftid in fields:
            if foff == link:  # `next`: a fresh node or NULL, never back up the list (a cycle never ends)
                a.put(off + foff, pointer(rng, a, types[ftid].get("to"), types, consts, text, depth, ancestors, True), 4)
            else:
                fill(rng, a, off + foff, ftid, types, consts, text, depth, ancestors)
    elif k == "array":
        of = _strip(types, d.get("of"))
        if of is None or d["n"] <= 0:
            return
        esize = max(1, of.get("size", 1))
        if of["k"] == "int" and esize == 1:
            return  # a char array: random bytes, or text the caller wrote
        for i in range(min(d["n"], MAX_ELEMS)):
            fill(rng, a, off + i * esize, d["of"], types, consts, text, depth, ancestors)


def _first_link(types: dict, tid: str, fields: list) -> int | None:
    """The offset of the first field that points to the struct's own type (a list's `next`)."""
    for foff, ftid in fields:
        fd = types.get(ftid)
        if fd is not None and fd["k"] == "ptr" and fd.get("to") == tid:
            return foff
    return None


def pointer(rng: random.Random, a: Arena, to: str | None, types: dict, consts: tuple[int, ...], text,
            depth: int, ancestors: dict[str, int], link: bool = False) -> int:
    """An address for a `to *`: NULL now and then, a back-pointer to an enclosing object of that type
    (zlib's `s->strm == strm`; for a pointer to the object's own type, such as a list's `prev`, the
    object it was reached from), or a fresh object; random bytes once the depth is spent. A `link`
    (a list's `next`) is never a back-pointer and ends the list, NULL, once the depth is spent: lists
    are finite and their `prev` pointers lead back."""
    r = rng.random()
    if r < 0.08 or (link and depth <= 1 and r < 0.8):
        return 0
    if to in ancestors and r < 0.5 and not link:
        return a.base + ancestors.get("^" + to, ancestors[to])
    d = _strip(types, to)
    if d is not None and d["k"] == "int" and d["size"] == 1:
        s = text(rng, 64)
        at = a.alloc(len(s), 1)
        if at is None:
            return a.base + rng.randrange(0, max(1, len(a.data) - 256), 8)
        a.data[at:at + len(s)] = s
        return a.base + at
    if d is None or d["k"] not in ("struct", "union") or depth <= 0:
        size = rng.choice(BUFFER_SIZES)
        if d is not None and d.get("size"):
            size = max(size, d["size"] * 4)
        at = a.alloc(size)
        if at is None:
            return a.base + rng.randrange(0, max(1, len(a.data) - 256), 8)
        if d is not None and d["k"] in ("int", "float", "ptr", "fptr"):
            esize = max(1, d.get("size", 4))
            for i in range(min(size // esize, MAX_ELEMS // 4)):
                fill(rng, a, at + i * esize, to, types, consts, text, depth - 1, ancestors)
        return a.base + at
    return a.base + new_object(rng, a, to, types, consts, text, depth, ancestors)


def new_object(rng: random.Random, a: Arena, tid: str, types: dict, consts: tuple[int, ...], text, depth: int,
               ancestors: dict[str, int], count: int = 0) -> int:
    """Allocate and fill `count` (default: 1 to 4 when small) objects of struct type `tid`; their offset."""
    d = types[tid]
    size = max(4, d.get("size") or 4)
    if count <= 0:
        count = rng.choice((1, 1, 2, 4)) if size <= 256 else 1
    at = a.alloc(size * count)
    if at is None:
        return rng.randrange(0, max(1, len(a.data) - size - 8), 8) if len(a.data) > size + 8 else 0
    inner = {**ancestors, tid: at}
    if tid in ancestors:
        inner["^" + tid] = ancestors[tid]  # the object of the same type this one was reached from
    for i in range(count):
        fill(rng, a, at + i * size, tid, types, consts, text, depth - 1, inner)
    return at
