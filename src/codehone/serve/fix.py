"""suggest_fix: the model proposes, the judge decides; only a verified fix leaves this loop.

Why: the Zig assistant this replaces returned whatever the model said, so a
"fix" that did not compile reached the user looking like an answer. Here every
proposal goes through the same judge as `codehone check`, and the result says
`verified: true` only with a proposal that passed it. Otherwise it says plainly
that no verified fix was found after N attempts, and shows the last diagnostics.

The loop is stateless: each attempt's prompt is built from the original code and
its error alone, never from earlier proposals, so attempt N costs what attempt 1
does (the chat context of the old system grew until it overflowed). Proposals
differ because they are sampled with a different seed per attempt.

`propose` and `judge` are plain callables: the MCP server plugs in the model and
`codehone.check.check`; a test may plug in deterministic proposals to prove the
loop rejects failing ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..records import Verdict

Propose = Callable[[int, str, str], str]  # (attempt, code, error) -> proposed code
Judge = Callable[[str], Verdict]


def diagnostics_text(v: Verdict, limit: int = 8) -> str:
    """The judge's first diagnostics as compiler-style lines, for a prompt or a person."""
    lines = []
    for d in v.diagnostics[:limit]:
        where = f"line {d.line}: " if d.line else ""
        lines.append(f"{d.level}{f'[{d.code}]' if d.code else ''}: {where}{d.message}".strip())
    return "\n".join(lines) or f"failed at stage {v.stage}"


def verdict_summary(v: Verdict) -> dict[str, Any]:
    return {"ok": v.ok, "stage": v.stage,
            "diagnostics": [{"code": d.code, "message": d.message, "line": d.line, "level": d.level}
                            for d in v.diagnostics],
            "counts": v.counts}


@dataclass
class FixResult:
    verified: bool
    message: str
    fix: str | None = None
    attempts: int = 0
    verdict: dict | None = None
    tried: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"verified": self.verified, "message": self.message, "fix": self.fix, "attempts": self.attempts,
                "verdict": self.verdict, "tried": self.tried}


def suggest_fix(code: str, error: str | None, judge: Judge, propose: Propose, attempts: int = 3) -> FixResult:
    """Judge `code`; if it fails, ask `propose` up to `attempts` times and return the first passing proposal."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    first = judge(code)
    if first.ok:
        return FixResult(True, "the code already passes the judge; nothing to fix", fix=code, attempts=0,
                         verdict=verdict_summary(first))
    judged = diagnostics_text(first)
    err = f"{error.strip()}\n{judged}" if error and error.strip() and error.strip() not in judged else judged
    last = first
    tried: list[dict] = []
    seen = {code.strip()}
    for n in range(1, attempts + 1):
        proposal = propose(n, code, err)
        if not proposal.strip() or proposal.strip() in seen:
            tried.append({"attempt": n, "ok": False, "stage": "proposal",
                          "reason": "empty" if not proposal.strip() else "same as the input or an earlier proposal"})
            continue
        seen.add(proposal.strip())
        v = judge(proposal)
        tried.append({"attempt": n, "ok": v.ok, "stage": v.stage,
                      "reason": None if v.ok else (v.diagnostics[0].message[:200] if v.diagnostics else v.stage)})
        if v.ok:
            return FixResult(True, f"verified fix found at attempt {n} of {attempts}: it passed the judge",
                             fix=proposal, attempts=n, verdict=verdict_summary(v), tried=tried)
        last = v
    return FixResult(False, f"no verified fix found after {attempts} attempts", fix=None, attempts=attempts,
                     verdict=verdict_summary(last), tried=tried)
