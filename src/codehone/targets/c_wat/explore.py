"""Coverage-guided search for inputs that reach deeper into the reference function.

Random memory rarely gets past `if (state->mode != GZ_READ) return -1;`, so a
judge that only generates inputs blindly tests the first few lines of most
real functions, and a wrong candidate that differs further down passes. This
is a small fuzzer, run once per unit on the *reference* (never the candidate):

  * instrument: a copy of the reference function gets a probe after every
    `block`, `loop`, `if`, `else`, `end` and `br_if`, one before each `br_if`
    and `if` that counts the branch taken and the then-side skipped, and one
    per `select` that tells which value it picked (a byte store into a coverage page
    placed after the input arena and its zeroed slack); strcmp-like
    functions anywhere in the module log their arguments;
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

from . import inputs, wasm_run

_PROBE_AFTER = re.compile(r"^\s*(block|loop|if|else|end|br_if)\b")
_LOAD = re.compile(r"^\s*(?:i32|i64|f32|f64)\.load(?:8_[su]|16_[su]|32_[su])?(?:\s+offset=(\d+))?(?:\s+align=\d+)?$")
_STORE = re.compile(r"^\s*(i32|i64|f32|f64)\.store(?:8|16|32)?(?:\s+offset=(\d+))?(?:\s+align=\d+)?$")
_OTHER_SIDE = re.compile(r"^\s*(br_if|if)\b")
_BR_TABLE = re.compile(r"^\s*br_table((?:\s+\d+)+)")
_INDIRECT_TYPE = re.compile(r"^\s*call_indirect\b.*?\(type (\d+)\)")
_SELECT = re.compile(r"^\s*select(?:\s+\(result\s+\w+\))?$")
_CMP = re.compile(r"^\s*(i32|i64)\.(eq|ne|lt_s|lt_u|le_s|le_u|gt_s|gt_u|ge_s|ge_u)$")
_TYPES = re.compile(r"\b(i32|i64|f32|f64|v128|funcref|externref)\b")
TRACE_COUNT = 4096  # offsets inside the coverage page
TRACE_BASE = 8192
TRACE_SLOTS = 1024
# The comparison log: per comparison site, its first and last operand pair (4 x u64), and a flag byte.
CMP_BASE = TRACE_BASE + 4 * TRACE_SLOTS
CMP_SITES = 1024
CMP_FLAGS = CMP_BASE + 32 * CMP_SITES
# The string-compare log: the arguments of every call to a strcmp-like function (see hook_compare), in
# a ring of RTN_SLOTS entries of (a, b, n) after a u32 count.
RTN_COUNT = CMP_FLAGS + CMP_SITES
RTN_BASE = RTN_COUNT + 4
RTN_SLOTS = 64
# The last store: its address, and the load count (TRACE_COUNT) when it ran: a trap is the last
# access's, the store's when no load came after it.
LAST_STORE = RTN_BASE + 12 * RTN_SLOTS
COV_END = LAST_STORE + 8  # what a run reads back of the coverage page
# Functions whose two first arguments are compared as strings (the third, when there is one, bounds
# it): libc's, and a program's own helpers named like them (cJSON's case_insensitive_strcmp).
_STRCMP = re.compile(r"^\$(?:\w*str\w*cmp\w*|\w*memcmp|bcmp|strcoll|compare_strings)$", re.I)


def _header(lines: list[str]) -> tuple[list[str], int, int]:
    """A function's header as wasm2wat prints it, `(func ... (param ..) (result ..)` then `(local ...)`
    lines: (param types, index of its last line, number of locals)."""
    params = _TYPES.findall(" ".join(re.findall(r"\(param[^)]*\)", lines[0])))
    head_end = nlocals = 0
    for i in range(1, len(lines)):
        if not lines[i].strip().startswith("(local"):
            break
        nlocals += len(_TYPES.findall(lines[i]))
        head_end = i
    return params, head_end, nlocals


def _log_against(cov_addr: int, site: int, t1: int, t2: int, values) -> tuple[list[str], int]:
    """Code that logs the i32 on top of the stack against each of `values` (one comparison site each,
    from `site` on) and leaves it there; and the next free site."""
    seq = [f"local.set {t1}"]
    for v in values:
        if site >= CMP_SITES:
            break
        seq += [f"i32.const {v}", f"local.set {t2}", *_log_pair(cov_addr, site, t1, t2, ["i64.extend_i32_u"])]
        site += 1
    return [*seq, f"local.get {t1}"], site


def _log_pair(cov_addr: int, site: int, t1: int, t2: int, ext: list[str]) -> list[str]:
    """Code that logs (local t1, local t2) as comparison site `site`: the first pair once, the last always."""
    slot, flag = cov_addr + CMP_BASE + 32 * site, cov_addr + CMP_FLAGS + site
    return [f"i32.const {flag}", "i32.load8_u", "i32.eqz", "if",
            f"i32.const {slot}", f"local.get {t1}", *ext, "i64.store",
            f"i32.const {slot}", f"local.get {t2}", *ext, "i64.store offset=8",
            f"i32.const {flag}", "i32.const 1", "i32.store8", "end",
            f"i32.const {slot}", f"local.get {t1}", *ext, "i64.store offset=16",
            f"i32.const {slot}", f"local.get {t2}", *ext, "i64.store offset=24"]


@dataclass
class Instrumented:
    text: str
    probes: int  # coverage probes used (0 when instrumenting failed or was not asked for)
    cmps: int  # comparison sites logged, from `cmp_start` on
    ordering: tuple[bool, ...] = ()  # per logged site: an ordering comparison (lt/le/gt/ge), not eq/ne


def instrument(func_text: str, cov_addr: int, probes: bool = True, cmp_start: int = 0,
               table: dict[str, tuple[int, ...]] | None = None, probe_start: int = 0) -> Instrumented:
    """The function with a coverage probe after each control-flow point, a trace of load addresses
    and a log of comparison operands.

    Probes count hits (mod 256) at cov_addr + n; the explorer buckets them as AFL does. Before
    each load, the address is kept in a new local and appended to a ring buffer (count at cov_addr + TRACE_COUNT, entries at + TRACE_BASE), so the
    explorer knows which input words the function actually read. Before each ordering comparison,
    a probe records whether its operands were ever *equal*: `<` and `<=` differ only there, so
    reaching that boundary is coverage worth searching for. Every integer comparison logs its
    first and last operand pair (site `cmp_start + k`, at cov_addr + CMP_BASE): the explorer puts
    one operand where the input held the other (input-to-state replacement, as in RedQueen), which
    gets past magic-value checks and onto boundaries that random values almost never hit.
    `table` (type index -> table indices of functions of that type) logs each `call_indirect`'s
    index against up to three indices it could validly be. `probe_start`: the first probe number
    (a callee's probes follow its caller's); `probes` is then the next free one.
    """
    lines = func_text.splitlines()
    params, head_end, nlocals = _header(lines)
    tmp = len(params) + nlocals
    tmps = {"i32": (tmp + 1, tmp + 2), "i64": (tmp + 3, tmp + 4), "f32": (tmp + 5,), "f64": (tmp + 6,)}
    ind0 = re.match(r"\s*", lines[1] if len(lines) > 1 else "").group(0) or "    "
    out: list[str] = []
    n = probe_start
    c = cmp_start
    ordering: list[bool] = []
    for i, line in enumerate(lines):
        code = re.sub(r"\(;.*?;\)", "", line).split(";;")[0].rstrip()
        load = _LOAD.match(code) if i > head_end else None
        ind = re.match(r"\s*", line).group(0)
        if load:
            cnt, tb = cov_addr + TRACE_COUNT, cov_addr + TRACE_BASE
            offset = int(load.group(1) or 0)
            out.append("\n".join(ind + x for x in (
                f"local.tee {tmp}", f"i32.const {cnt}", f"i32.const {cnt}", "i32.load", "i32.const 1", "i32.add",
                "i32.store", f"i32.const {tb}", f"i32.const {cnt}", "i32.load", f"i32.const {TRACE_SLOTS - 1}",
                "i32.and", "i32.const 2", "i32.shl", "i32.add", f"local.get {tmp}", f"i32.const {offset}", "i32.add",
                "i32.store")))
        store = _STORE.match(code) if i > head_end else None
        if store:
            cnt, last = cov_addr + TRACE_COUNT, cov_addr + LAST_STORE
            v = tmps[store.group(1)][-1]
            out.append("\n".join(ind + x for x in (
                f"local.set {v}", f"local.tee {tmp}", f"i32.const {last}", f"local.get {tmp}",
                f"i32.const {int(store.group(2) or 0)}", "i32.add", "i32.store", f"i32.const {last + 4}",
                f"i32.const {cnt}", "i32.load", "i32.store", f"local.get {v}")))
        side = _OTHER_SIDE.match(code) if probes and i > head_end and not code.endswith(")") else None
        if side:
            # The probe after a `br_if` sees only the fall-through, the one after `if` only the then-side:
            # a run that takes the branch (name[len-1] == '/' skips the store) sets a subset of the
            # probes and would never count as new. This probe counts the other side.
            t = tmps["i32"][0]
            at = cov_addr + n
            n += 1
            cond = [f"local.get {t}"] if side.group(1) == "br_if" else [f"local.get {t}", "i32.eqz"]
            out.append("\n".join(ind + x for x in (
                f"local.set {t}", *cond, "if", f"i32.const {at}", f"i32.const {at}", "i32.load8_u", "i32.const 1",
                "i32.add", "i32.store8", "end", f"local.get {t}")))
        if probes and i > head_end and _SELECT.match(code.rstrip(")")):
            # A `select` is a branch the compiler made branch-free (return cond ? 6 : 0): its probe
            # sets bit 1 when it picked the first value, bit 2 the second.
            at = cov_addr + n
            n += 1
            out.append("\n".join(ind + x for x in (
                f"local.set {tmps['i32'][0]}", f"i32.const {at}", f"i32.const {at}", "i32.load8_u",
                f"local.get {tmps['i32'][0]}", "i32.eqz", "i32.const 1", "i32.add", "i32.or", "i32.store8",
                f"local.get {tmps['i32'][0]}")))
        cmp = _CMP.match(code.rstrip(")")) if i > head_end else None
        if cmp and (c < CMP_SITES or (probes and cmp.group(2) not in ("eq", "ne"))):
            t1, t2 = tmps[cmp.group(1)]
            ext = ["i64.extend_i32_u"] if cmp.group(1) == "i32" else []
            seq = [f"local.set {t2}", f"local.tee {t1}", f"local.get {t2}"]
            if probes and cmp.group(2) not in ("eq", "ne"):
                at = cov_addr + n
                n += 1
                seq += [f"i32.const {at}", f"i32.const {at}", "i32.load8_u", f"local.get {t1}", f"local.get {t2}",
                        f"{cmp.group(1)}.eq", "i32.or", "i32.store8"]
            if c < CMP_SITES:
                seq += _log_pair(cov_addr, c, t1, t2, ext)
                c += 1
                ordering.append(cmp.group(2) not in ("eq", "ne"))
            out.append("\n".join(ind + x for x in seq))
        brt = _BR_TABLE.match(code) if i > head_end else None
        if brt and c < CMP_SITES:
            # A switch: log the index against the first index of each distinct target (up to 4), so the
            # explorer writes one where the input held the index (with `shifted`, where it held the
            # value the index was computed from: `status - 57`).
            labels = brt.group(1).split()
            seq, c2 = _log_against(cov_addr, c, *tmps["i32"], [labels.index(lab) for lab in dict.fromkeys(labels)][:4])
            ordering += [False] * (c2 - c)
            c = c2
            out.append("\n".join(ind + x for x in seq))
        indirect = _INDIRECT_TYPE.match(code) if i > head_end and table else None
        if indirect and table.get(indirect.group(1)) and c < CMP_SITES:
            # A function pointer read from the input is a table index that must name a function of
            # this type (else the call traps): log it against such indices, as if compared with them,
            # so the explorer writes one where the input held the pointer (cJSON's hooks.allocate).
            seq, c2 = _log_against(cov_addr, c, *tmps["i32"], table[indirect.group(1)][:3])
            ordering += [False] * (c2 - c)
            c = c2
            out.append("\n".join(ind + x for x in seq))
        out.append(line)
        if i == head_end:
            out.append(f"{ind0}(local i32 i32 i32 i64 i64 f32 f64)")
        if probes and i > head_end and _PROBE_AFTER.match(code) and not code.endswith(")"):
            indent = re.match(r"\s*", lines[min(i + 1, len(lines) - 1)]).group(0) or "    "
            at = cov_addr + n
            out.append("\n".join(indent + x for x in (
                f"i32.const {at}", f"i32.const {at}", "i32.load8_u", "i32.const 1", "i32.add", "i32.store8")))
            n += 1
        if n >= TRACE_COUNT:
            return Instrumented(func_text, 0, 0)
    return Instrumented("\n".join(out), n, c - cmp_start, tuple(ordering))


def compares_strings(name: str | None, func_text: str) -> bool:
    """Is this a strcmp-like function (by name) taking at least two i32 (pointer) arguments?"""
    if not name or not _STRCMP.match("$" + name.lstrip("$").rsplit(".", 1)[-1]):  # zig's `$c.string.strcmp`
        return False
    return _header(func_text.splitlines())[0][:2] == ["i32", "i32"]


def hook_compare(func_text: str, cov_addr: int, memory_like: bool) -> str:
    """The function with its arguments logged on entry: (a, b, n) in the string-compare ring, n the
    third i32 argument (strncmp, memcmp) or -1.

    Why: `strcmp(op->valuestring, "test")` inside a callee of a callee passes only when the input
    holds that exact text, byte by byte; the log names both strings, and the explorer writes one
    where the input held the other (RedQueen's hooks of compare routines). `memory_like` (memcmp, from
    the name) marks n as an exact length rather than a bound (strncmp): its top bit is set.
    """
    lines = func_text.splitlines()
    params, head_end, _ = _header(lines)
    cnt, base = cov_addr + RTN_COUNT, cov_addr + RTN_BASE
    n = "local.get 2" if len(params) > 2 and params[2] == "i32" else "i32.const -1"
    flag = ["i32.const -2147483648", "i32.or"] if memory_like and n != "i32.const -1" else []
    slot = [f"i32.const {cnt}", "i32.load", f"i32.const {RTN_SLOTS}", "i32.rem_u", "i32.const 12", "i32.mul"]
    code = [*slot, "local.get 0", f"i32.store offset={base}",
            *slot, "local.get 1", f"i32.store offset={base + 4}",
            *slot, n, *flag, f"i32.store offset={base + 8}",
            f"i32.const {cnt}", f"i32.const {cnt}", "i32.load", "i32.const 1", "i32.add", "i32.store"]
    ind = re.match(r"\s*", lines[1] if len(lines) > 1 else "").group(0) or "    "
    return "\n".join([*lines[:head_end + 1], *(ind + c for c in code), *lines[head_end + 1:]])


def string_at(addr: int, inp: inputs.TestInput, statics: bytes, limit: int = 64) -> bytes | None:
    """The bytes at `addr` (up to `limit`) as the call saw them, when that can be told: the input's arena,
    or static data as `_initialize` left it."""
    off = addr - inp.base
    if 0 <= off < len(inp.arena):
        return bytes(inp.arena[off:off + limit])
    if 0 < addr < len(statics):
        return bytes(statics[addr:addr + limit])
    return None


def string_replacements(inp: inputs.TestInput, logged: list[tuple[int, int, int]], statics: bytes,
                        limit: int) -> list[inputs.TestInput]:
    """For each logged string compare (a, b, n) where one side lies in the input's arena, the input with
    the other side's string (up to its NUL, or n bytes for memcmp) written there."""
    out: list[inputs.TestInput] = []
    done: set[tuple[int, bytes]] = set()
    for a, b, n in reversed(logged):  # the latest first: the check where the run stopped
        exact = n != 0xFFFFFFFF and n & 0x80000000
        n &= 0x7FFFFFFF if n != 0xFFFFFFFF else 0xFFFFFFFF
        for dst, src in ((a, b), (b, a)):
            off = dst - inp.base
            s = string_at(src, inp, statics)
            if s is None or not 0 <= off < len(inp.arena) - 1:
                continue
            if exact:
                s = s[:n]
            else:
                end = s.find(b"\0")
                s = (s[:end] if end >= 0 else s)[: n if n != 0xFFFFFFFF else None] + b"\0"
            s = s[: len(inp.arena) - off]
            if (off, s) in done or inp.arena[off:off + len(s)] == s:
                continue
            done.add((off, s))
            arena = bytearray(inp.arena)
            arena[off:off + len(s)] = s
            out.append(inputs.TestInput(list(inp.args), bytes(arena), inp.base, inp.stub_seed, inp.statics))
            if len(out) >= limit:
                return out
    return out


@dataclass
class Explorer:
    prepared: wasm_run.Prepared  # the module with the instrumented reference
    probes: int
    cov_offset: int  # where the coverage page starts in Outcome.memory
    cmps: int = 0  # comparison sites logged (the function's and its callees')
    ordering: tuple[bool, ...] = ()  # per site: lt/le/gt/ge
    statics: bytes = b""  # memory as _initialize left it: what static strings hold
    fptrs: tuple[int, ...] = ()  # table indices of functions the code could call indirectly
    offsets: tuple[int, ...] = ()  # constants the code adds to values (see addends)
    static_addrs: tuple[tuple[int, int], ...] = ()  # (address, width) of the statics the code names
    own_probes: int | None = None  # probes of the function itself; those after it are its callees'


def _value(rng: random.Random, consts: tuple[int, ...], base: int, size: int, ptrs: list[int] = (),
           fptrs: tuple[int, ...] = ()) -> int:
    if fptrs and rng.random() < 0.1:
        return rng.choice(fptrs)  # a function pointer the code could call (cJSON's hooks.allocate)
    r = rng.random()
    if ptrs and r < 0.1:
        return base + rng.choice(ptrs)  # a back-pointer to an argument (zlib: state->strm == strm)
    if consts and r < 0.35:
        return rng.choice(consts) + rng.choice((0, 0, 0, 1, -1))
    if r < 0.5:
        return 0
    if r < 0.65:
        return rng.choice((1, 2, 3, 4, 8, 16, 32, 64, 128, 255, 256, -1))
    if r < 0.9:
        return base + rng.randrange(0, size - 64, 8)
    return rng.getrandbits(32)


def _mutate(rng: random.Random, inp: inputs.TestInput, reads: list[int], params: list[inputs.Param],
            consts: tuple[int, ...], hints: tuple[tuple[int, int, int], ...],
            tokens: tuple[bytes, ...] = (), fptrs: tuple[int, ...] = ()) -> inputs.TestInput:
    """A copy of `inp` with 1-4 changes, mostly to arena words the function was seen reading, now
    and then one of the program's own strings written where it was reading, or a function pointer
    (`fptrs`) where it was reading a word."""
    arena = bytearray(inp.arena)
    args = list(inp.args)
    size = len(arena)
    ptrs = [a - inp.base for a, p in zip(args, params, strict=True)
            if p.kind in ("ptr", "str", "ambiguous") and isinstance(a, int) and 0 <= a - inp.base < size - 256]
    scalars = [j for j, p in enumerate(params) if p.kind in ("scalar", "ambiguous")]
    for _ in range(rng.choice((1, 1, 2, 3, 4))):
        r = rng.random()
        if reads and tokens and rng.random() < 0.15:
            at = rng.choice(reads[-3:]) if rng.random() < 0.6 else rng.choice(reads)
            tok = rng.choice(tokens) + (b"\0" if rng.random() < 0.5 else b"")
            arena[at:at + len(tok)] = tok[: max(0, size - at)]
        elif reads and r < 0.6:
            frontier = rng.random() < 0.5
            at = rng.choice(reads[-3:]) if frontier else rng.choice(reads)
            if rng.random() < 0.3:  # a byte: char fields, strings, flags (one bit set: cJSON's item->type)
                arena[at] = rng.choice((0, 1, 2, rng.randrange(256), 1 << rng.randrange(8), *b"\"{[:,0-a1.e\\/nu%"))
            elif frontier and consts and rng.random() < 0.5:  # the check that stopped the run
                v = rng.choice(consts) + rng.choice((0, 0, 1, -1))
                arena[at & ~3:(at & ~3) + 4] = (v & 0xFFFFFFFF).to_bytes(4, "little")
            else:
                at &= ~3
                arena[at:at + 4] = (_value(rng, consts, inp.base, size, ptrs, fptrs) & 0xFFFFFFFF).to_bytes(4, "little")
        elif scalars and (r < 0.75 or not ptrs):
            j = rng.choice(scalars)
            w = params[j].wasm
            v = (rng.choice(consts) + rng.choice((0, 1, -1))) if consts and rng.random() < 0.5 else \
                inputs.scalar(rng, w, 10**6, j, [], consts)
            args[j] = inputs._wrap(v, w)
        elif ptrs and r < 0.85:
            inputs._apply_hints(rng, arena, rng.choice(ptrs), hints)
        else:
            at = 4 * rng.randrange(0, size // 4)
            arena[at:at + 4] = (_value(rng, consts, inp.base, size) & 0xFFFFFFFF).to_bytes(4, "little")
    stub = rng.getrandbits(16) if rng.random() < 0.2 else inp.stub_seed
    return inputs.TestInput(args, bytes(arena), inp.base, stub, inp.statics)


# Hit counts in AFL's buckets (1, 2, 3, 4-7, 8-15, 16-31, 32-127, 128+): a loop that runs once more
# (one more matching character of a prefix, one more list node) is progress worth keeping.
_BUCKET = [0, 1, 2, 3] + [4] * 4 + [5] * 8 + [6] * 16 + [7] * 96 + [8] * 128
PLATEAU = 600  # runs without new coverage after which exploring stops (simple functions finish early)
_MASKS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF, 8: 0xFFFFFFFFFFFFFFFF}


def _operand_pairs(page: bytes, sites: int, only: tuple[bool, ...] | None = None) -> list[tuple[int, int]]:
    """The distinct (a, b) with a != b from the comparison log (first and last pair of each site;
    with `only`, of the sites it marks)."""
    pairs = {}
    for c in range(sites):
        if only is not None and not (c < len(only) and only[c]):
            continue
        if not page[CMP_FLAGS + c]:
            continue
        at = CMP_BASE + 32 * c
        w = [int.from_bytes(page[at + 8 * k: at + 8 * k + 8], "little") for k in range(4)]
        for a, b in ((w[0], w[1]), (w[2], w[3])):
            if a != b:
                pairs[(a, b)] = None
    return list(pairs)


_ADDEND = re.compile(r"\bi32\.const (-?\d+)\s*\n\s*i32\.(add|sub)\b")


def addends(code: str, limit: int = 16) -> tuple[int, ...]:
    """The small constants the code adds to (or subtracts from) a value: `switch (s->status)` and
    range checks compile to `(status - 57) <u 3`, which compares a value no input word holds."""
    out: dict[int, None] = {}
    ones: dict[int, None] = {}
    for m in _ADDEND.finditer(code):
        k = int(m.group(1)) * (1 if m.group(2) == "add" else -1)
        if 2 <= abs(k) < 65536 and len(out) < limit:
            out[k] = None
        elif abs(k) == 1:
            # `x - 1 > 8` (a range check on 1..9) compares x - 1, which no input word holds. Kept apart
            # and last: `i + 1` is in every loop, and must not push the rarer addends out.
            ones[k] = None
    return tuple(out) + tuple(ones)


def shifted(pairs: list[tuple[int, int]], offsets: tuple[int, ...], limit: int = 64) -> list[tuple[int, int]]:
    """The pairs as they were before `+ k` for each addend k: where the input holds `a - k`, `b - k` is
    what makes `x + k` compare like b (i32 arithmetic)."""
    out = []
    for a, b in pairs[:limit]:
        if a < 1 << 32 and b < 1 << 32:
            out += [((a - k) & 0xFFFFFFFF, (b - k) & 0xFFFFFFFF) for k in offsets]
    return out


def replacements(inp: inputs.TestInput, reads: list[int], pairs: list[tuple[int, int]],
                 params: list[inputs.Param], limit: int, rng: random.Random,
                 deltas: tuple[int, ...] = (0, 1, -1), statics: tuple[tuple[int, int], ...] = (),
                 memory: bytes = b"") -> list[inputs.TestInput]:
    """Input-to-state candidates: where the input holds one operand of a logged comparison (a word the
    function read, at the width that matches, a scalar argument, or one of the `statics` (address,
    width) the code names, as seeded or as `memory` after _initialize has it), put the other operand
    there, or it +-1. Up to `limit`, chosen at random among all of them."""
    arena = inp.arena
    edits: dict[tuple, None] = {}
    scal = [j for j, p in enumerate(params) if p.kind in ("scalar", "ambiguous") and isinstance(inp.args[j], int)]
    held = dict(inp.statics)
    static_now: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (width, value) -> statics holding it
    for addr, w in statics:
        cur = held.get(addr, memory[addr:addr + w] if addr + w <= len(memory) else None)
        if cur is not None and len(cur) == w:
            static_now.setdefault((w, int.from_bytes(cur, "little")), []).append((addr, w))
    at: dict[tuple[int, int], list[int]] = {}  # (width, value) -> read addresses holding it
    for r in reads:
        for w in (4, 8, 2, 1):
            if r + w <= len(arena):
                at.setdefault((w, int.from_bytes(arena[r:r + w], "little")), []).append(r)
    taken: set[tuple[int, int]] = set()
    for a, b in pairs:
        for have, want in ((a, b), (b, a)):
            for j in scal:
                bits = 64 if params[j].wasm == "i64" else 32
                if inp.args[j] & ((1 << bits) - 1) == have & ((1 << bits) - 1):
                    for d in deltas:
                        edits[("arg", j, inputs._wrap(want + d, params[j].wasm))] = None
            for w in (4, 8, 2, 1):  # an i32 load first; a wider or narrower one when that does not match
                m = _MASKS[w]
                # the operand must be a value of this width, zero- or sign-extended by the load
                if have & ~m and (have | m) not in (_MASKS[8], _MASKS[4]):
                    continue
                for r in at.get((w, have & m), ()):
                    if (r, have) in taken:
                        continue
                    taken.add((r, have))
                    for d in deltas:
                        edits[("mem", r, w, (want + d) & m)] = None
                for addr, _ in static_now.get((w, have & m), ()):
                    for d in deltas:
                        edits[("static", addr, w, (want + d) & m)] = None
    keys = list(edits)
    rng.shuffle(keys)
    out = []
    for e in keys[:limit]:
        if e[0] == "arg":
            args = list(inp.args)
            args[e[1]] = e[2]
            out.append(inputs.TestInput(args, arena, inp.base, inp.stub_seed, inp.statics))
        elif e[0] == "static":  # putchar's `c == stdout->lbf`: the state lives in static data
            _, addr, w, v = e
            now = {**held, addr: v.to_bytes(w, "little")}
            out.append(inputs.TestInput(list(inp.args), arena, inp.base, inp.stub_seed, tuple(now.items())))
        else:
            _, r, w, v = e
            new = bytearray(arena)
            new[r:r + w] = v.to_bytes(w, "little")
            out.append(inputs.TestInput(list(inp.args), bytes(new), inp.base, inp.stub_seed, inp.statics))
    return out


Observed = tuple  # (probes, reads, pairs, ordered, strs, fault): see observe


def observe(ex: Explorer, inp: inputs.TestInput, limits: wasm_run.Limits, keep_from: int) -> Observed:
    """Run the instrumented reference on `inp` and read its coverage page: (probes set, with hit
    buckets, or None unless it returned; words read; comparison operand pairs; those of ordering
    comparisons, for the boundary variants; string compares (a, b, n), oldest first; the address of the
    load it trapped on, when it trapped reading outside memory, else None)."""
    o = wasm_run.run(ex.prepared, "__codehone_target", inp.args, inp.arena, inputs.GROW_PAGES + 1, limits,
                     keep_from + ex.cov_offset, keep_to=ex.cov_offset + keep_from + COV_END,
                     stub_seed=inp.stub_seed, memory_on_trap=True, statics=inp.statics)
    # Only the coverage page is read back: copying all memory per run cost more than running it.
    if o.kind in ("fuel", "timeout", "error") or len(o.memory) < COV_END:
        return None, [], [], [], [], None
    page = o.memory[:COV_END]
    count = int.from_bytes(page[TRACE_COUNT:TRACE_COUNT + 4], "little")
    n = min(count, TRACE_SLOTS)
    slots = [(count - n + 1 + i) & (TRACE_SLOTS - 1) for i in range(n)]  # oldest to newest
    addrs = [int.from_bytes(page[TRACE_BASE + 4 * j: TRACE_BASE + 4 * j + 4], "little") for j in slots]
    base = inp.base
    # In order of last use: the final reads are the check where the run stopped going deeper.
    reads = list(dict.fromkeys(a - base for a in reversed(addrs) if base <= a < base + len(inp.arena) - 8))
    reads.reverse()
    # The function's own probes count hits in buckets; its callees' only as hit or not: their loops'
    # counts (one more byte copied by a callee) would fill the kept inputs before the function's own
    # paths are reached (print_value, gzvprintf went unreached that way).
    own = ex.probes if ex.own_probes is None else ex.own_probes
    cov = {(i, _BUCKET[b] if i < own else 1) for i, b in enumerate(page[: ex.probes]) if b} \
        if o.kind == "return" else None
    ordered = _operand_pairs(page, ex.cmps, ex.ordering) if cov is not None else []
    calls = int.from_bytes(page[RTN_COUNT:RTN_COUNT + 4], "little")
    strs = [tuple(int.from_bytes(page[at + 4 * k: at + 4 * k + 4], "little") for k in range(3))
            for j in range(max(0, calls - RTN_SLOTS), calls) for at in [RTN_BASE + 12 * (j % RTN_SLOTS)]]
    # The last load traced before a trap is the one that trapped (its address is logged first): out of
    # memory when it lies past the coverage page (a random pointer, or an index past its buffer).
    cov_addr = keep_from + ex.cov_offset
    last = addrs[-1] if addrs else None
    if int.from_bytes(page[LAST_STORE + 4:LAST_STORE + 8], "little") == count and count or not addrs:
        last = int.from_bytes(page[LAST_STORE:LAST_STORE + 4], "little") or None
    fault = last if o.kind == "trap" and last is not None and last >= cov_addr + inputs.PAGE else None
    return cov, reads, _operand_pairs(page, ex.cmps), ordered, strs, fault


def fault_fixes(rng: random.Random, inp: inputs.TestInput, reads: list[int], params: list[inputs.Param],
                fault: int, limit: int = 4) -> list[inputs.TestInput]:
    """Inputs that might not trap where `inp` did, reading `fault` (outside memory): the word the function
    read (or the argument) that holds the faulting access's base pointer (`fault - v` small) becomes an
    address in the arena; when none does, the pointer was fine and an index ran past its buffer, so
    a large number the function read (a length, a count: mp_int's `used`) becomes a small one.

    Reaching the code behind `p->buf[i]` needs inputs on which the reference returns, and random words
    as pointers or counts give it none (a reference that traps on every input compares nothing)."""
    arena, base, size = inp.arena, inp.base, len(inp.arena)
    words = [r for r in dict.fromkeys(r & ~3 for r in reversed(reads)) if r + 4 <= size][:64]
    val = {r: int.from_bytes(arena[r:r + 4], "little") for r in words}
    ptr_args = [j for j, a in enumerate(inp.args) if isinstance(a, int) and params[j].wasm == "i32"
                and 0 <= fault - (a & 0xFFFFFFFF) < inputs.PAGE]
    ptr_words = [r for r in words if 0 <= fault - val[r] < inputs.PAGE]
    out = []
    for _ in range(limit):
        args, new = list(inp.args), bytearray(arena)
        addr = base + rng.randrange(0, size - 4096, 16)
        if ptr_args or ptr_words:
            if ptr_args and (not ptr_words or rng.random() < 0.5):
                args[rng.choice(ptr_args)] = addr
            else:
                r = rng.choice(ptr_words)
                new[r:r + 4] = addr.to_bytes(4, "little")
        else:
            big = [r for r in words if val[r] > 64 and not base <= val[r] < base + size]
            big_args = [j for j, a in enumerate(inp.args) if isinstance(a, int) and params[j].kind != "ptr"
                        and a & 0xFFFFFFFF > 64 and not base <= a < base + size]
            if not big and not big_args:
                break
            small = rng.choice((0, 1, 2, 3, 4, 8, 16))
            if big_args and (not big or rng.random() < 0.3):
                j = rng.choice(big_args)
                args[j] = inputs._wrap(small, params[j].wasm)
            else:
                r = rng.choice(big[:8])
                new[r:r + 4] = small.to_bytes(4, "little")
        out.append(inputs.TestInput(args, bytes(new), base, inp.stub_seed, inp.statics))
    return out


def explore(ex: Explorer, seeds: list[inputs.TestInput], params: list[inputs.Param], consts: tuple[int, ...],
            hints: tuple[tuple[int, int, int], ...], seed: int, runs: int, keep: int, fuel: int,
            memory_bytes: int, keep_from: int, tokens: tuple[bytes, ...] = ()) -> list[inputs.TestInput]:
    """Inputs beyond `seeds`: up to `keep` that each reached a probe (or hit bucket) nothing before
    did, then up to keep/2 siblings of those and keep/2 boundary variants (see below).

    Half the runs (while there are any) try input-to-state replacements from the comparison log of
    an input that was kept, the other half random mutations of the inputs that got furthest.
    """
    rng = random.Random(f"explore:{seed}")
    seen: set[int] = set()
    pool: list[tuple[inputs.TestInput, list[int]]] = []
    found: list[inputs.TestInput] = []
    found_cov: list[tuple[set[int], list[int]]] = []  # per found input: the probes it set, the words it read
    queue: list[tuple[inputs.TestInput, list[int]]] = []  # (candidate, its parent's reads)
    limits = wasm_run.Limits(fuel, 5.0, memory_bytes)

    boundary: list[tuple[inputs.TestInput, list[int], list[tuple[int, int]]]] = []
    strs_first: list[tuple[inputs.TestInput, list[int]]] = []  # the seeds' string replacements: after the shuffle
    tried_strs: set[tuple[int, int]] = set()  # (the other side's address, n) of compares already replaced
    started = False

    def run(inp: inputs.TestInput) -> Observed:
        return observe(ex, inp, limits, keep_from)

    def learn(inp: inputs.TestInput, reads: list[int], pairs: list[tuple[int, int]]) -> None:
        if pairs and len(queue) < 4 * runs:
            queue.extend((c, reads) for c in replacements(inp, reads[-64:], pairs, params, 24, rng,
                                                          statics=ex.static_addrs, memory=ex.statics))
            if ex.offsets:
                queue.extend((c, reads) for c in replacements(inp, reads[-64:], shifted(pairs, ex.offsets),
                                                              params, 8, rng))

    def learn_strings(inp: inputs.TestInput, reads: list[int], strs: list[tuple[int, int, int]]) -> None:
        """String replacements for the compares against a string no run compared the input with before,
        whether or not the run found new code: the input that fails `strcmp(s, "test")`, the last of six
        such checks, goes down the same path as inputs that failed all six for other reasons."""
        fresh = []
        for a, b, n in strs:
            key = (b if inp.base <= a < inp.base + len(inp.arena) else a, n)
            if key not in tried_strs:
                tried_strs.add(key)
                fresh.append((a, b, n))
        if fresh and len(queue) < 4 * runs:  # last in, first out: these are tried next
            (strs_first if not started else queue).extend(
                (c, reads) for c in string_replacements(inp, fresh, ex.statics, 8))

    fixes: list[tuple[inputs.TestInput, list[int]]] = []
    for inp in seeds:
        cov, reads, pairs, ordered, strs, fault = run(inp)
        if fault is not None and len(fixes) < runs // 4:
            fixes.extend((c, reads) for c in fault_fixes(rng, inp, reads, params, fault, 2))
        if cov is not None:
            seen |= cov
            boundary.append((inp, reads, ordered))
        pool.append((inp, reads))
        learn(inp, reads, pairs)
        learn_strings(inp, reads, strs)
    rng.shuffle(queue)
    rng.shuffle(fixes)
    queue.extend(fixes)
    queue.extend(strs_first)
    started = True
    last_new = 0
    for k in range(2 * runs):
        # Past `runs`, only while coverage still grows (something new in the last PLATEAU/4 runs): a
        # parser whose search is still finding paths at the end gets up to twice the runs.
        if len(found) >= keep or k - last_new > (PLATEAU if k < runs else PLATEAU // 4):
            break
        if queue and rng.random() < 0.5:
            child, reads = queue.pop()
        else:
            # Mostly the inputs that got furthest (read the most), where the next check is waiting.
            parent, reads = rng.choice(sorted(pool, key=lambda e: -len(e[1]))[:8]) if rng.random() < 0.7 \
                else rng.choice(pool)
            child = _mutate(rng, parent, reads, params, consts, hints, tokens, ex.fptrs)
        cov, child_reads, pairs, ordered, strs, fault = run(child)
        new = bool(cov is not None and cov - seen)
        if fault is not None and len(child_reads) > len(reads) and len(queue) < 4 * runs:
            queue.extend((c, child_reads) for c in fault_fixes(rng, child, child_reads, params, fault, 2))
        if new:
            seen |= cov
            found.append(child)
            found_cov.append(({i for i, _ in cov}, child_reads))
            last_new = k
            boundary.append((child, child_reads, ordered))
        if new or len(child_reads) > len(reads):
            learn(child, child_reads, pairs)  # it got further: the next check waits there (a prefix, a list)
        learn_strings(child, child_reads, strs)
        if new or len(child_reads) > len(reads) and len(pool) < 256:
            pool.append((child, child_reads))  # new coverage, or it read further into the input
    # Siblings: one input per new path compares that path on one set of values only (a sum whose
    # second term happened to be 0 hides `+` vs `-`). Mutations that still set every probe of
    # the path give it a second and third set.
    siblings: list[inputs.TestInput] = []
    for f, (probes, f_reads) in zip(found, found_cov, strict=True):
        got = 0
        for _ in range(12):
            if len(siblings) >= keep // 2 or got >= 2:
                break
            child = _mutate(rng, f, f_reads, params, consts, hints, tokens, ex.fptrs)
            if child.args == f.args and all(child.arena[r:r + 4] == f.arena[r:r + 4] for r in f_reads):
                continue  # nothing the path reads changed
            cov = run(child)[0]
            if cov is not None and probes <= {i for i, _ in cov}:
                siblings.append(child)
                got += 1
    return found + siblings + _boundaries(ex, boundary, found, params, rng, keep // 2, run)


def _boundaries(ex: Explorer, logged: list, found: list[inputs.TestInput], params: list[inputs.Param],
                rng: random.Random, keep: int, run) -> list[inputs.TestInput]:
    """Up to `keep` inputs on the boundary of an ordering comparison, derived from inputs that returned.

    `x < y` and `x <= y` differ only at x == y, and reaching that once (the equality probe) is not
    enough: the boundary must be hit on the path where the difference shows (cJSON's
    `offset + 5 <= length` matters only when the text there is "false"). So for the inputs that
    found new code first, then the others, one operand of a logged ordering comparison is put
    where the input held the other (exactly, no +-1), and the variant is kept when it still returns.
    """
    if keep <= 0:
        return []
    ids = {id(f) for f in found}
    new = [e for e in logged if id(e[0]) in ids]
    rest = [e for e in logged if id(e[0]) not in ids]
    out: list[inputs.TestInput] = []
    for entries, per_input in ((new, 8), (rest, 2)):
        for inp, reads, pairs in entries:
            got = 0
            for pair in pairs:  # the function's own sites come first
                if len(out) >= keep or got >= per_input:
                    break
                # The pair as logged (the input holds an operand), else shifted back by the code's
                # addends (`x - 1 > 8`: the input holds x, and x = 9 is the boundary), and in statics.
                for cands in ([pair], shifted([pair], ex.offsets)):
                    cs = replacements(inp, reads[-64:], cands, params, 1, rng, deltas=(0,),
                                      statics=ex.static_addrs, memory=ex.statics)
                    if cs and run(cs[0])[0] is not None:
                        out.append(cs[0])
                        got += 1
                        break
    return out
