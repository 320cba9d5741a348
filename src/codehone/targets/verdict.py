"""One verdict schema for every target, and the one definition of each rate built on it.

Why here, beside the target contract: every figure codehone reports (check's summary, eval's
metrics, the rounds iterate keeps, the trial sweep picks) is a count over verdicts. When each
stage read a target's own counts its own way, a WAT that did not assemble counted as
compiled, a Zig test failure as a compile error, and a killed rustc as a clean compile. So a
judge fills the counts below, and the rates are computed here and nowhere else.

Stages, in order (a verdict's `stage` is the last one reached):
    parse → compile (assemble, for WAT) → validate → lint → test (execute, for differential runs)
plus `internal` when the judge itself failed.

Counts that every judge sets, with one meaning everywhere:
    compiled   bool  the compiler (for WAT: the assembler and the validator) accepted the code.
                     A compile that timed out or was killed is not a compile.
    errors     int   compiler errors, from the compile/assemble/validate step only
                     (a failing test is not a compiler error)
    warnings   int   lint warnings (rust: clippy + rustc lints), on compiled code
    run        int   tests or generated inputs actually run
    passed     int   of those, passed
    failed     int   of those, failed
    timeouts   int   steps stopped by a time limit (a compile, a test binary, an input)

Rates (`rates()` for verdicts, `passk.summarize_samples` for eval's samples):
    compile_rate             compiled / candidates
    verified                 ok and run >= 1: a pass that executed something
    pass_rate                verified / candidates
    passed_without_running   ok but run == 0: reported as its own count, never as a pass
    avg_warnings             mean `warnings` over compiled candidates only (a failed compile
                             has no lint count, not a count of 0); also avg_clippy_warnings
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

STAGES = ("parse", "compile", "validate", "lint", "test")
# Target-specific names of the same positions in the order.
STAGE_ALIASES = {"assemble": "compile", "execute": "test"}


def standard_counts(*, compiled: bool, errors: int = 0, warnings: int = 0, run: int = 0, passed: int = 0,
                    failed: int = 0, timeouts: int = 0) -> dict[str, Any]:
    """The schema's counts, for a judge to merge into its verdict's `counts`."""
    return {"compiled": bool(compiled), "errors": int(errors), "warnings": int(warnings), "run": int(run),
            "passed": int(passed), "failed": int(failed), "timeouts": int(timeouts)}


def _d(v: Any) -> Mapping[str, Any]:
    """A verdict as a mapping (a Verdict dataclass or its dict)."""
    return v if isinstance(v, Mapping) else v.__dict__


def counts(v: Any) -> Mapping[str, Any]:
    return _d(v).get("counts") or {}


def compiled(v: Any) -> bool:
    """The compiler accepted it. A verdict without the schema's `compiled` count did not compile."""
    return counts(v).get("compiled") is True


def ran(v: Any) -> bool:
    """At least one test or generated input was run."""
    n = counts(v).get("run")
    return isinstance(n, int) and n >= 1


def verified(v: Any) -> bool:
    """A pass that executed something: the only kind pass@k, iterate and sweep count."""
    return bool(_d(v).get("ok")) and ran(v)


def passed_without_running(v: Any) -> bool:
    return bool(_d(v).get("ok")) and not ran(v)


def _rate(num: float, den: float) -> float:
    return round(num / den, 4) if den else 0.0


def rates(verdicts: Iterable[Any]) -> dict[str, Any]:
    """The schema's rates over a batch of verdicts (check's summary; eval adds pass@k)."""
    vs = list(verdicts)
    n = len(vs)
    built = [v for v in vs if compiled(v)]
    out: dict[str, Any] = {
        "compile_rate": _rate(len(built), n),
        "verified": sum(verified(v) for v in vs),
        "pass_rate": _rate(sum(verified(v) for v in vs), n),
        "passed_without_running": sum(passed_without_running(v) for v in vs),
        "runs": sum(counts(v).get("run", 0) or 0 for v in vs),
        "runs_passed": sum(counts(v).get("passed", 0) or 0 for v in vs),
        "runs_failed": sum(counts(v).get("failed", 0) or 0 for v in vs),
        "timeouts": sum(counts(v).get("timeouts", 0) or 0 for v in vs),
    }
    if built:
        out["avg_warnings"] = round(sum(counts(v).get("warnings", 0) or 0 for v in built) / len(built), 3)
        clippy = [counts(v)["clippy_warnings"] for v in built if isinstance(counts(v).get("clippy_warnings"), int)]
        if clippy:
            out["avg_clippy_warnings"] = round(sum(clippy) / len(clippy), 3)
    return out
