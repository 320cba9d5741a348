"""The Zig judge: `zig ast-check`, a real type check, and the file's `test` blocks, run.

Stages:
  parse    `zig ast-check`: syntax and a few local rules only.
  compile  `zig test` on the candidate plus a `comptime { _ = &f; ... }` block
           naming every top-level declaration: Zig analyses only what is
           referenced, so without it a type error in an unused function would
           pass (ast-check alone misses type errors). Without test blocks this
           is `-fno-emit-bin` (analysis only); with tests it builds the test
           binary (`--test-no-exec`) in the same step.
  test     the test binary runs in a read-only work dir with tight limits;
           passed/failed/skipped come from the test runner's summary line.

The zig global cache must be writable (zig locks and writes manifests even on a
hit, and opens the std ZIR files read-write), but a shared writable cache could
be poisoned by a hostile candidate. So a seed cache is warmed once, from a
trusted file, outside the sandbox. Each worker (process and thread) keeps a
private copy of it, and after every compile puts it back exactly: files the run
added are deleted, files whose size, mtime or ctime changed (ctime cannot be
forged from user space) are copied again from the seed. That check is ~700
stats; the full copy it replaces (~50 MB, 700 files) cost 0.1-0.35 s per
verdict on this 2-core machine and, being file-system work, scaled worst of all
under `-j 2`. Warming builds compiler_rt and the std ZIR, which is what makes
the first `zig test` slow; with the seed a test build takes about a second.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ... import sandbox
from ...records import Diagnostic, Verdict
from ...toolchains import zig as tc
from ..verdict import standard_counts

SRC = "candidate.zig"
_DIAG = re.compile(
    r"^(?P<file>[^\n:]+):(?P<line>\d+):(?P<col>\d+): (?P<level>error|warning): (?P<msg>.*)$", re.M
)
_TOP_DECL = re.compile(
    r"^(?P<pub>pub\s+)?(?P<quals>(?:(?:export|extern(?:\s+\"\w+\")?|inline|noinline|threadlocal)\s+)*)"
    r"(?P<kind>fn|const|var)\s+(?P<name>[A-Za-z_]\w*|@\"[^\"]+\")(?P<rest>.*)$",
    re.M,
)
_TEST_BLOCK = re.compile(r"^\s*test\b\s*(\"[^\"]*\"|[A-Za-z_]\w*)?\s*\{", re.M)
_WARM = """const std = @import("std");
pub fn add(a: i32, b: i32) i32 { return a + b; }
test "warm" {
    var list: std.ArrayList(u8) = .empty;
    defer list.deinit(std.testing.allocator);
    try list.append(std.testing.allocator, 1);
    try std.testing.expectEqual(@as(i32, 3), add(1, 2));
    try std.testing.expect(std.mem.eql(u8, "a", "a"));
    std.debug.print("", .{});
}
"""


def _run(cmd: list[str], **kw: Any) -> sandbox.RunResult:
    """sandbox.run, but a sandbox that cannot start raises: that is no verdict on the code (and is not cached)."""
    res = sandbox.run(cmd, **kw)
    if res.killed_by == "spawn":
        raise RuntimeError(f"sandbox failed to start: {res.stderr[:300]}")
    return res


def seed_cache() -> Path:
    """The warmed zig cache every sandbox copies; built once per zig version, under a file lock."""
    base = tc.cache_dir()
    seed = base.with_name(f"{base.name}-judge-seed-{tc.version()}")
    if (seed / ".ready").exists():
        return seed
    seed.parent.mkdir(parents=True, exist_ok=True)
    with open(seed.parent / f".{seed.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (seed / ".ready").exists():
            return seed
        tmp = Path(tempfile.mkdtemp(prefix=seed.name + ".", dir=seed.parent))
        src = tmp / "warm"
        src.mkdir()
        (src / "warm.zig").write_text(_WARM)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(src),
            "ZIG_GLOBAL_CACHE_DIR": str(tmp / "cache"),
            "ZIG_LOCAL_CACHE_DIR": str(src / "local"),
        }
        for extra in ([], ["-fno-emit-bin"]):
            subprocess.run(
                [tc.zig_exe(), "test", "warm.zig", *extra],
                cwd=src,
                env=env,
                capture_output=True,
                timeout=600,
                check=False,
            )
        shutil.rmtree(src, ignore_errors=True)
        cache = tmp / "cache"
        cache.mkdir(exist_ok=True)
        (cache / ".ready").write_text("ok\n")
        shutil.rmtree(seed, ignore_errors=True)
        os.replace(cache, seed)
        shutil.rmtree(tmp, ignore_errors=True)
    return seed


class _WorkerCache:
    """This worker's private copy of the seed cache, restored to the seed after every use."""

    def __init__(self, seed: Path) -> None:
        self.seed = seed
        self.root = Path(tempfile.mkdtemp(prefix="codehone-zigcache-"))
        os.chmod(self.root, 0o711)  # the sandbox uid may traverse, not list
        self.dir = self.root / "zg"
        shutil.copytree(seed, self.dir, symlinks=True)
        self.files: dict[str, tuple[int, int, int]] = {}
        self.dirs: set[str] = set()
        for dirpath, _dirnames, filenames in os.walk(self.dir):
            os.chmod(dirpath, 0o777)  # the run's uid is fresh each time: everyone may write
            self.dirs.add(os.path.relpath(dirpath, self.dir))
            for n in filenames:
                p = os.path.join(dirpath, n)
                os.chmod(p, 0o666)
                self.files[os.path.relpath(p, self.dir)] = self._sig(p)
        atexit.register(shutil.rmtree, self.root, True)

    @staticmethod
    def _sig(path: str) -> tuple[int, int, int]:
        st = os.lstat(path)
        return st.st_size, st.st_mtime_ns, st.st_ctime_ns

    def restore(self) -> int:
        """Undo whatever the last run did to the copy; the number of entries put back or removed."""
        seen: set[str] = set()
        fixed = 0
        for dirpath, dirnames, filenames in os.walk(self.dir):
            for d in list(dirnames):
                rel = os.path.relpath(os.path.join(dirpath, d), self.dir)
                if rel not in self.dirs or os.path.islink(os.path.join(dirpath, d)):
                    _remove(os.path.join(dirpath, d))
                    dirnames.remove(d)
                    fixed += 1
            for n in filenames:
                p = os.path.join(dirpath, n)
                rel = os.path.relpath(p, self.dir)
                seen.add(rel)
                if rel not in self.files:
                    _remove(p)
                    fixed += 1
                elif self._sig(p) != self.files[rel]:
                    self._put_back(rel)
                    fixed += 1
        for rel in self.files.keys() - seen:
            self._put_back(rel)
            fixed += 1
        for rel in self.dirs:
            d = self.dir / rel
            if not d.is_dir() or d.is_symlink() or (d.stat().st_mode & 0o777) != 0o777:
                _remove(str(d))
                d.mkdir(parents=True, exist_ok=True)
                os.chmod(d, 0o777)
                fixed += 1
        return fixed

    def _put_back(self, rel: str) -> None:
        dst = self.dir / rel
        _remove(str(dst))
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.seed / rel, dst)
        os.chmod(dst, 0o666)
        self.files[rel] = self._sig(str(dst))


def _remove(path: str) -> None:
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)


_CACHES: dict[tuple[int, int], _WorkerCache] = {}


def worker_cache() -> _WorkerCache:
    """The calling thread's cache copy (made on first use, from the current seed)."""
    key = (os.getpid(), threading.get_ident())
    seed = seed_cache()
    wc = _CACHES.get(key)
    if wc is None or wc.seed != seed or not wc.dir.is_dir():
        wc = _CACHES[key] = _WorkerCache(seed)
    return wc


def references(candidate: str) -> str:
    """A `comptime` block naming every top-level declaration, so zig analyses all of them.

    Generic functions (comptime or anytype parameters) are named without `&`,
    since taking the address of a generic function is an error; extern
    declarations are left out, since referencing them would need a linker.
    """
    refs = []
    for m in _TOP_DECL.finditer(candidate):
        if "extern" in m.group("quals"):
            continue
        name = m.group("name")
        generic = m.group("kind") == "fn" and re.search(r"\bcomptime\b|\banytype\b", m.group("rest"))
        addr = m.group("kind") == "fn" and not generic
        refs.append(f"_ = {'&' if addr else ''}{name};")
    if not refs:
        return ""
    return "\ncomptime {\n    " + "\n    ".join(refs) + "\n}\n"


def _diagnostics(text: str, lines: int | None = None) -> list[Diagnostic]:
    """zig's `file:line:col: error: msg` lines. Lines past the candidate's `lines` are in the appended
    reference block, and errors inside other files (std, on a bad instantiation) keep their place
    in the message: in both cases `line` is None rather than a line of the candidate that is wrong."""
    out = []
    for m in _DIAG.finditer(text):
        line, msg = int(m.group("line")), m.group("msg")
        if not m.group("file").endswith(SRC):
            line, msg = None, f"{os.path.basename(m.group('file'))}:{m.group('line')}: {msg}"
        elif lines is not None and line > lines:
            line, msg = None, f"{msg} (in the reference block codehone appends)"
        out.append(Diagnostic(message=msg, code="zig", line=line, level=m.group("level")))
    return out


def _test_counts(text: str) -> tuple[int, int, int] | None:
    """(passed, failed, skipped) from the runner's summary, or None when it never printed one."""
    m = re.search(r"^All (\d+) tests passed\.", text, re.M)
    if m:
        return int(m.group(1)), 0, 0
    m = re.search(r"^(\d+) passed; (\d+) skipped; (\d+) failed\.", text, re.M)
    if m:
        return int(m.group(1)), int(m.group(3)), int(m.group(2))
    m = re.search(r"^(\d+) passed; (\d+) failed\.", text, re.M)
    if m:
        return int(m.group(1)), int(m.group(2)), 0
    m = re.search(r"^(\d+) of (\d+) tests passed\.", text, re.M)
    if m:
        return int(m.group(1)), int(m.group(2)) - int(m.group(1)), 0
    return None


def _test_failures(out: str) -> list[Diagnostic]:
    """One diagnostic per failed test: its name, error, what it printed, and the line in the candidate."""
    diags: list[Diagnostic] = []
    current, said = None, []
    for line in out.splitlines():
        m = re.match(r"^\d+/\d+ (\S+?)\.\.\.(.*)$", line)
        if m:
            current, said = m.group(1), [m.group(2)]
        else:
            said.append(line)
        f = re.search(r"FAIL \((\w+)\)", line)
        if f and current:
            detail = " ".join(x.strip() for x in said if x.strip() and "FAIL (" not in x)[:300]
            diags.append(
                Diagnostic(
                    f"test {current} failed: {f.group(1)}" + (f" ({detail})" if detail else ""),
                    code="test_failed",
                    level="error",
                )
            )
            current = None
        loc = re.match(rf"^\S*{re.escape(SRC)}:(\d+):\d+: 0x[0-9a-f]+ in test\.", line)
        if loc and diags and diags[-1].line is None:
            diags[-1].line = int(loc.group(1))
    return diags


def judge(
    candidate: str,
    *,
    unit: dict | None = None,
    timeout_s: float = 120.0,
    test_timeout_s: float = 10.0,
    run_tests: bool = True,
    zig_jobs: int = 1,
    isolation: str | None = None,
    **_: Any,
) -> Verdict:
    """Judge one Zig file. `zig_jobs` threads per compile: parallelism comes from `check -j`."""
    timings: dict[str, float] = {}
    counts: dict[str, Any] = {"tests_passed": 0, "tests_failed": 0, "tests_skipped": 0,
                              **standard_counts(compiled=False)}
    readable = [str(tc.zig_dir())]
    zig = tc.zig_exe()

    def verdict(ok: bool, stage: str, diags: list[Diagnostic], level: str, killed: bool = False) -> Verdict:
        if stage in ("parse", "compile") and not counts["compiled"] and not killed:
            counts["errors"] = sum(1 for d in diags if d.level == "error")  # compiler errors only, never a test's
        counts.update(run=counts["tests_passed"] + counts["tests_failed"], passed=counts["tests_passed"],
                      failed=counts["tests_failed"])
        return Verdict(
            ok=ok,
            stage=stage,
            diagnostics=diags,
            counts=counts,
            timings=timings,
            isolation=level,
            target="zig",
            toolchain=f"zig {tc.version()}",
        )

    limits = sandbox.Limits(timeout_s=timeout_s, memory_mb=8192, file_size_mb=256, nproc=128, nofile=1024)
    env = {"ZIG_GLOBAL_CACHE_DIR": "$CODEHONE_WORK/.zg", "ZIG_LOCAL_CACHE_DIR": "$CODEHONE_WORK/.zl"}
    res = _run(
        [zig, "ast-check", SRC],
        files={SRC: candidate},
        limits=limits,
        readable=readable,
        env=env,
        isolation=isolation,
    )
    timings["parse"] = round(res.seconds, 4)
    counts["timeouts"] += int(bool(res.timed_out))
    if not res.ok:
        diags = _diagnostics(res.stderr) or [
            Diagnostic(
                res.stderr.strip()[-500:] or f"ast-check killed ({res.killed_by})", code="zig", level="error"
            )
        ]
        return verdict(False, "parse", diags, res.isolation)

    with_tests = run_tests and bool(_TEST_BLOCK.search(candidate))
    source = candidate + ("\n" if not candidate.endswith("\n") else "") + references(candidate)
    cmd = [zig, "test", SRC, f"-j{zig_jobs}", "--cache-dir", ".zl"]
    cmd += ["--test-no-exec", "-femit-bin=tests.bin"] if with_tests else ["-fno-emit-bin"]
    t0 = time.monotonic()
    wc = worker_cache()
    try:
        res = _run(
            cmd,
            files={SRC: source},
            limits=limits,
            readable=readable,
            writable=[str(wc.dir)],
            env={**env, "ZIG_GLOBAL_CACHE_DIR": str(wc.dir)},
            isolation=isolation,
            collect=["tests.bin"] if with_tests else [],
        )
    finally:
        wc.restore()
    timings["compile"] = round(time.monotonic() - t0, 4)
    counts["timeouts"] += int(bool(res.timed_out))
    if not res.ok or (with_tests and "tests.bin" not in res.files):
        diags = _diagnostics(res.stderr, candidate.count("\n") + 1)
        if not diags or res.killed_by:
            why = f"compiler killed ({res.killed_by})" if res.killed_by else res.stderr.strip()[-500:]
            diags.insert(0, Diagnostic(why or "compile failed", code="zig", level="error"))
        return verdict(False, "compile", diags, res.isolation, killed=bool(res.killed_by or res.timed_out))
    counts["compiled"] = True
    if not with_tests:
        return verdict(True, "compile", [], res.isolation)

    exec_limits = sandbox.Limits(
        timeout_s=test_timeout_s, memory_mb=1024, file_size_mb=8, nproc=32, nofile=64
    )
    res = _run(
        ["./tests.bin"],
        files={"tests.bin": res.files["tests.bin"]},
        executables=["tests.bin"],
        limits=exec_limits,
        isolation=isolation,
        readonly_work=True,
    )
    timings["test_run"] = round(res.seconds, 4)
    counts["timeouts"] += int(bool(res.timed_out))
    out = res.stderr + "\n" + res.stdout
    tc_counts = _test_counts(out)
    diags: list[Diagnostic] = []
    if tc_counts is None:
        started = len(re.findall(r"^\d+/\d+ ", out, re.M))
        counts.update(tests_passed=max(0, started - 1), tests_failed=1)
        why = (
            f"test binary killed ({res.killed_by})"
            if res.killed_by
            else f"test binary exited with {res.returncode}"
        )
        diags.append(Diagnostic(why, code="sandbox" if res.killed_by else "test_exit", level="error"))
        return verdict(False, "test", diags, res.isolation)
    passed, failed, skipped = tc_counts
    # The runner counts a test that leaked (std.testing.allocator) as passed but exits 1: a failure.
    m = re.search(r"^(\d+) tests? leaked memory\.", out, re.M)
    leaked = min(int(m.group(1)), passed) if m else 0
    passed, failed = passed - leaked, failed + leaked
    counts.update(tests_passed=passed, tests_failed=failed, tests_skipped=skipped, tests_leaked=leaked)
    diags += _test_failures(out)
    if leaked:
        names = sorted(set(re.findall(rf"{re.escape(SRC)}:\d+:\d+: 0x[0-9a-f]+ in (test\.\S+)", out)))
        diags.append(
            Diagnostic(
                f"{leaked} test(s) leaked memory: {', '.join(names)[:300]}", code="test_leak", level="error"
            )
        )
    ok = res.ok and failed == 0
    if not ok and not diags:
        diags.append(Diagnostic(f"test binary exited with {res.returncode}", code="test_exit", level="error"))
    return verdict(ok, "test", diags, res.isolation)
