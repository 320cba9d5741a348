"""The Rust judge: parse, compile, lint (clippy, JSON), run `#[test]`s, and grade idiom and docs.

Stages, in order; the verdict's `stage` is the last one reached:
  parse    tree-sitter-rust; a syntax error is only blamed on parsing when
           rustc fails too (the grammar may lag the language).
  compile  one `clippy-driver --error-format=json --emit=metadata` run: it is
           rustc plus the clippy lints, so compile errors and lint warnings
           come from one process. Edition 2021; a file with a top-level
           `fn main` is a bin crate, anything else a lib.
  lint     warnings counted per lint name from the JSON `code` field -- never
           by counting strings in a stream (the seed system read the wrong
           stream and always counted 0). Lints do not fail the verdict unless
           `deny_warnings=True`.
  test     when the file has `#[test]` functions: `rustc --test`, then the test
           binary runs in a read-only work dir with tight limits; passed/failed
           come from libtest's per-test lines.
Every step runs in the sandbox, which hides host files (so `include_str!`
on /etc/passwd fails to compile) and the network.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from ... import sandbox
from ...records import Diagnostic, Verdict
from ...toolchains import rust as tc
from ..verdict import standard_counts
from . import metrics as rust_metrics

_TEST_LINE = re.compile(r"^test (\S+) \.\.\. (ok|FAILED|ignored)", re.M)
_TEST_START = re.compile(r"^test (\S+) \.\.\. ", re.M)
_FAILURE = re.compile(r"^---- (\S+) stdout ----\n(.*?)(?=^---- |^failures:|\Z)", re.M | re.S)
_TEST_SUMMARY = re.compile(r"^test result: (ok|FAILED)\. (\d+) passed; (\d+) failed", re.M)
SRC = "main.rs"


def _run(cmd: list[str], **kw: Any) -> sandbox.RunResult:
    """sandbox.run, but a sandbox that cannot start raises: that is no verdict on the code (and is not cached)."""
    res = sandbox.run(cmd, **kw)
    if res.killed_by == "spawn":
        raise RuntimeError(f"sandbox failed to start: {res.stderr[:300]}")
    return res


def _diagnostics(stderr: str) -> list[dict[str, Any]]:
    """The JSON diagnostics rustc wrote, one object per line; non-JSON lines are skipped."""
    out = []
    for line in stderr.splitlines():
        if not line.startswith("{"):
            continue
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if isinstance(d, dict) and d.get("$message_type", "diagnostic") == "diagnostic":
            out.append(d)
    return out


def _to_diag(d: dict[str, Any]) -> Diagnostic:
    code = (d.get("code") or {}).get("code")
    primary = [s for s in d.get("spans", []) if s.get("is_primary")] or d.get("spans", [])
    line = primary[0].get("line_start") if primary else None
    return Diagnostic(message=d.get("message", ""), code=code, line=line, level=d.get("level", "error"))


def _limits(timeout_s: float) -> sandbox.Limits:
    return sandbox.Limits(timeout_s=timeout_s, memory_mb=4096, file_size_mb=256, nproc=128, nofile=512)


def judge(
    candidate: str,
    *,
    unit: dict | None = None,
    timeout_s: float = 60.0,
    test_timeout_s: float = 10.0,
    run_tests: bool = True,
    deny_warnings: bool = False,
    isolation: str | None = None,
    **_: Any,
) -> Verdict:
    """Judge one Rust file. `unit` is accepted for a uniform signature and not needed."""
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    tree = rust_metrics.parse(candidate)
    metrics = rust_metrics.analyze(tree)
    timings["parse"] = round(time.monotonic() - t0, 4)
    crate_type = "bin" if rust_metrics.has_main(tree) else "lib"
    counts: dict[str, Any] = {
        "crate_type": crate_type,
        "patterns": metrics["patterns"],
        "pub_items": metrics["pub_items"],
        "documented_pub_items": metrics["documented_pub_items"],
    }
    scores: dict[str, float] = {"idiomatic_score": metrics["idiomatic_score"]}
    if metrics["doc_rate"] is not None:
        scores["doc_rate"] = metrics["doc_rate"]
    readable = [str(tc.sysroot())]

    def verdict(ok: bool, stage: str, diags: list[Diagnostic], level: str) -> Verdict:
        return Verdict(
            ok=ok,
            stage=stage,
            diagnostics=diags,
            counts=counts,
            timings=timings,
            isolation=level,
            scores=scores,
            target="rust",
            toolchain=tc.version(),
        )

    # compile + lint, one process
    cmd = [
        tc.clippy_driver(),
        "--edition",
        "2021",
        "--crate-type",
        crate_type,
        "--crate-name",
        "candidate",
        "--emit=metadata",
        "--error-format=json",
        "-o",
        "out.rmeta",
        SRC,
    ]
    res = _run(cmd, files={SRC: candidate}, limits=_limits(timeout_s), readable=readable, isolation=isolation)
    timings["compile"] = round(res.seconds, 4)
    raw = _diagnostics(res.stderr)
    # Summary lines ("3 warnings emitted", "aborting due to ...") have no span and no code.
    raw = [d for d in raw if d.get("spans") or (d.get("code") or {}).get("code")]
    errors = [d for d in raw if d.get("level") in ("error", "error: internal compiler error")]
    warnings = [d for d in raw if d.get("level") == "warning"]
    clippy: dict[str, int] = {}
    rustc_w: dict[str, int] = {}
    for w in warnings:
        code = (w.get("code") or {}).get("code") or "warning"
        bucket = clippy if code.startswith("clippy::") else rustc_w
        key = code.removeprefix("clippy::")
        bucket[key] = bucket.get(key, 0) + 1
    killed = bool(res.timed_out or res.killed_by)
    built = not killed and res.ok and not errors
    counts.update(
        clippy_warnings=sum(clippy.values()),
        clippy=clippy,
        rustc_warnings=sum(rustc_w.values()),
        rustc_lints=rustc_w,
    )
    # The schema: a killed or timed-out rustc compiled nothing; a failure with no JSON error is one error.
    counts.update(standard_counts(
        compiled=built,
        errors=len(errors) or (0 if built or killed else 1),
        warnings=sum(clippy.values()) + sum(rustc_w.values()) if built else 0,
        timeouts=int(bool(res.timed_out)),
    ))
    diags = [_to_diag(d) for d in errors + warnings]
    if not built:
        if killed:
            diags.insert(0, Diagnostic(f"compiler killed ({res.killed_by})", code="sandbox", level="error"))
        elif not errors:
            diags.insert(
                0, Diagnostic(res.stderr.strip()[-500:] or "compiler failed", code="rustc", level="error")
            )
        stage = "parse" if tree.root_node.has_error else "compile"
        return verdict(False, stage, diags, res.isolation)
    if deny_warnings and (clippy or rustc_w):
        return verdict(False, "lint", diags, res.isolation)
    if not (run_tests and rust_metrics.has_tests(tree)):
        counts.update(tests_passed=0, tests_failed=0)
        return verdict(True, "lint", diags, res.isolation)

    # test: build the harness, then run it where it can write nothing but a small /tmp
    build = [
        tc.rustc(),
        "--edition",
        "2021",
        "--test",
        "--crate-name",
        "candidate",
        "-C",
        "debuginfo=0",
        "--cap-lints",
        "allow",
        "--error-format=json",
        "-o",
        "tests.bin",
        SRC,
    ]
    res = _run(
        build,
        files={SRC: candidate},
        limits=_limits(timeout_s),
        readable=readable,
        isolation=isolation,
        collect=["tests.bin"],
    )
    timings["test_build"] = round(res.seconds, 4)
    if not res.ok or "tests.bin" not in res.files:
        errs = [_to_diag(d) for d in _diagnostics(res.stderr) if d.get("level") == "error" and d.get("spans")]
        diags += errs or [
            Diagnostic(res.stderr.strip()[-500:] or "test build failed", code="rustc", level="error")
        ]
        counts.update(tests_passed=0, tests_failed=0)
        return verdict(False, "test", diags, res.isolation)
    exec_limits = sandbox.Limits(
        timeout_s=test_timeout_s, memory_mb=1024, file_size_mb=8, nproc=32, nofile=64
    )
    res = _run(
        ["./tests.bin", "--test-threads=1"],
        files={"tests.bin": res.files["tests.bin"]},
        executables=["tests.bin"],
        limits=exec_limits,
        isolation=isolation,
        readonly_work=True,
        env={"RUST_BACKTRACE": "0"},
    )
    timings["test_run"] = round(res.seconds, 4)
    results = _TEST_LINE.findall(res.stdout)
    passed = sum(1 for _, r in results if r == "ok")
    failed = sum(1 for _, r in results if r == "FAILED")
    # With --test-threads=1 libtest names a test before running it: one named but never
    # finished is the one that hung or crashed the binary, and counts as failed.
    finished = {name for name, _ in results}
    hung = [n for n in _TEST_START.findall(res.stdout) if n not in finished]
    counts.update(tests_passed=passed, tests_failed=failed + len(hung), run=passed + failed + len(hung),
                  passed=passed, failed=failed + len(hung), timeouts=counts["timeouts"] + int(bool(res.timed_out)))
    ok = res.ok and failed == 0 and not hung and bool(_TEST_SUMMARY.search(res.stdout))
    if not ok:
        why = {m.group(1): m.group(2).strip() for m in _FAILURE.finditer(res.stdout)}
        for name, r in results:
            if r == "FAILED":
                detail = f": {why[name][:300]}" if why.get(name) else ""
                diags.append(Diagnostic(f"test {name} failed{detail}", code="test_failed", level="error"))
        for name in hung:
            diags.append(Diagnostic(f"test {name} did not finish", code="test_failed", level="error"))
        if res.timed_out or res.killed_by:
            diags.append(Diagnostic(f"test binary killed ({res.killed_by})", code="sandbox", level="error"))
        elif not failed:
            diags.append(
                Diagnostic(f"test binary exited with {res.returncode}", code="test_exit", level="error")
            )
    return verdict(ok, "test", diags, res.isolation)
