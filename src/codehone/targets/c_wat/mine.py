"""The c-wat target's mining: every C function of a file, compiled once in context, sliced to its WAT.

Why this shape (the system it replaces kept <0.4% of functions):
  * Each translation unit is compiled once, as the project would compile it:
    its own folder, the repository's header folders and the wasm32-wasi libc
    headers. The header folders are derived from the source tree alone (every
    folder that holds a header some file of the tree `#include`s and that is
    not found next to it), sorted, no repeats: the same file gets the same
    flags in every run, whatever order the workers see files in, so a resumed
    run equals a fresh one.
  * A generated wrapper `#include`s the file and stores the address of every
    function in a retained array, so `static` and unused helpers survive -O2
    instead of being removed as dead code.
  * The TU is linked into a small reactor module (libc linked, unknown symbols
    left as imports). That module is the *reference* the judge splices a
    candidate into; it is kept content-addressed next to the units.
  * The artifact is one function's `(func ...)` form sliced out of the
    module's WAT: no header, types, exports or linker boilerplate.
  * Every file or function that does not make it gets a classified reason.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import stat
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ... import sandbox
from ...records import FileResult, Unit, content_hash
from ...sources import Source, detect_license, read_bounded, read_text
from ...toolchains import wabt, zig
from . import dwarf as wasm_dwarf
from . import functions as c_functions
from . import wat

TARGET = "c-wat"
KEEP_SYMBOL = "__codehone_keep"
MAX_ALT_BUILDS = 3
MAX_INCLUDER_TRIES = 2
WRAPPER_NAME = "__codehone_tu.c"
MAIN_NAMES = ("$__original_main", "$__main_void", "$__main_argc_argv")

BASE_CFLAGS = [
    "-target", "wasm32-wasi",
    "-g",  # DWARF for parameter types and struct layouts (wasm_dwarf); stripped before storing
    "-fno-sanitize=all",
    "-ferror-limit=0",
    "-w",
    # Old C that gcc accepts by default: do not let clang's stricter defaults reject it. Implicit
    # function declarations stay errors: on wasm a guessed signature links into an invalid module.
    "-Wno-error=int-conversion",
    "-Wno-error=incompatible-pointer-types",
    "-Wno-error=implicit-int",
    "-Wno-error=return-type",
]
# WASI's emulation layers for mmap, signals, process clocks and getpid: code written for POSIX
# compiles and links instead of failing on a missing declaration.
WASI_EMULATION = [
    "-D_WASI_EMULATED_MMAN", "-D_WASI_EMULATED_SIGNAL", "-D_WASI_EMULATED_PROCESS_CLOCKS", "-D_WASI_EMULATED_GETPID",
]
WASI_EMULATION_LIBS = [
    "-lwasi-emulated-mman", "-lwasi-emulated-signal", "-lwasi-emulated-process-clocks", "-lwasi-emulated-getpid",
]
LINK_FLAGS = [
    "-mexec-model=reactor",
    "-Wl,--import-symbols",  # unknown symbols become imports, as wasm-ld --allow-undefined
    f"-Wl,--export={KEEP_SYMBOL}",
    "-Wl,-z,stack-size=65536",
]


@dataclass
class MineOptions:
    opt_level: str = "-O2"
    timeout_s: float = 60.0
    max_include_rounds: int = 6
    extra_include_dirs: list[str] = field(default_factory=list)
    defines: list[str] = field(default_factory=list)
    memory_mb: int = 2048  # RLIMIT_AS of every compiler process (and its children)


# ---------------------------------------------------------------- failure classes

_CLASSES: list[tuple[str, re.Pattern]] = [
    ("missing_header", re.compile(r"fatal error: '[^']+' file not found|file not found")),
    ("unsupported_on_target", re.compile(r"Setjmp/longjmp support requires|not supported on this target")),
    ("preprocessor_error", re.compile(r"error: #error|^\s*\d*\s*\|\s*#\s*error", re.M)),
    ("implicit_function", re.compile(r"call to undeclared (library )?function|implicit declaration of function")),
    ("undeclared_identifier", re.compile(r"use of undeclared identifier")),
    ("unknown_type", re.compile(r"unknown type name|must use '(struct|union|enum)' tag")),
    ("incomplete_type", re.compile(r"incomplete (definition of )?type|has incomplete type|sizeof.*incomplete")),
    ("unsupported_on_target", re.compile(
        r"not supported|unsupported|unknown register name|invalid output constraint|invalid input constraint|"
        r"__int128|inline asm|unknown target|thread-local storage is not supported|"
        r"instruction requires|invalid instruction|unknown token in expression|invalid operand", re.I)),
    ("conflicting_definitions", re.compile(r"redefinition of|conflicting types for|duplicate symbol")),
    ("no_member", re.compile(r"no member named")),
    ("type_error", re.compile(r"incompatible|invalid operands|cannot be used|assigning to|initializing|"
                              r"expected expression|called object type")),
    ("syntax_error", re.compile(r"expected|extraneous|unterminated")),
    ("link_error", re.compile(r"wasm-ld|undefined symbol|linker")),
]


def classify(stderr: str) -> tuple[str, str]:
    """(reason, first error line) for a failed compile."""
    lines = [ln for ln in stderr.splitlines() if "error:" in ln]
    first = lines[0].strip() if lines else (stderr.strip().splitlines() or ["(no message)"])[0]
    text = first
    if "Setjmp/longjmp support requires" in stderr:
        return "unsupported_on_target", first
    if "#error" in stderr and re.search(r"error:.*\n.*#\s*error", stderr):
        return "preprocessor_error", first
    for reason, rx in _CLASSES:
        if rx.search(text):
            return reason, first
    return "other_error", first


# ---------------------------------------------------------------- include inference


class HeaderIndex:
    """Headers of one repository by relative path, to answer "where is <a/b.h>?"."""

    def __init__(self, root: Path):
        self.root = root
        self.by_name: dict[str, list[str]] = {}
        self._include_dirs: list[str] | None = None
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in ("debian",))
            for f in filenames:
                if f.endswith((".h", ".hh", ".hpp", ".inc", ".def", ".c")):
                    rel = os.path.relpath(os.path.join(dirpath, f), root)
                    self.by_name.setdefault(f, []).append(rel)

    def includers(self, header: Path) -> list[Path]:
        """The .c files of the repository that #include `header`, nearest first.

        Headers that only compile inside their includer (templates, headers that expect a macro
        or a type from the .c file) are mined in that context.
        """
        if not hasattr(self, "_includers"):
            graph: dict[str, list[str]] = {}
            for name, rels in self.by_name.items():
                if not name.endswith(".c"):
                    continue
                for rel in rels:
                    try:
                        text = read_bounded(self.root / rel, 2_000_000)  # never a fifo, never unbounded
                    except OSError:
                        continue
                    if text is None:
                        continue
                    for inc in c_functions.includes(text):
                        graph.setdefault(inc.split("/")[-1], []).append(rel)
            self._includers = graph
        hrel = os.path.relpath(header, self.root)
        hdir = os.path.dirname(hrel)
        cands = sorted(set(self._includers.get(header.name, [])),
                       key=lambda c: (os.path.dirname(c) != hdir, len(c), c))
        return [self.root / c for c in cands]

    def locate(self, include: str, near: Path) -> Path | None:
        """The base folder X such that X/include exists, preferring the one nearest to `near`."""
        base = include.split("/")[-1]
        cands = [c for c in self.by_name.get(base, []) if c.endswith(include) and (
            len(c) == len(include) or c[-len(include) - 1] == "/")]
        if not cands:
            return None
        near_rel = os.path.relpath(near, self.root)

        def score(c: str) -> tuple[int, int, str]:
            common = os.path.commonpath([near_rel, c]) if near_rel != "." else ""
            return (-len(Path(common).parts) if common else 0, len(c), c)

        best = sorted(cands, key=score)[0]
        folder = self.root / best[: len(best) - len(include)]
        return folder.resolve()

    def include_dirs(self) -> list[str]:
        """The repository's header folders as `-I` flags, derived from the tree alone: sorted, no repeats.

        For every `#include` of every file of the tree that is neither next to the including file
        nor a libc/compiler header, the folder `locate` finds for it (nearest that file). Computed
        once per index; never depends on which files were compiled first.
        """
        if self._include_dirs is None:
            system = _system_include_dirs()
            folders: set[str] = set()
            for rels in self.by_name.values():
                for rel in rels:
                    here = (self.root / rel).parent
                    for inc in _scan_includes(self.root / rel):
                        if (here / inc).is_file() or any((d / inc).is_file() for d in system):
                            continue
                        folder = self.locate(inc, here)
                        if folder is not None:
                            folders.add(str(folder))
            self._include_dirs = sorted(folders)
        return [f"-I{d}" for d in self._include_dirs]


_INCLUDE_LINE = re.compile(rb'^[ \t]*#[ \t]*include[ \t]*[<"]([^>"\n]+)[>"]', re.M)
_SCAN_BYTES = 2_000_000


def _scan_includes(path: Path) -> list[str]:
    """The paths a file `#include`s (a bounded read of a regular file; anything else has none)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return []
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(_SCAN_BYTES)
    except OSError:
        return []
    finally:
        os.close(fd)
    return [m.group(1).decode("utf-8", "replace").strip() for m in _INCLUDE_LINE.finditer(data)]


def _system_include_dirs() -> list[Path]:
    """The folders clang searches for `<...>` on wasm32-wasi: a header found there is never the repo's."""
    lib = zig.zig_dir() / "lib"
    return [d for d in (lib / "include", lib / "libc" / "include" / "wasm-wasi-musl",
                        lib / "libc" / "include" / "generic-musl") if d.is_dir()]


_NOT_FOUND = re.compile(r"fatal error: '([^']+)' file not found")


# ---------------------------------------------------------------- compiling


def _wrapper(path: Path, names: list[str]) -> tuple[str, dict[int, str]]:
    """The keep-alive TU: include the file, then take the address of every function."""
    lines = [f'#include "{path}"', f"void *const {KEEP_SYMBOL}[] __attribute__((used)) = {{"]
    line_of: dict[int, str] = {}
    for n in names:
        lines.append(f"  (void *)&{n},")
        line_of[len(lines)] = n
    lines.append("  (void *)0,")
    lines.append("};")
    return "\n".join(lines) + "\n", line_of


@dataclass
class CompileOutcome:
    ok: bool
    wasm: bytes | None
    stderr: str
    reason: str | None
    detail: str | None
    dropped: dict[str, str]  # name → why it could not be kept alive (inactive branch, not addressable)
    attempts: int
    flags: list[str]


# Declarations WASI code commonly gets from headers a configure step would have included. Only
# added on a retry, when the compiler reports an implicit declaration.
_COMMON_HEADERS = ["unistd.h", "fcntl.h", "string.h", "stdlib.h", "stdio.h", "strings.h"]
_WRAPPER_ERR = re.compile(rf"{re.escape(WRAPPER_NAME)}:(\d+):\d+: error: (.*)")


def compile_tu(
    path: Path,
    names: list[str],
    source: Source,
    opts: MineOptions,
    index: HeaderIndex | None,
    extra_defines: list[str] = (),
) -> CompileOutcome:
    """Compile and link one TU, repairing what can be repaired from the compiler's own errors.

    Repairs, each driven by a diagnostic: a name the wrapper cannot take the address of (removed
    by the preprocessor, or a macro) is dropped; a missing header that exists in the repository
    adds its folder (for this file only: nothing one file learns changes another's flags);
    an implicit declaration pulls in the common POSIX headers; a symbol clash
    with libc (when mining a libc) links without libc.
    """
    keep = list(dict.fromkeys(names))
    dropped: dict[str, str] = {}
    tree_flags: list[str] = index.include_dirs() if index is not None else []
    inc_flags: list[str] = []  # repairs of this file alone, in the order its own errors named them
    force_includes: list[str] = []
    attempts = 0
    last_err = ""
    use_libc = True
    zig_env = zig.env()
    cache = str(zig.cache_dir())
    for _round in range(opts.max_include_rounds + 4):
        if not keep:
            return CompileOutcome(False, None, last_err, "all_dropped", "no function is visible to the compiler",
                                  dropped, attempts, [])
        attempts += 1
        src, line_of = _wrapper(path, keep)
        flags = [
            *BASE_CFLAGS,
            *WASI_EMULATION,
            opts.opt_level,
            *_unique([
                f"-I{path.parent}",
                *[f"-I{d}" for d in source.include_dirs + opts.extra_include_dirs],
                *tree_flags,
                *inc_flags,
            ]),
            *_unique([f"-D{d}" for d in [*source.defines, *opts.defines, *extra_defines]]),
            *[x for h in force_includes for x in ("-include", h)],
        ]
        link = [*LINK_FLAGS, *WASI_EMULATION_LIBS] if use_libc else [*LINK_FLAGS, "-nostdlib", "-Wl,--no-entry"]
        res = sandbox.run(
            [zig.zig_exe(), "cc", *flags, *link, WRAPPER_NAME, "-o", "out.wasm"],
            files={WRAPPER_NAME: src},
            env=zig_env,
            limits=_COMPILER_LIMITS(opts.timeout_s, opts.memory_mb),
            collect=["out.wasm"],
            isolation="rlimits",
            readable=[str(source.root), str(zig.zig_dir())],
            writable=[cache],
        )
        if res.timed_out:
            return CompileOutcome(False, None, res.stderr, "timeout", f"compiler ran over {opts.timeout_s:.0f}s",
                                  dropped, attempts, flags)
        if _out_of_memory(res):
            return CompileOutcome(False, None, res.stderr, "out_of_memory",
                                  f"compiler ran over its {opts.memory_mb} MiB memory limit (--memory-mb)",
                                  dropped, attempts, flags)
        if res.killed_by:
            return CompileOutcome(False, None, res.stderr, "compiler_crash", res.killed_by, dropped, attempts, flags)
        if res.ok and "out.wasm" in res.files:
            return CompileOutcome(True, res.files["out.wasm"], res.stderr, None, None, dropped, attempts,
                                  [*flags, *link])
        err = res.stderr
        last_err = err
        progressed = False
        # 1. Names the wrapper cannot use: removed by the preprocessor, or macros / not functions.
        for m in _WRAPPER_ERR.finditer(err):
            name = line_of.get(int(m.group(1)))
            if name and name in keep:
                why = "inactive_preprocessor_branch" if "undeclared identifier" in m.group(2) else "not_addressable"
                dropped[name] = why
                keep.remove(name)
                progressed = True
        # 2. Missing headers that exist somewhere in the repository: add their base folder.
        if index is not None:
            for m in _NOT_FOUND.finditer(err):
                folder = index.locate(m.group(1), path.parent)
                flag = f"-I{folder}" if folder else None
                if flag and flag not in inc_flags and flag not in tree_flags:
                    inc_flags.append(flag)
                    progressed = True
        # 3. Implicit declarations: what a configured build's HAVE_UNISTD_H etc. would have included.
        if not force_includes and "call to undeclared function" in err:
            force_includes = list(_COMMON_HEADERS)
            progressed = True
        # 4. Symbols clashing with libc (mining a libc itself): link without libc.
        if use_libc and ("duplicate symbol" in err or "symbol conflict" in err):
            use_libc = False
            progressed = True
        if not progressed:
            break
    reason, detail = classify(last_err) if last_err else ("nothing_to_compile", "no function could be kept")
    return CompileOutcome(False, None, last_err, reason, detail, dropped, attempts, [])


def _unique(flags: list[str]) -> list[str]:
    """`flags` with repeats removed, the first kept (the compiler would search a repeated -I once)."""
    return list(dict.fromkeys(flags))


def default_corpus() -> list[Source]:
    """zig's bundled wasi-libc sources: real C, present after `pip install`, no network needed.

    It is mined with the include folders and defines of wasi-libc's own Makefile (the
    musl `hidden`/`weak` attributes live in a header zig does not ship, so they are defines).
    """
    wasi = zig.libc_sources() / "wasi"
    lic = detect_license(wasi) or "Apache-2.0 WITH LLVM-exception"
    commit = f"ziglang-{zig.version()}"
    musl_defines = [
        "hidden=__attribute__((__visibility__(\"hidden\")))",
        "weak=__attribute__((__weak__))",
        "weak_alias(old,new)=extern __typeof(old) new __attribute__((__weak__, __alias__(#old)))",
        "_WASI_EMULATED_SIGNAL",
    ]
    top = wasi / "libc-top-half"
    bottom = wasi / "libc-bottom-half"
    return [
        Source(root=top, name="wasi-libc-top-half", commit=commit, license=lic,
               include_dirs=[str(top / d) for d in ("musl/src/include", "musl/src/internal", "musl/arch/wasm32",
                                                    "headers/private")],
               defines=musl_defines),
        Source(root=bottom, name="wasi-libc-bottom-half", commit=commit, license=lic,
               include_dirs=[str(bottom / d) for d in ("headers/private", "cloudlibc/src/include", "cloudlibc/src")],
               defines=musl_defines),
    ]


def _COMPILER_LIMITS(timeout_s: float, memory_mb: int = 4096) -> sandbox.Limits:
    """Limits for zig cc on mined code: generous fds/processes (zig builds libc in parallel), and an
    address-space limit on every process it starts (clang included), so one huge file cannot take the host."""
    return sandbox.Limits(timeout_s=timeout_s, memory_mb=memory_mb, file_size_mb=256, nproc=4096, nofile=4096)


_OOM = re.compile(r"out of memory|std::bad_alloc|Allocation failed|Cannot allocate memory|OutOfMemory|"
                  r"failed to allocate|memory exhausted", re.I)


def _out_of_memory(res: sandbox.RunResult) -> bool:
    """The compiler hit its address-space limit: an allocation failed (it says so, or aborts on it)."""
    if res.ok or res.timed_out:
        return False
    return bool(_OOM.search(res.stderr[-4000:]))


def warm_toolchain(opts: MineOptions, timeout_s: float = 900.0) -> str | None:
    """Build wasi libc and the emulation libraries into the zig cache once, before the workers start.

    The first link with a given flag set makes zig build libc (~30 s on 2 cores). Done here, once,
    with a long timeout, instead of racing in every worker under the per-file compile timeout.
    Returns an error line, or None when the toolchain is ready.
    """
    res = sandbox.run(
        [zig.zig_exe(), "cc", *BASE_CFLAGS, *WASI_EMULATION, opts.opt_level, *LINK_FLAGS, *WASI_EMULATION_LIBS,
         WRAPPER_NAME, "-o", "out.wasm"],
        files={WRAPPER_NAME: f"int codehone_warm(int x) {{ return x + 1; }}\n"
                             f"void *const {KEEP_SYMBOL}[] __attribute__((used)) = {{ (void *)&codehone_warm }};\n"},
        env=zig.env(),
        limits=_COMPILER_LIMITS(timeout_s),
        collect=["out.wasm"],
        isolation="rlimits",
    )
    if res.ok and "out.wasm" in res.files:
        return None
    lines = [ln for ln in res.stderr.splitlines() if "error" in ln] or res.stderr.splitlines() or ["no output"]
    return "timed out" if res.timed_out else lines[0].strip()


def _active_definitions(path: Path, flags: list[str], source: Source, of: Path | None = None) -> set[int] | None:
    """Lines of `of` (default: `path`) that survive preprocessing `path`.

    Used to tell apart same-named definitions in #if/#else branches.
    """
    res = sandbox.run(
        [zig.zig_exe(), "cc", *[f for f in flags if not f.startswith("-Wl")], "-E", str(path)],
        env=zig.env(),
        limits=sandbox.Limits(timeout_s=60, memory_mb=2048, file_size_mb=256, nofile=4096, output_cap=64 << 20),
        isolation="rlimits",
    )
    if not res.ok:
        return None
    target = str(of or path)
    lines: set[int] = set()
    cur_file, cur_line = None, 0
    marker = re.compile(r'^# (\d+) "((?:[^"\\]|\\.)*)"')
    for ln in res.stdout.splitlines():
        m = marker.match(ln)
        if m:
            cur_line = int(m.group(1))
            cur_file = m.group(2)
            continue
        if cur_file == target and ln.strip():
            lines.add(cur_line)
        cur_line += 1
    return lines


# ---------------------------------------------------------------- one file


def normalized_source(src: str) -> str:
    """Whitespace- and comment-insensitive form of C code, for exact-duplicate detection."""
    s = re.sub(r"/\*.*?\*/", " ", src, flags=re.S)
    s = re.sub(r"//[^\n]*", " ", s)
    return " ".join(s.split())


def mine_file(
    path: Path,
    source: Source,
    opts: MineOptions,
    index: HeaderIndex | None = None,
) -> FileResult:
    """Extract, compile in context and slice every function of one file.

    A first build uses the file's normal configuration. Functions it could not see (inactive
    `#ifdef X` branches) get a second build with their enabling macros defined, so alternative
    implementations are mined too; their units record the extra defines in meta.flags.
    """
    import time

    t0 = time.monotonic()
    rel = str(path.relative_to(source.root))
    result = FileResult(path=rel)
    try:
        text, result.non_utf8 = read_text(path)
    except OSError as e:
        result.file_reason = "unreadable"
        result.examples["unreadable"] = str(e)
        return result
    try:
        funcs = c_functions.extract(text)
    except Exception as e:  # tree-sitter never raises on bad C, but a broken grammar install might
        result.file_reason = "parse_error"
        result.examples["parse_error"] = str(e)
        return result
    result.functions = len(funcs)
    if not funcs:
        result.seconds = time.monotonic() - t0
        return result
    defines: list[str] = []
    if path.suffix in (".h", ".hh", ".hpp"):
        defines = c_functions.implementation_macros(text)
    _mine_passes(_Ctx(path, rel, source, opts, index, result), funcs, defines)
    if result.file_reason and path.suffix in (".h", ".hh", ".hpp") and index is not None:
        # A header that does not compile alone: mine it inside a .c file that includes it.
        for includer in index.includers(path)[:MAX_INCLUDER_TRIES]:
            alt = FileResult(path=rel, functions=len(funcs), non_utf8=result.non_utf8)
            _mine_passes(_Ctx(path, rel, source, opts, index, alt, tu=includer), funcs, defines)
            alt.compile_attempts += result.compile_attempts
            if alt.file_reason is None:
                result = alt
                break
            result.compile_attempts = alt.compile_attempts
    result.seconds = time.monotonic() - t0
    return result


def _mine_passes(ctx: _Ctx, funcs: list[c_functions.CFunction], defines: list[str]) -> None:
    """The normal build, then alternative configurations for functions in inactive branches.

    One extra build per distinct set of enabling macros (at most MAX_ALT_BUILDS), each defining
    only that set, since defining them all at once usually combines branches that were never
    meant to be built together.
    """
    result, rel = ctx.result, ctx.rel
    pending = _build_pass(ctx, funcs, defines)
    tried: set[tuple[str, ...]] = set()
    while pending and result.file_reason is None and len(tried) < MAX_ALT_BUILDS:
        groups = Counter(
            tuple(m for m in f.conditions if not m.startswith("__") and m not in defines) for f in pending
        )
        cands = [g for g, _ in groups.most_common() if g and g not in tried]
        if not cands:
            break
        conf = cands[0]
        tried.add(conf)
        members = [f for f in pending if set(conf) >= {m for m in f.conditions if not m.startswith("__")}]
        if not members:
            continue
        left = _build_pass(ctx, members, [*defines, *conf], second=True)
        pending = [f for f in pending if f not in members or f in left]
    for f in pending:
        _fail(result, "inactive_preprocessor_branch", f"{rel}:{f.line} {f.name}")


@dataclass
class _Ctx:
    path: Path
    rel: str
    source: Source
    opts: MineOptions
    index: HeaderIndex | None
    result: FileResult
    tu: Path | None = None  # compile this file (an includer) instead of `path`


def _build_pass(ctx: _Ctx, funcs: list[c_functions.CFunction], defines: list[str],
                second: bool = False) -> list[c_functions.CFunction]:
    """Compile once with `defines`, turn what was built into units; return functions not built."""
    result, rel = ctx.result, ctx.rel
    outcome = compile_tu(ctx.tu or ctx.path, [f.name for f in funcs], ctx.source, ctx.opts, ctx.index,
                         extra_defines=defines)
    result.compile_attempts += outcome.attempts
    if outcome.reason == "all_dropped":  # every function is in an inactive branch or is a macro
        not_built = []
        for f in funcs:
            if outcome.dropped.get(f.name) == "not_addressable":
                _fail(result, "not_addressable", f"{rel}:{f.line} {f.name} (a macro or not a function)")
            else:
                not_built.append(f)
        return not_built
    def file_failed(reason: str, detail: str) -> list[c_functions.CFunction]:
        """The whole build failed. In an alternative configuration that loses nothing more (the
        functions stay pending); otherwise every function of the file is lost to `reason`."""
        if second:
            return funcs
        result.file_reason = reason
        result.failures[reason] += len(funcs)
        result.examples.setdefault(reason, f"{rel}: {detail}")
        return []

    if not outcome.ok:
        detail = (outcome.detail or "").replace(str(ctx.source.root) + "/", "").replace(str(zig.zig_dir()), "<zig>")
        return file_failed(outcome.reason, detail)
    outcome.wasm, debug = wasm_dwarf.split(outcome.wasm)
    c_types = wasm_dwarf.function_types(debug, {f.name for f in funcs}, WRAPPER_NAME)
    invalid = module_error(outcome.wasm)
    if invalid:
        return file_failed("invalid_module", invalid)
    with tempfile.NamedTemporaryFile(suffix=".wasm") as tf:
        tf.write(outcome.wasm)
        tf.flush()
        try:
            fns = wat.functions(wabt.wasm2wat(tf.name))
        except (RuntimeError, wat.WatSyntaxError) as e:
            return file_failed("wat_print_error", str(e))
    sha = hashlib.sha256(outcome.wasm).hexdigest()
    counts = Counter(f.name for f in funcs)
    active: set[int] | None = None
    if any(c > 1 for c in counts.values()):
        active = _active_definitions(ctx.tu or ctx.path, outcome.flags, ctx.source, ctx.path)
    toolchain = {"zig": zig.version(), "clang": zig.clang_version(), "wabt": wabt.version()}
    not_built: list[c_functions.CFunction] = []
    used = False
    for f in funcs:
        why = outcome.dropped.get(f.name)
        if why == "not_addressable":
            _fail(result, why, f"{rel}:{f.line} {f.name} (a macro or not a function after preprocessing)")
            continue
        if why is not None:
            not_built.append(f)
            continue
        if counts[f.name] > 1:
            if active is None:
                _fail(result, "ambiguous_definition", f"{rel}:{f.line} {f.name} defined {counts[f.name]} times")
                continue
            if not any(ln in active for ln in range(f.line, min(f.end_line, f.line + 3) + 1)):
                not_built.append(f)
                continue
        wat_name = "$" + f.name
        if wat_name not in fns and f.name == "main":
            # wasm32-wasi renames `int main(void)` (clang: __original_main; newer: __main_void) and, in a
            # command, `main(argc, argv)` (__main_argc_argv): the unit is that function.
            wat_name = next((n for n in MAIN_NAMES if n in fns), wat_name)
        field_ = fns.get(wat_name)
        if field_ is None:
            if f.in_preproc:
                not_built.append(f)
            else:
                _fail(result, "not_emitted", f"{rel}:{f.line} {f.name} has no function in the module")
            continue
        artifact = wat.strip_typeuse(field_.text)
        if wat.func_body_is_empty(artifact):
            _fail(result, "empty_body", f"{rel}:{f.line} {f.name} compiles to no instructions")
            continue
        used = True
        unit = Unit(
            id=content_hash(ctx.source.name, rel, f.name, str(f.line), f.source),
            target=TARGET,
            language="c",
            repo=ctx.source.name,
            repo_url=ctx.source.url,
            commit=ctx.source.commit,
            path=rel,
            line=f.line,
            license=ctx.source.license,
            name=f.name,
            signature=f.signature,
            doc=f.doc,
            source=f.source,
            artifact=artifact,
            meta={
                "module": sha,
                "wat_name": wat_name,
                "flags": outcome.flags,
                "config_defines": list(defines),
                "opt": ctx.opts.opt_level,
                "toolchain": toolchain,
                "static": f.is_static,
                "in_preproc": f.in_preproc,
                "header": ctx.path.suffix != ".c",
                "compiled_via": str(ctx.tu.relative_to(ctx.source.root)) if ctx.tu else None,
                "norm_hash": content_hash(normalized_source(f.source)),
                "source_bytes": len(f.source.encode()),
                "wat_lines": artifact.count("\n") + 1,
                **({"c_params": c_types[f.name]} if f.name in c_types else {}),
            },
        )
        result.units.append(unit.__dict__)
    if used:
        result.modules[f"{sha}.wasm"] = outcome.wasm
    return not_built


def module_error(wasm_bytes: bytes) -> str | None:
    """Why wasmtime rejects the module, or None if it validates (the judge must be able to run it)."""
    import wasmtime

    try:
        wasmtime.Module.validate(_engine(), wasm_bytes)
    except Exception as e:  # wasmtime raises WasmtimeError with the validator's message
        return str(e).splitlines()[0][:300]
    return None


_ENGINE = None


def _engine():
    global _ENGINE
    if _ENGINE is None:
        import wasmtime

        _ENGINE = wasmtime.Engine()
        # Close it while wasmtime's FFI is still loaded; its __del__ at interpreter teardown
        # would otherwise print an "Exception ignored" traceback.
        atexit.register(_ENGINE.close)
    return _ENGINE


def _fail(result: FileResult, reason: str, example: str) -> None:
    result.failures[reason] += 1
    result.examples.setdefault(reason, example)
