"""The `zig` target: Zig code, judged by `zig ast-check`, a real type check and the file's tests.

`judge.py` is the verifier. There is no `mine` for zig yet, so no miner and no templates:
serve and mcp ask for plain Zig code.
"""

from __future__ import annotations

from ...toolchains import zig as _toolchain
from .. import Target
from .judge import judge as _judge


def metric_extras(samples: list[dict], _built: list[dict]) -> dict:
    """Tests passed and failed over every sample, and their ratio."""
    passed = sum((s["verdict"].get("counts") or {}).get("tests_passed", 0) or 0 for s in samples)
    failed = sum((s["verdict"].get("counts") or {}).get("tests_failed", 0) or 0 for s in samples)
    total = passed + failed
    return {"tests_passed": passed, "tests_failed": failed,
            "test_pass_rate": round(passed / total, 4) if total else 0.0}


TARGET = Target(
    name="zig",
    answer_lang="zig",
    answer_name="Zig",
    judge=_judge,
    toolchain_version=lambda: f"zig {_toolchain.version()}",
    metric_extras=metric_extras,
    description="Zig code, judged by zig ast-check, zig test -fno-emit-bin and its test blocks",
)
