"""A real c-wat dataset and a tiny model for the iterate and sweep tests: mined here, seconds on a CPU.

Each function lives in its own file so the build can split by file and every split gets some.
"""

from __future__ import annotations

import json
from pathlib import Path

from codehone.config import BuildConfig
from codehone.dataset import run_build
from codehone.mine import MineConfig, run_mine
from codehone.sources import resolve

FUNCTIONS = {
    "add3": "int add3(int a, int b, int c) { return a + b + c; }",
    "sub2": "int sub2(int a, int b) { return a - b; }",
    "mul2": "int mul2(int a, int b) { return a * b; }",
    "neg": "int neg(int a) { return -a; }",
    "is_even": "int is_even(int a) { return (a & 1) == 0; }",
    "max2": "int max2(int a, int b) { return a > b ? a : b; }",
    "min2": "int min2(int a, int b) { return a < b ? a : b; }",
    "abs1": "int abs1(int a) { return a < 0 ? -a : a; }",
    "sq": "int sq(int a) { return a * a; }",
    "inc": "int inc(int a) { return a + 1; }",
    "dec": "int dec(int a) { return a - 1; }",
    "clamp": "int clamp(int a) { if (a < 0) return 0; if (a > 9) return 9; return a; }",
    "avg2": "int avg2(int a, int b) { return (a + b) / 2; }",
    "sign": "int sign(int a) { return (a > 0) - (a < 0); }",
    "dbl": "int dbl(int a) { return a + a; }",
    "half": "int half(int a) { return a >> 1; }",
    "xor2": "int xor2(int a, int b) { return a ^ b; }",
    "or2": "int or2(int a, int b) { return a | b; }",
    "and2": "int and2(int a, int b) { return a & b; }",
    "tri": "int tri(int n) { int s = 0; for (int i = 0; i < n && i < 50; i++) s += i; return s; }",
}


def make_dataset(root: Path) -> tuple[Path, Path]:
    """(dataset folder, modules folder) built from FUNCTIONS with the real mine and build."""
    src = root / "src"
    src.mkdir(parents=True)
    for name, body in FUNCTIONS.items():
        (src / f"{name}.c").write_text(body + "\n")
    run_mine([resolve(str(src))], root / "mine", MineConfig(jobs=1))
    cfg = BuildConfig.model_validate({"split": {"group_by": "file", "ratios": {"train": 0.6, "val": 0.2, "test": 0.2}},
                                      "output": {"plots": False, "parquet": False}})
    run_build([root / "mine"], root / "dataset", cfg)
    return root / "dataset", root / "mine" / "modules"


def split_rows(dataset: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (dataset / f"{split}.jsonl").read_text().splitlines() if line.strip()]


class Scripted:
    """A stand-in for evaluate.run_eval: train prompts get their reference answers as passing samples."""

    def __init__(self, metrics: list[float], passing: bool = True):
        self.metrics, self.passing, self.calls = list(metrics), passing, []

    def __call__(self, model, dataset, *, split="test", k=1, n=None, limit=None, seed=0, out=None, **_kw):
        self.calls.append((split, str(model)))
        rows = split_rows(Path(dataset), split)[:limit]
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        samples = [{"example_id": r["id"], "unit_id": r["unit_id"], "mode": r["mode"], "k": j,
                    "messages": r["messages"][:-1], "completion": r["messages"][-1]["content"],
                    "code": r["messages"][-1]["content"], "verdict": {"ok": self.passing, "counts": {"compiled": True, "run": 1}}, "ok": self.passing}
                   for r in rows for j in range(n or k)]
        (out / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
        value = self.metrics.pop(0) if split != "train" else float(self.passing)
        m = {"pass@1": value, f"pass@{k}": value, "assemble_rate": 1.0, "samples": len(samples)}
        (out / "metrics.json").write_text(json.dumps(m))
        return m
