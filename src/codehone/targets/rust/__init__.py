"""The `rust` target: Rust code, judged by rustc + clippy (JSON diagnostics) and the file's tests.

`judge.py` is the verifier; `metrics.py` grades idiom and documentation. There is no
`mine` for rust yet, so no miner and no templates: serve and mcp ask for plain Rust code.
"""

from __future__ import annotations

from ...toolchains import rust as _toolchain
from .. import Target
from .judge import judge as _judge


def _nonblank_lines(code: str) -> int:
    return sum(1 for line in code.splitlines() if line.strip())


def metric_extras(samples: list[dict], built: list[dict]) -> dict:
    """clippy warnings per KLOC of compiled code, the idiomatic score and the doc rate."""
    out: dict = {}
    warn = sum((s["verdict"].get("counts") or {}).get("clippy_warnings", 0) or 0 for s in built)
    lines = sum(_nonblank_lines(s.get("code", "")) for s in built)
    out["clippy_warnings_per_kloc"] = round(1000 * warn / lines, 3) if lines else None
    for key in ("idiomatic_score", "doc_rate"):
        vals = [(s["verdict"].get("scores") or {}).get(key) for s in samples]
        vals = [v for v in vals if v is not None]
        out[key] = round(sum(vals) / len(vals), 4) if vals else None
    return out


TARGET = Target(
    name="rust",
    answer_lang="rust",
    answer_name="Rust",
    judge=_judge,
    toolchain_version=_toolchain.version,
    metric_extras=metric_extras,
    description="Rust code, judged by rustc and clippy (JSON diagnostics) and its #[test]s",
)
