"""Inputs for differential execution of one C function compiled to wasm32.

The wasm signature says only `i32`; the C signature says which of those are
addresses. A pointer argument that is a random integer makes nearly every
function trap on its first load (memory is a few pages, an i32 spans 4 GiB),
so reference and candidate would "agree" on a trap and nothing is tested. So:

  * the C signature (`unit["signature"]`, parsed with tree-sitter-c) gives each
    wasm parameter a *kind*: `scalar`, `ptr`, `str` (a char pointer),
    `funcptr` (a table index), or `ambiguous` (an unknown typedef such as
    `z_streamp` or `uInt`, which may be either);
  * pointers point into an *arena*: fresh pages grown past the module's data
    and heap, filled with seeded, pointer-rich content (a word is NULL, a small
    int, an address inside the arena, ASCII, or random), so a struct walked by
    the function leads to more valid structs and NUL-terminated lists end;
  * `ambiguous` parameters are an arena address in odd tests and a scalar in
    even ones, so both readings get tested;
  * scalars get edge values (0, 1, -1, min, max; NaN, ±inf, -0.0 for floats)
    mixed with small and full-range seeded random values.

Everything is a pure function of (signature, wasm types, seed, test index), so
the reference and the candidate see byte-identical inputs.
"""

from __future__ import annotations

import functools
import math
import random
import re
import struct
from dataclasses import dataclass

import numpy as np
import tree_sitter_c
from tree_sitter import Language, Node, Parser

ARENA_PAGES = 2  # 128 KiB of input memory per test
PAGE = 65536

# Typedef names that are integers although tree-sitter cannot know it (zlib, POSIX, musl).
_SCALAR_TYPEDEF = re.compile(
    r"^(u?int\d*(_least\d+|_fast\d+)?_t|u?intmax_t|s?size_t|ptrdiff_t|u?intptr_t|off_t|off64_t|"
    r"wchar_t|wint_t|wctype_t|mode_t|pid_t|uid_t|gid_t|time_t|clock_t|clockid_t|socklen_t|"
    r"dev_t|ino_t|nlink_t|blksize_t|blkcnt_t|useconds_t|suseconds_t|locale_t_scalar|"
    r"uInt|uLong|uLongf|Byte|Bytef|Bool|BOOL|bool|_Bool|u8|u16|u32|u64|i8|i16|i32|i64|"
    r"u_char|u_short|u_int|u_long|uchar|ushort|uint|ulong|z_size_t|z_off_t|z_off64_t|"
    r"z_crc_t|cJSON_bool|sqlite3_int64|sqlite3_uint64|sqlite_int64|sqlite_uint64|i64|u64|"
    r"double_t|float_t|__wasi_\w+_t|errno_t|sig_atomic_t|fpos_t_scalar)$"
)
# Typedef names that are pointers by convention (zlib's z_streamp, voidpf, ...).
_POINTER_TYPEDEF = re.compile(r"^(va_list|__builtin_va_list|voidp|voidpf|voidpc|\w+_?[pP]tr|\w*[a-z]p)$")


@dataclass(frozen=True)
class Param:
    kind: str  # scalar | ptr | str | funcptr | ambiguous
    wasm: str  # i32 | i64 | f32 | f64


@functools.cache
def _parser() -> Parser:
    return Parser(Language(tree_sitter_c.language()))


def _find_declarator(node: Node, name: str) -> Node | None:
    """The function_declarator whose identifier is `name` (depth-first)."""
    if node.type == "function_declarator":
        d = node.child_by_field_name("declarator")
        if d is not None and d.type == "identifier" and d.text.decode() == name:
            return node
    for c in node.named_children:
        found = _find_declarator(c, name)
        if found is not None:
            return found
    return None


def _param_kind(p: Node) -> list[str]:
    """C kinds for one parameter_declaration; `long double` takes two wasm slots."""
    decl = p.child_by_field_name("declarator")
    typ = p.child_by_field_name("type")
    # Any pointer/array in the declarator makes it an address; a parenthesised one a function pointer.
    kinds: list[str] = []
    node = decl
    while node is not None:
        if node.type == "function_declarator":
            return ["funcptr"]
        if node.type in ("pointer_declarator", "abstract_pointer_declarator", "array_declarator",
                         "abstract_array_declarator"):
            kinds.append("ptr")
            break
        node = node.child_by_field_name("declarator") or (
            node.named_children[0] if node.type == "parenthesized_declarator" and node.named_children else None)
    if kinds:
        type_text = typ.text.decode() if typ is not None else ""
        return ["str" if re.search(r"\bchar\b|Bytef|\bu8\b|uchar", type_text) else "ptr"]
    if typ is None:
        return ["ambiguous"]
    text = typ.text.decode()
    if typ.type == "primitive_type" or typ.type == "sized_type_specifier":
        return ["scalar", "scalar"] if re.search(r"long\s+double", p.text.decode()) else ["scalar"]
    if typ.type == "enum_specifier":
        return ["scalar"]
    if typ.type in ("struct_specifier", "union_specifier"):
        return ["ptr"]  # by value: wasm32 passes a pointer to a copy
    if typ.type == "type_identifier":
        if _SCALAR_TYPEDEF.match(text):
            return ["scalar"]
        if _POINTER_TYPEDEF.match(text):
            return ["ptr"]
    return ["ambiguous"]


def param_kinds(signature: str, name: str, wasm_params: list[str], wasm_results: list[str]) -> list[Param]:
    """One Param per wasm parameter, from the C signature; unknown mappings fall back to `ambiguous`."""
    tree = _parser().parse((signature.strip().rstrip("{").strip() + ";").encode("utf-8", "replace"))
    fd = _find_declarator(tree.root_node, name)
    kinds: list[str] | None = None
    if fd is not None:
        plist = fd.child_by_field_name("parameters")
        kinds = []
        variadic = False
        for p in plist.named_children if plist is not None else []:
            if p.type == "variadic_parameter":
                variadic = True
            elif p.type == "parameter_declaration":
                if p.text.decode().strip() == "void":
                    continue
                kinds.extend(_param_kind(p))
        if variadic:
            kinds.append("ptr")  # the va_list buffer
        if len(kinds) == len(wasm_params) - 1 and not wasm_results and wasm_params[:1] == ["i32"]:
            kinds.insert(0, "ptr")  # struct returned through a hidden sret pointer
    if kinds is None or len(kinds) != len(wasm_params):
        kinds = ["ambiguous" if t == "i32" else "scalar" for t in wasm_params]
    out = []
    for k, t in zip(kinds, wasm_params, strict=True):
        if t != "i32":
            k = "scalar"  # an i64/f32/f64 is never a wasm32 address
        out.append(Param(k, t))
    return out


# ---------------------------------------------------------------- values

_INT_EDGES = {
    "i32": [0, 1, -1, 2, -2, 0x7FFFFFFF, -0x80000000, 255, 256, 65535],
    "i64": [0, 1, -1, 2, 0x7FFFFFFFFFFFFFFF, -0x8000000000000000, 0xFFFFFFFF, 255],
}
_FLOAT_EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, math.nan, math.inf, -math.inf, 1e-310, 3.4028234663852886e38,
                1.7976931348623157e308, 2.0**31, -2.0**63]


def _f32(x: float) -> float:
    try:
        return struct.unpack("<f", struct.pack("<f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def _random_scalar(rng: random.Random, wasm: str) -> int | float:
    """A seeded mix: an edge value, a small value (sizes, counts, characters), or any bit pattern."""
    r = rng.random()
    if wasm in ("i32", "i64"):
        bits = 32 if wasm == "i32" else 64
        if r < 0.2:
            return rng.choice(_INT_EDGES[wasm])
        if r < 0.7:
            return rng.randint(0, 64)
        v = rng.getrandbits(bits)
        return v - (1 << bits) if v >> (bits - 1) else v
    if r < 0.3:
        v = rng.choice(_FLOAT_EDGES)
    elif r < 0.8:
        v = rng.uniform(-1000.0, 1000.0)
    else:
        fmt, bits = ("<d", 64) if wasm == "f64" else ("<f", 32)
        v = struct.unpack(fmt, rng.getrandbits(bits).to_bytes(bits // 8, "little"))[0]
    return v


def _wrap(v: int | float, wasm: str) -> int | float:
    if wasm in ("i32", "i64"):
        bits = 32 if wasm == "i32" else 64
        v = int(v) & ((1 << bits) - 1)
        return v - (1 << bits) if v >> (bits - 1) else v
    return _f32(float(v)) if wasm == "f32" else float(v)


def scalar(rng: random.Random, wasm: str, test: int, j: int, earlier: list[tuple[str, int | float]]) -> int | float:
    """The value of scalar parameter number `j` in test number `test`.

    Tests 0..E-1 rotate through the E edge values (each parameter sees every edge once);
    tests E..2E-1 give every parameter the *same* edge value (a == b is where `<` and `<=`
    differ); later tests are random, and a parameter copies an earlier one of the same
    type, or its neighbour (±1), a quarter of the time.
    """
    edges = _INT_EDGES[wasm] if wasm in ("i32", "i64") else _FLOAT_EDGES
    e = len(edges)
    if test < e:
        return _wrap(edges[(test + j) % e], wasm)
    if test < 2 * e:
        return _wrap(edges[test - e], wasm)
    same = [v for t, v in earlier if t == wasm]
    if same and rng.random() < 0.25:
        return _wrap(rng.choice(same) + rng.choice((0, 0, 1, -1)), wasm)
    return _wrap(_random_scalar(rng, wasm), wasm)


_TEXT = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;-_/\\\"'{}[]()+=*&%$#@!?\n\t"


@functools.lru_cache(maxsize=256)
def _arena(seed: int, test: int, base: int, size: int) -> bytes:
    return bytes(arena_bytes(seed, test, base, size))


def arena_bytes(seed: int, test: int, base: int, size: int) -> bytearray:
    """Pointer-rich random content: each aligned word is NULL, small, an arena address, text or random.

    numpy (PCG64, seeded by (seed, test)) because this runs per test and a Python loop over
    32k words costs more than the wasm it feeds.
    """
    g = np.random.default_rng([seed & 0xFFFFFFFF, test])
    n = size // 4
    r = g.random(n)
    words = g.integers(0, 1 << 32, n, dtype=np.uint64)
    small = g.integers(1, 256, n, dtype=np.uint64)
    addrs = base + 8 * g.integers(0, (size - 64) // 8, n, dtype=np.uint64)
    txt = np.frombuffer(_TEXT, dtype=np.uint8)[g.integers(0, len(_TEXT), 4 * n)].view("<u4").astype(np.uint64)
    out = np.where(r < 0.25, 0, np.where(r < 0.45, small, np.where(r < 0.7, addrs, np.where(r < 0.85, txt, words))))
    return bytearray(out.astype("<u4").tobytes())


def text(rng: random.Random, n: int) -> bytes:
    """A NUL-terminated string: sometimes JSON- or number-like, since parsers are common."""
    r = rng.random()
    if r < 0.2:
        body = rng.choice([b"", b"0", b"-12.5e3", b"true", b"null", b"[1,2,3]", b'{"a":"b"}', b"/a/0", b"\"x\""])
    elif r < 0.4:
        body = bytes(rng.randint(1, 255) for _ in range(rng.randint(0, n)))
    else:
        body = bytes(rng.choice(_TEXT) for _ in range(rng.randint(0, n)))
    return body + b"\0"


@dataclass
class TestInput:
    args: list[int | float]
    arena: bytes  # written at `base` before the call
    base: int


def make_input(params: list[Param], seed: int, test: int, base: int) -> TestInput:
    """Inputs for test number `test`: arguments, and the arena they point into."""
    rng = random.Random(f"{seed}:{test}")
    size = ARENA_PAGES * PAGE
    arena = bytearray(_arena(seed, test, base, size))
    nptr = max(1, sum(p.kind in ("ptr", "str", "ambiguous") for p in params))
    slot = (size - 4096) // nptr
    args: list[int | float] = []
    k = 0
    earlier: list[tuple[str, int | float]] = []
    for j, p in enumerate(params):
        as_ptr = p.kind in ("ptr", "str") or (p.kind == "ambiguous" and test % 2 == 1)
        if p.kind in ("ptr", "str", "ambiguous"):
            off = k * slot + rng.randrange(0, max(1, slot // 4), 16)
            k += 1
        if as_ptr:
            if test % 16 == 15 and rng.random() < 0.5:
                args.append(0)  # NULL sometimes: many functions check for it
                continue
            if p.kind == "str" or rng.random() < 0.25:
                s = text(rng, min(96, slot - 1))
                arena[off:off + len(s)] = s
            args.append(base + off)
        elif p.kind == "funcptr":
            args.append(rng.randint(0, 8))
        else:
            v = scalar(rng, p.wasm, test, j, earlier)
            earlier.append((p.wasm, v))
            args.append(v)
    return TestInput(args, bytes(arena), base)
