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
  * `ambiguous` parameters are an arena address in three tests of four and a
    scalar in the fourth, so both readings get tested (unknown typedefs in C
    APIs are more often handles than numbers);
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

from . import layout

ARENA_PAGES = 2  # 128 KiB of input memory per test
# Zeroed pages grown after the arena: `buf->content + buf->offset`, with an offset that happens to
# be an arena address, still lands in memory (zeros) instead of trapping, so the test compares
# results rather than "both trapped".
SLACK_PAGES = 14
GROW_PAGES = ARENA_PAGES + SLACK_PAGES
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
    ctype: str | None = None  # type id in meta.c_params["types"]: what a ptr points to, a scalar's type


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


def _declared_name(node: Node | None) -> str | None:
    while node is not None and node.type != "identifier":
        node = node.child_by_field_name("declarator") or (node.named_children[0] if node.named_children else None)
    return node.text.decode() if node is not None else None


def _param_kind(p: Node, decl: Node | None = None) -> list[str]:
    """C kinds for one parameter_declaration; `long double` takes two wasm slots."""
    decl = decl if decl is not None else p.child_by_field_name("declarator")
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


def _single(types: dict, tid: str | None) -> str | None:
    """A struct/union/array of exactly one element is passed as that element (clang's wasm32 ABI)."""
    for _ in range(8):
        d = types.get(tid) if tid is not None else None
        if d is None:
            return tid
        if d["k"] in ("struct", "union") and len(d["fields"]) == 1:
            tid = d["fields"][0][1]
        elif d["k"] == "array" and d["n"] == 1:
            tid = d["of"]
        else:
            return tid
    return tid


def typed_kinds(c_params: dict, wasm_params: list[str], wasm_results: list[str]) -> list[Param] | None:
    """One Param per wasm parameter from the DWARF types mine recorded, or None when they do not line up."""
    types = c_params.get("types", {})
    out: list[Param] = []
    for tid in c_params.get("params", []):
        tid = _single(types, tid)
        d = types.get(tid) if tid is not None else None
        if d is None:
            out.append(Param("ambiguous", "i32"))
        elif d["k"] == "float" and d["size"] == 16:
            out += [Param("scalar", "i64", tid), Param("scalar", "i64", tid)]
        elif d["k"] in ("int", "float"):
            out.append(Param("scalar", "", tid))
        elif d["k"] == "fptr":
            out.append(Param("funcptr", "i32", tid))
        elif d["k"] == "ptr":
            to = d.get("to")
            td = types.get(to) if to is not None else None
            out.append(Param("str" if td is not None and td["k"] == "int" and td["size"] == 1 else "ptr", "i32", to))
        else:  # a struct or array by value: a pointer to a copy
            out.append(Param("ptr", "i32", tid))
    if c_params.get("variadic"):
        out.append(Param("ptr", "i32"))
    if len(out) == len(wasm_params) - 1 and not wasm_results and wasm_params[:1] == ["i32"]:
        ret = c_params.get("ret")
        out.insert(0, Param("ptr", "i32", ret))  # struct returned through a hidden sret pointer
    if len(out) != len(wasm_params):
        return None
    fixed = []
    for p, t in zip(out, wasm_params, strict=True):
        if t != "i32" and p.kind != "scalar":
            return None  # the types disagree with the wasm signature: trust neither
        fixed.append(Param(p.kind, t, p.ctype))
    return fixed


def param_kinds(signature: str, name: str, wasm_params: list[str], wasm_results: list[str],
                c_params: dict | None = None) -> list[Param]:
    """One Param per wasm parameter: from the recorded DWARF types when the unit has them, else from
    the C signature; unknown mappings fall back to `ambiguous`."""
    if c_params:
        typed = typed_kinds(c_params, wasm_params, wasm_results)
        if typed is not None:
            return typed
    tree = _parser().parse((signature.strip().rstrip("{").strip() + " {}").encode("utf-8", "replace"))
    fd = _find_declarator(tree.root_node, name)
    kinds: list[str] | None = None
    if fd is not None:
        plist = fd.child_by_field_name("parameters")
        # K&R definitions (zlib): `f(a, b) char *a; int b;` -- the types are declarations after the list.
        knr: dict[str, list[str]] = {}
        for d in fd.parent.named_children if fd.parent is not None else []:
            if d.type == "declaration":
                for dc in d.children_by_field_name("declarator"):
                    n = _declared_name(dc)
                    if n:
                        knr[n] = _param_kind(d, dc)
        kinds = []
        variadic = False
        for p in plist.named_children if plist is not None else []:
            if p.type == "variadic_parameter":
                variadic = True
            elif p.type == "identifier":
                kinds.extend(knr.get(p.text.decode(), ["scalar"]))  # K&R: undeclared means int
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


def scalar(rng: random.Random, wasm: str, test: int, j: int, earlier: list[tuple[str, int | float]],
           consts: tuple[int, ...] = (), fconsts: tuple[float, ...] = ()) -> int | float:
    """The value of scalar parameter number `j` in test number `test`.

    Tests 0..E-1 rotate through the E edge values (each parameter sees every edge once);
    tests E..2E-1 give every parameter the *same* edge value (a == b is where `<` and `<=`
    differ); later tests are random, with a quarter drawn from the function's own
    constants (±1) and a quarter copying an earlier parameter of the same type (±1).
    """
    edges = _INT_EDGES[wasm] if wasm in ("i32", "i64") else _FLOAT_EDGES
    e = len(edges)
    if test < e:
        return _wrap(edges[(test + j) % e], wasm)
    if test < 2 * e:
        return _wrap(edges[test - e], wasm)
    if consts and wasm in ("i32", "i64") and rng.random() < 0.25:
        return _wrap(rng.choice(consts) + rng.choice((0, 1, -1)), wasm)
    if fconsts and wasm in ("f32", "f64") and rng.random() < 0.25:
        return _wrap(rng.choice(fconsts), wasm)
    same = [v for t, v in earlier if t == wasm]
    if same and rng.random() < 0.25:
        return _wrap(rng.choice(same) + rng.choice((0, 0, 1, -1)), wasm)
    return _wrap(_random_scalar(rng, wasm), wasm)


_TEXT = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;-_/\\\"'{}[]()+=*&%$#@!?\n\t"


@functools.lru_cache(maxsize=256)
def _arena(seed: int, test: int, base: int, size: int, consts: tuple[int, ...]) -> bytes:
    return bytes(arena_bytes(seed, test, base, size, consts))


def arena_bytes(seed: int, test: int, base: int, size: int, consts: tuple[int, ...] = ()) -> bytearray:
    """Pointer-rich random content: each aligned word is NULL, a small number or bit flag, an arena
    address, one of the function's own constants (±1), text, or random.

    The constants are a fuzzer's dictionary: `if (state->mode != GZ_READ)` or `type & cJSON_True`
    compare a loaded field with a constant that random bytes almost never hit, and everything
    behind such a check would otherwise go untested.

    numpy (PCG64, seeded by (seed, test)) because this runs per test and a Python loop over
    32k words costs more than the wasm it feeds.
    """
    d = _draws(seed, test, size)
    out = d.words.copy()
    out[d.at_addr] = (base + d.addr_offsets).astype(np.uint32)
    if consts:
        g = np.random.Generator(np.random.PCG64())
        g.bit_generator.state = d.state  # continue the stream where the unit-free draws ended
        n = size // 4
        c = np.array([x & 0xFFFFFFFF for x in consts], dtype=np.uint64)[g.integers(0, len(consts), n)]
        dictionary = (c + g.integers(-1, 2, n).astype(np.int64).astype(np.uint64)) & np.uint64(0xFFFFFFFF)
        out[d.at_dict] = dictionary[d.at_dict].astype(np.uint32)
    else:
        out[d.at_dict] = d.small_at_dict
    return bytearray(out.astype("<u4", copy=False).tobytes())


@dataclass(frozen=True)
class _Draws:
    words: np.ndarray  # uint32: every word but the address and dictionary ones, which are 0 here
    at_addr: np.ndarray  # where the arena addresses go, and their offsets from the arena's base
    addr_offsets: np.ndarray
    at_dict: np.ndarray  # where the dictionary words go, and the small numbers there without constants
    small_at_dict: np.ndarray
    state: dict  # the generator after these draws: the dictionary's draws continue from here


@functools.lru_cache(maxsize=128)
def _draws(seed: int, test: int, size: int) -> _Draws:
    """The part of arena_bytes that no unit changes, kept per (seed, test): every unit in a process
    is judged on the same tests, and these draws were most of the ~2.5 ms an arena took (about a
    tenth of a cold verdict). The stream and the result are exactly those of drawing it all anew.
    ~270 KiB an entry; 128 entries (~34 MiB) cover the 96 base tests of the default 64."""
    g = np.random.default_rng([seed & 0xFFFFFFFF, test])
    n = size // 4
    r = g.random(n)
    words = g.integers(0, 1 << 32, n, dtype=np.uint64)
    small = np.where(g.random(n) < 0.5, g.integers(1, 17, n, dtype=np.uint64),
                     np.left_shift(np.uint64(1), g.integers(0, 13, n, dtype=np.uint64)))
    offsets = 8 * g.integers(0, (size - 64) // 8, n, dtype=np.uint64)
    txt = np.frombuffer(_TEXT, dtype=np.uint8)[g.integers(0, len(_TEXT), 4 * n)].view("<u4").astype(np.uint64)
    at_addr = np.flatnonzero((r >= 0.4) & (r < 0.65)).astype(np.int32)
    at_dict = np.flatnonzero((r >= 0.65) & (r < 0.82)).astype(np.int32)
    fixed = np.where(r < 0.2, 0, np.where(r < 0.4, small, np.where(r < 0.82, 0, np.where(r < 0.94, txt, words))))
    return _Draws(fixed.astype(np.uint32), at_addr, offsets[at_addr], at_dict,
                  small[at_dict].astype(np.uint32), g.bit_generator.state)


_TEXT_OF_BYTE = bytes(_TEXT[b % len(_TEXT)] for b in range(256))  # a random byte -> a text character
_NONZERO_OF_BYTE = bytes([1]) + bytes(range(1, 256))


def text(rng: random.Random, n: int) -> bytes:
    """A NUL-terminated string: sometimes JSON- or number-like, since parsers are common.

    Random bytes mapped through a table, not a choice per character: input generation for a cold
    unit runs this tens of thousands of times, and per-character Python was a third of its time."""
    r = rng.random()
    if r < 0.2:
        body = rng.choice([b"", b"0", b"-12.5e3", b"true", b"null", b"[1,2,3]", b'{"a":"b"}', b"/a/0", b"\"x\"",
                           b"42", b"1e400", b"0x1F", b"-0", b"3.25", b'{"a":[1,{"b":null}],"c":"d"}', b"/", b"."])
    elif r < 0.4:
        body = rng.randbytes(rng.randint(0, n)).translate(_NONZERO_OF_BYTE)
    else:
        body = rng.randbytes(rng.randint(0, n)).translate(_TEXT_OF_BYTE)
    return body + b"\0"


def related_text(rng: random.Random, earlier: list[bytes], n: int) -> bytes:
    """A string for a second string parameter: now and then the same as an earlier one, or a prefix
    of it, or it with more after, so comparisons of two strings (strcmp-like loops, `:`-separated
    prefixes) see equal and prefix pairs, which two random texts never are."""
    if not earlier or rng.random() < 0.6:
        return text(rng, n)
    other = rng.choice(earlier)[:-1][:n]
    r = rng.random()
    if r < 0.4:
        body = other
    elif r < 0.7:
        body = other[: rng.randint(0, len(other))]
    else:
        body = other + rng.choice((b":", b"/", b" ", b"=", b"x", b":a"))
    return body + b"\0"


@dataclass
class TestInput:
    args: list[int | float]
    arena: bytes  # written at `base` before the call
    base: int
    stub_seed: int = 0  # picks the answers of stubbed imports (wasm_run)
    statics: tuple = ()  # (address, bytes) written into static data before the call


_ABS_LOAD = re.compile(r"^\s*i32\.const (\d+)\s*\n\s*(i32|i64|f32|f64)\.load(8|16|32)?(?:_[su])?"
                       r"(?:\s+offset=(\d+))?", re.M)
_BIG_STORE = re.compile(r"^\s*(i32|i64|f32|f64)\.store(8|16|32)?\s+offset=(\d+)", re.M)


def static_addresses(func_wat: str, lo: int, hi: int) -> tuple[tuple[int, int], ...]:
    """(address, width) of every static the code loads from a constant address in [lo, hi), or
    stores to at an offset that is itself a static address (`i32.const 0; ...; i32.store offset=68848`).

    `static cJSON_error global_error` or a libc's `errno`/locale state: the inputs never set
    them, so code whose result depends on them was tested in one state only (the initial one).
    And a store to the wrong field of a static struct is invisible when that field already held
    the value stored (cJSON_InitHooks writing `malloc` over the default `malloc`).
    """
    out = {}
    found = [(int(m.group(1)) + int(m.group(4) or 0), m.group(2), m.group(3)) for m in _ABS_LOAD.finditer(func_wat)]
    found += [(int(m.group(3)), m.group(1), m.group(2)) for m in _BIG_STORE.finditer(func_wat)]
    for addr, typ, bits in found:
        width = int(bits or (32 if typ in ("i32", "f32") else 64)) // 8
        if max(lo, 1024) <= addr and addr + width <= hi:
            out[addr] = max(width, out.get(addr, 0))
    return tuple(sorted(out.items()))[:32]


_PRINTABLE = frozenset(range(32, 127)) | {9, 10, 13}


def string_tokens(func_wat: str, memory: bytes, lo: int, limit: int = 32) -> tuple[bytes, ...]:
    """The NUL-terminated strings (1-48 printable bytes) at the static addresses the code names.

    `strncmp(p, "false", 5)` or `strcmp(op, "replace")` pass only for that exact text, which
    random bytes never spell: the explorer writes these tokens where the function reads its input
    (a fuzzer's dictionary, taken from the program as libFuzzer does).
    """
    out: dict[bytes, None] = {}
    for m in re.finditer(r"\bi32\.const (\d+)", func_wat):
        addr = int(m.group(1))
        if not lo <= addr < len(memory) or (addr > 0 and memory[addr - 1] != 0 and memory[addr - 1] in _PRINTABLE):
            continue  # not the start of a string
        end = memory.find(b"\0", addr, addr + 49)
        tok = memory[addr:end] if end > addr else b""
        if tok and all(b in _PRINTABLE for b in tok):
            out[bytes(tok)] = None
            if len(out) >= limit:
                break
    return tuple(out)


def _static_values(rng: random.Random, statics: tuple[tuple[int, int], ...], base: int,
                   consts: tuple[int, ...]) -> tuple:
    """Seeded contents for the statics: NULL/zero, small numbers, constants, arena addresses, random."""
    out = []
    for addr, width in statics:
        r = rng.random()
        if r < 0.4:
            continue  # keep the initial value
        if r < 0.55:
            v = rng.choice((1, 2, 3, 4, 8, 16, 255, -1))
        elif r < 0.7 and consts:
            v = rng.choice(consts) + rng.choice((0, 0, 1, -1))
        elif r < 0.9:
            v = base + rng.randrange(0, ARENA_PAGES * PAGE - 4096, 8)
        else:
            v = rng.getrandbits(8 * width)
        out.append((addr, (v & ((1 << (8 * width)) - 1)).to_bytes(width, "little")))
    return tuple(out)


def constants(func_wat: str) -> tuple[int, ...]:
    """The integer constants of a function's WAT, for the input dictionary (a few dozen at most)."""
    vals = {int(m.group(1)) for m in re.finditer(r"\bi(?:32|64)\.const (-?\d+)", func_wat)}
    vals |= {int(m.group(1)) for m in re.finditer(r"\boffset=(\d+)", func_wat)}
    out = sorted(vals, key=lambda v: (abs(v), v))[:96]
    # The boundaries of range checks, which no constant of the code spells: `x - 1 > 8` (x in 1..9)
    # compiles to `x + -1; 8; gt_u`, whose boundary in x is 9 (the dictionary's +-1 gives 8 and 10).
    extra = [b for b in shifted_bounds(func_wat) if b not in vals]
    return tuple(out + extra[:32])


_SHIFTED_CMP = re.compile(r"^\s*(i32|i64)\.const (-?\d+)\s*\n\s*\1\.(add|sub)\s*\n(?:\s*local\.tee \S+\s*\n)?"
                          r"\s*\1\.const (-?\d+)\s*\n\s*\1\.(?:lt|le|gt|ge)_[su]\b", re.M)


def shifted_bounds(func_wat: str) -> list[int]:
    """For each `x + k <cmp> c` (also `x - k`), the x on the boundary: c - k (or c + k)."""
    out: dict[int, None] = {}
    for m in _SHIFTED_CMP.finditer(func_wat):
        k = int(m.group(2)) * (1 if m.group(3) == "add" else -1)
        out[int(m.group(4)) - k] = None
    return list(out)


def float_constants(func_wat: str) -> tuple[float, ...]:
    """The f32/f64 constants of a function's WAT: `x <= -2147483648.0` differs from `<` only there."""
    floats = set()
    for m in re.finditer(r"\bf(?:32|64)\.const (\S+)", func_wat):
        try:
            floats.add(float.fromhex(m.group(1)) if "0x" in m.group(1) else float(m.group(1)))
        except ValueError:
            pass  # nan:0x... and inf are float edges already
    return tuple(sorted(f for f in floats if f == f)[:16])


_LOAD = re.compile(r"^\s*(i32|i64)\.load(8|16|32)?(?:_[su])?(?:\s+offset=(\d+))?(?:\s+align=\d+)?\s*$")
_CONST = re.compile(r"^\s*(?:i32|i64)\.const\s+(-?\d+)\s*$")
_CMP = re.compile(r"^\s*(?:i32|i64)\.(eq|ne|lt_[su]|le_[su]|gt_[su]|ge_[su]|and|sub|add)\b")


_TEE = re.compile(r"^\s*local\.tee\s+\S+\s*$")
_AND = re.compile(r"^\s*(?:i32|i64)\.and\s*$")


def field_hints(func_wat: str) -> tuple[tuple[int, int, int], ...]:
    """(offset, value, width) for every `load offset=K [tee] [const M; and] const C; compare`.

    `if (state->mode != GZ_READ)` or `(item->type & 0xFF) == cJSON_Object` compile to exactly
    that, and everything behind the check is reached only when the pointed-to struct holds C at
    offset K. Writing C there in half the tests is a static, cheap stand-in for a fuzzer's
    comparison feedback.
    """
    lines = [ln.split(";;")[0].rstrip(") ") for ln in func_wat.splitlines()]
    out = []
    for i, a in enumerate(lines):
        m = _LOAD.match(a)
        if not m:
            continue
        j = i + 1
        if j < len(lines) and _TEE.match(lines[j]):
            j += 1
        if j + 2 < len(lines) and _CONST.match(lines[j]) and _AND.match(lines[j + 1]) and _CONST.match(lines[j + 2]):
            j += 2  # a mask: the compared constant follows it
        if j + 1 >= len(lines):
            continue
        k, op = _CONST.match(lines[j]), _CMP.match(lines[j + 1])
        if k and op:
            width = int(m.group(2) or (32 if m.group(1) == "i32" else 64)) // 8
            # x + C feeds a br_table or a range check: the interesting x makes the sum 0.
            value = -int(k.group(1)) if op.group(1) == "add" else int(k.group(1))
            out.append((int(m.group(3) or 0), value, width))
    return tuple(dict.fromkeys(out))[:48]


def _apply_hints(rng: random.Random, arena: bytearray, off: int, hints: tuple[tuple[int, int, int], ...]) -> None:
    for k, c, width in hints:
        if rng.random() < 0.5 and off + k >= 0 and off + k + width <= len(arena):
            v = c + rng.choice((0, 0, 0, 1, -1))
            arena[off + k: off + k + width] = (v & ((1 << (8 * width)) - 1)).to_bytes(width, "little")


def _struct_tree(rng: random.Random, arena: bytearray, base: int, off: int,
                 hints: tuple[tuple[int, int, int], ...], depth: int) -> None:
    """Make the buffer at `off` look like a struct whose pointer fields lead to more such structs.

    Some of its first 16 words point to child buffers, which get the field hints too (so
    `strm->state->status == INIT_STATE` can hold), a back-pointer to their parent in word 0
    now and then (zlib's `s->strm != strm` check), or a string.
    """
    size = len(arena)
    for w in range(16):
        r = rng.random()
        at = off + 4 * w
        if r < 0.25 and depth > 0:
            child = rng.randrange(0, size - 1024, 16)
            arena[at:at + 4] = (base + child).to_bytes(4, "little")
            if rng.random() < 0.5:
                arena[child:child + 4] = (base + off).to_bytes(4, "little")
            _apply_hints(rng, arena, child, hints)
            _struct_tree(rng, arena, base, child, hints, depth - 1)
        elif r < 0.35:
            child = rng.randrange(0, size - 1024, 16)
            arena[at:at + 4] = (base + child).to_bytes(4, "little")
            t = text(rng, 40)
            arena[child:child + len(t)] = t


def make_input(params: list[Param], seed: int, test: int, base: int, consts: tuple[int, ...] = (),
               hints: tuple[tuple[int, int, int], ...] = (), fconsts: tuple[float, ...] = (),
               types: dict | None = None, statics: tuple[tuple[int, int], ...] = (),
               fptrs: tuple[int, ...] = ()) -> TestInput:
    """Inputs for test number `test`: arguments, and the arena they point into.

    With C types (`types`, from meta.c_params) the pointer parameters get typed objects
    (c_wat_layout); without, pointer-rich random content, which also tests what types do not
    promise (aliasing, odd values). With `statics`, odd-numbered tests also seed the static
    data the function reads (even ones keep it as `_initialize` left it). `fptrs`: table indices of
    functions of the types the code calls indirectly (function pointer arguments and fields).
    """
    if types and any(p.ctype is not None for p in params):
        inp = _typed_input(params, seed, test, base, consts, hints, fconsts, types, fptrs)
    else:
        inp = _untyped_input(params, seed, test, base, consts, hints, fconsts, fptrs)
    if statics and test % 2 == 1:
        inp.statics = _static_values(random.Random(f"statics:{seed}:{test}"), statics, base, consts)
    return inp


def _untyped_input(params: list[Param], seed: int, test: int, base: int, consts: tuple[int, ...],
                   hints: tuple[tuple[int, int, int], ...], fconsts: tuple[float, ...],
                   fptrs: tuple[int, ...] = ()) -> TestInput:
    size = ARENA_PAGES * PAGE
    rng = random.Random(f"{seed}:{test}")
    arena = bytearray(_arena(seed, test, base, size, consts))
    nptr = max(1, sum(p.kind in ("ptr", "str", "ambiguous") for p in params))
    slot = (size - 4096) // nptr
    args: list[int | float] = []
    k = 0
    earlier: list[tuple[str, int | float]] = []
    strings: list[bytes] = []
    for j, p in enumerate(params):
        as_ptr = p.kind in ("ptr", "str") or (p.kind == "ambiguous" and test % 4 != 0)
        if p.kind in ("ptr", "str", "ambiguous"):
            off = k * slot + rng.randrange(0, max(1, slot // 4), 16)
            k += 1
        if as_ptr:
            if test % 16 == 15 and rng.random() < 0.5:
                args.append(0)  # NULL sometimes: many functions check for it
                continue
            if p.kind == "str" or rng.random() < 0.25:
                s = (related_text(rng, strings, min(96, slot - 4)) if p.kind == "str"
                     else text(rng, min(96, slot - 1)))
                strings.append(s)
                arena[off:off + len(s)] = s
            else:
                _struct_tree(rng, arena, base, off, hints, depth=2)
            _apply_hints(rng, arena, off, hints)
            args.append(base + off)
        elif p.kind == "funcptr":
            args.append(layout.funcptr(rng, fptrs, range(9)))
        else:
            v = scalar(rng, p.wasm, test, j, earlier, consts, fconsts)
            earlier.append((p.wasm, v))
            args.append(v)
    return TestInput(args, bytes(arena), base, test)


def _typed_input(params: list[Param], seed: int, test: int, base: int, consts: tuple[int, ...],
                 hints: tuple[tuple[int, int, int], ...], fconsts: tuple[float, ...], types: dict,
                 fptrs: tuple[int, ...] = ()) -> TestInput:
    rng = random.Random(f"typed:{seed}:{test}")
    strings: list[bytes] = []
    size = ARENA_PAGES * PAGE
    arena = layout.Arena(bytearray(_arena(seed, test, base, size, consts)), base, 0, size - 4096, fptrs=fptrs)
    args: list[int | float] = []
    earlier: list[tuple[str, int | float]] = []
    for j, p in enumerate(params):
        d = types.get(p.ctype) if p.ctype is not None else None
        if p.kind in ("ptr", "str", "ambiguous"):
            if test % 16 == 15 and rng.random() < 0.5:
                args.append(0)
                continue
            if p.kind == "str" or d is None:
                off = arena.alloc(128 if p.kind == "str" else 1024)
                if off is None:
                    args.append(base)
                    continue
                if p.kind == "str" or rng.random() < 0.25:
                    s = related_text(rng, strings, 96) if p.kind == "str" else text(rng, 96)
                    strings.append(s)
                    arena.data[off:off + len(s)] = s
                else:
                    _struct_tree(rng, arena.data, base, off, hints, depth=2)
            elif d["k"] in ("struct", "union"):
                off = layout.new_object(rng, arena, p.ctype, types, consts, text, 3, {})
            else:
                off = layout.pointer(rng, arena, p.ctype, types, consts, text, 3, {}) - base
                if off < 0:  # NULL
                    args.append(0)
                    continue
            if rng.random() < 0.5:
                _apply_hints(rng, arena.data, off, hints)
            args.append(base + off)
        elif p.kind == "funcptr":
            args.append(layout.funcptr(rng, fptrs, range(9)))
        else:
            if d is not None and d.get("enum") and test >= 20 and rng.random() < 0.5:
                v = _wrap(rng.choice(d["enum"]), p.wasm)
            else:
                v = scalar(rng, p.wasm, test, j, earlier, consts, fconsts)
            earlier.append((p.wasm, v))
            args.append(v)
    return TestInput(args, bytes(arena.data), base, test)
