"""Throughput of 1 against 2 workers for mine, check and train, local and on Ray; prints a table.

Every row is one run of the real CLI (`codehone ...` in a subprocess), timed end to end, so the
figures include what a user waits for: Python start-up, Ray's start-up (a local instance per
run) and torchrun's rendezvous. The baseline of each stage is its 1-worker local run, in the
same invocation; the ratio column is baseline seconds / row seconds (train: tokens/s / baseline
tokens/s). mine's outputs are compared byte for byte against the baseline's (`same units`).

    python benchmarks/scale_throughput.py [--limit 80] [--target c-wat] [--steps 60] [--no-ray]

Needs the [scale] extra for the Ray rows (skipped with a note without it). On a 2-core machine
shared with other work the ratios are bounded by the free cores: read them with the load column.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CODEHONE = [sys.executable, "-m", "codehone"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def check_note(stdout: str) -> str:
    """'P/N passed' from check's JSON summary line (the last line that parses as an object)."""
    for line in reversed(stdout.splitlines()):
        try:
            s = json.loads(line)
        except ValueError:
            continue
        if isinstance(s, dict) and "candidates" in s:
            return f"{s.get('ok', '?')}/{s['candidates']} ok"
    return "no summary"


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    dt = time.monotonic() - t0
    if r.returncode not in (0, 1):  # check exits 1 when a candidate fails: still a measured run
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}\n" + "\n".join(tail))
    return dt, r


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def has_ray() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="c-wat", help="mine/check target (default c-wat on the bundled libc)")
    ap.add_argument("--source", default=None, help="corpus to mine (default: the target's default corpus)")
    ap.add_argument("--limit", type=int, default=80, help="files mined")
    ap.add_argument("--steps", type=int, default=60, help="train steps per run")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--keep", type=Path, default=None, help="keep the work folder here")
    a = ap.parse_args()
    ray = has_ray() and not a.no_ray
    work = a.keep or Path(tempfile.mkdtemp(prefix="scale-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {"RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    rows: list[tuple[str, str, float, str, str]] = []  # stage, how, seconds, ratio, note

    src = [a.source] if a.source else []
    mine_runs = [("local -j 1", ["-j", "1"]), ("local -j 2", ["-j", "2"])]
    if ray:
        mine_runs.append(("ray -j 2", ["-j", "2", "--executor", "ray"]))
    base_units, base_s = None, None
    for how, extra in mine_runs:
        out = work / f"mine-{how.replace(' ', '')}"
        shutil.rmtree(out, ignore_errors=True)
        dt, _ = timed([*CODEHONE, "mine", "-t", a.target, *src, "-o", str(out), "--limit", str(a.limit), *extra], env)
        units = (out / "units.jsonl").read_bytes()
        base_units, base_s = (units, dt) if base_units is None else (base_units, base_s)
        n = units.count(b"\n")
        rows.append(("mine", how, dt, f"{base_s / dt:.2f}x",
                     f"{n} units, same units: {'yes' if units == base_units else 'NO'}, load {load()}"))

    units_file = work / "mine-local-j1" / "units.jsonl"
    check_runs = [("local -j 1", ["-j", "1"]), ("local -j 2", ["-j", "2"])]
    if ray:
        check_runs.append(("ray -j 2", ["-j", "2", "--executor", "ray"]))
    base_s = None
    for how, extra in check_runs:
        dt, r = timed([*CODEHONE, "check", "-t", a.target, "--units", str(units_file), "--no-cache", *extra], env)
        base_s = base_s or dt
        rows.append(("check --units", how, dt, f"{base_s / dt:.2f}x", f"{check_note(r.stdout)}, load {load()}"))

    ds = work / "dataset"
    shutil.rmtree(ds, ignore_errors=True)
    timed([*CODEHONE, "build", str(work / "mine-local-j1"), "-o", str(ds)], env)
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "c-wat-tiny-scratch.yaml"
    sets = ["--set", f"data={ds}", "--set", f"max_steps={a.steps}", "--set", "eval_every=100000",
            "--set", "samples=0", "--set", "save_every=100000",
            "--set", "max_minutes=1000"]
    base_tps = None
    for how, launcher in (("1 process", CODEHONE), ("torchrun 2 processes", [*TORCHRUN, "--nproc_per_node", "2",
                                                                             "-m", "codehone"])):
        out = work / f"train-{how.split()[0]}"
        shutil.rmtree(out, ignore_errors=True)
        dt, r = timed([*launcher, "train", str(recipe), *sets, "--set", f"out={out}"], env)
        summary = json.loads((out / "summary.json").read_text())
        tps = summary["tokens_per_s"]
        base_tps = base_tps or tps
        rows.append(("train", how, dt, f"{tps / base_tps:.2f}x",
                     f"{tps:,.0f} tok/s, final loss {summary['final_loss']:.4f}, load {load()}"))

    print(f"\ncodehone scale-out, {a.target}, {a.limit} files, train {a.steps} steps; {os.cpu_count()} cores\n")
    print("| stage | how | seconds | vs 1 worker | note |\n|---|---|---|---|---|")
    for stage, how, dt, ratio, note in rows:
        print(f"| {stage} | {how} | {dt:.1f} | {ratio} | {note} |")
    if not ray:
        print("\n(no Ray rows: pip install 'codehone[scale]', or --no-ray was given)")
    if a.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
