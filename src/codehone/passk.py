"""pass@k and the other eval figures, computed from judged samples alone.

Why from the samples and nothing else: `metrics.json` must be recomputable
from `samples.jsonl` (the test recounts it), so every figure here is a count
over sample rows with a stated denominator.

pass@k is the unbiased estimator of Chen et al. (2021): with n samples of
which c pass, the chance that k drawn without replacement include a pass is
1 - C(n-c, k) / C(n, k), written as a product so no binomial ever overflows.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k): the probability that k of the n samples include one of the c passes."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (got n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):  # C(n-c,k)/C(n,k) = prod_{i=n-c+1..n} (1 - k/i)
        prod *= 1.0 - k / i
    return 1.0 - prod


def assembled(target: str, verdict: dict) -> bool:
    """Did the code get through the toolchain (c-wat: assembled and validated; rust/zig: compiled)?"""
    stage = verdict.get("stage")
    if target == "c-wat":
        return bool(verdict.get("ok")) or stage == "execute"
    return stage not in ("parse", "internal") and not (verdict.get("counts") or {}).get("errors")


def _rate(num: float, den: float) -> float:
    return round(num / den, 4) if den else 0.0


def _pass_block(groups: dict[Any, list[dict]], ks: list[int]) -> dict[str, float]:
    out = {}
    for k in ks:
        vals = [pass_at_k(len(g), sum(s["ok"] for s in g), k) for g in groups.values() if len(g) >= k]
        out[f"pass@{k}"] = round(sum(vals) / len(vals), 4) if vals else 0.0
    return out


def _nonblank_lines(code: str) -> int:
    return sum(1 for line in code.splitlines() if line.strip())


def summarize_samples(samples: Iterable[dict], target: str, k: int) -> dict[str, Any]:
    """The figures of metrics.json that are counts over judged sample rows.

    Every sample row has example_id, mode, code, verdict (a dict), ok and, when
    generated, stopped_at_eos. pass@j is averaged over prompts, for j in {1, k}.
    """
    samples = list(samples)
    by_prompt: dict[Any, list[dict]] = defaultdict(list)
    for s in samples:
        by_prompt[s["example_id"]].append(s)
    ks = sorted({1, k})
    n_s = len(samples)
    built = [s for s in samples if assembled(target, s["verdict"])]
    m: dict[str, Any] = {
        "prompts": len(by_prompt),
        "samples": n_s,
        "passed": sum(s["ok"] for s in samples),
        "compile_rate": _rate(len(built), n_s),
    }
    if target == "c-wat":
        m["assemble_rate"] = m["compile_rate"]
        m["passed_without_execution"] = sum(
            s["ok"] and not (s["verdict"].get("counts") or {}).get("executed", False) for s in samples)
    m.update(_pass_block(by_prompt, ks))
    m["failure_stages"] = dict(sorted(Counter(s["verdict"].get("stage", "?") for s in samples
                                              if not s["ok"]).items()))
    eos = [s["stopped_at_eos"] for s in samples if s.get("stopped_at_eos") is not None]
    m["stopped_at_eos_rate"] = _rate(sum(eos), len(eos))
    modes: dict[str, dict[Any, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        modes[str(s.get("mode"))][s["example_id"]].append(s)
    if any(s.get("mode") is not None for s in samples):
        m["by_mode"] = {
            mode: {"prompts": len(g), "compile_rate": _rate(sum(assembled(target, s["verdict"]) for ss in g.values()
                                                                 for s in ss), sum(map(len, g.values()))),
                   **_pass_block(g, ks)}
            for mode, g in sorted(modes.items())
        }
    m.update(_target_extras(target, samples, built))
    return m


def _target_extras(target: str, samples: list[dict], built: list[dict]) -> dict[str, Any]:
    """rust: clippy warnings per KLOC of compiled code, idiomatic score, doc rate; zig: test pass rate."""
    out: dict[str, Any] = {}
    if target == "rust":
        warn = sum((s["verdict"].get("counts") or {}).get("clippy_warnings", 0) or 0 for s in built)
        lines = sum(_nonblank_lines(s.get("code", "")) for s in built)
        out["clippy_warnings_per_kloc"] = round(1000 * warn / lines, 3) if lines else None
        for key in ("idiomatic_score", "doc_rate"):
            vals = [(s["verdict"].get("scores") or {}).get(key) for s in samples]
            vals = [v for v in vals if v is not None]
            out[key] = round(sum(vals) / len(vals), 4) if vals else None
    elif target == "zig":
        passed = sum((s["verdict"].get("counts") or {}).get("tests_passed", 0) or 0 for s in samples)
        failed = sum((s["verdict"].get("counts") or {}).get("tests_failed", 0) or 0 for s in samples)
        out["tests_passed"], out["tests_failed"] = passed, failed
        out["test_pass_rate"] = _rate(passed, passed + failed)
    return out
