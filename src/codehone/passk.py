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

from .targets import get
from .targets import verdict as schema


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


def _rate(num: float, den: float) -> float:
    return round(num / den, 4) if den else 0.0


def _pass_block(groups: dict[Any, list[dict]], ks: list[int]) -> dict[str, float]:
    """pass@k per prompt, averaged; a sample passes only when it was verified (ran a test or input)."""
    out = {}
    for k in ks:
        vals = [pass_at_k(len(g), sum(schema.verified(s["verdict"]) for s in g), k)
                for g in groups.values() if len(g) >= k]
        out[f"pass@{k}"] = round(sum(vals) / len(vals), 4) if vals else 0.0
    return out


def summarize_samples(samples: Iterable[dict], target: str, k: int) -> dict[str, Any]:
    """The figures of metrics.json that are counts over judged sample rows.

    Every sample row has example_id, mode, code, verdict (a dict), ok and, when
    generated, stopped_at_eos. pass@j is averaged over prompts, for j in {1, k}.

    The definitions are the verdict schema's (targets/verdict.py): a sample passes only when
    its verdict is ok *and* ran at least one test or input; an ok verdict that ran nothing is
    counted as `passed_without_running`, never as a pass. A prompt whose reference answer
    itself runs nothing (`reference_verified` False: the judge cannot vouch for any answer to
    it) is left out of pass@k and counted as `prompts_unverifiable`.
    """
    samples = list(samples)
    by_prompt: dict[Any, list[dict]] = defaultdict(list)
    for s in samples:
        by_prompt[s["example_id"]].append(s)
    ks = sorted({1, k})
    n_s = len(samples)
    built = [s for s in samples if schema.compiled(s["verdict"])]
    m: dict[str, Any] = {
        "prompts": len(by_prompt),
        "samples": n_s,
        "passed": sum(schema.verified(s["verdict"]) for s in samples),
        "passed_without_running": sum(schema.passed_without_running(s["verdict"]) for s in samples),
        "compile_rate": _rate(len(built), n_s),
    }
    tgt = get(target)
    if tgt.compile_metric != "compile_rate":
        m[tgt.compile_metric] = m["compile_rate"]
    unverifiable = {e for e, g in by_prompt.items() if any(s.get("reference_verified") is False for s in g)}
    m["prompts_unverifiable"] = len(unverifiable)
    m.update(_pass_block({e: g for e, g in by_prompt.items() if e not in unverifiable}, ks))
    m["failure_stages"] = dict(sorted(Counter(s["verdict"].get("stage", "?") for s in samples
                                              if not s["ok"]).items()))
    eos = [s["stopped_at_eos"] for s in samples if s.get("stopped_at_eos") is not None]
    m["stopped_at_eos_rate"] = _rate(sum(eos), len(eos))
    modes: dict[str, dict[Any, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        modes[str(s.get("mode"))][s["example_id"]].append(s)
    if any(s.get("mode") is not None for s in samples):
        m["by_mode"] = {
            mode: {"prompts": len(g), "compile_rate": _rate(sum(schema.compiled(s["verdict"]) for ss in g.values()
                                                                 for s in ss), sum(map(len, g.values()))),
                   **_pass_block({e: ss for e, ss in g.items() if e not in unverifiable}, ks)}
            for mode, g in sorted(modes.items())
        }
    m.update(tgt.metric_extras(samples, built))
    return m
