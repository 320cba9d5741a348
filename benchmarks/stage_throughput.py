"""mine and check throughput of this checkout against another git revision, in one run.

Why: a refactor (moving a target into its own package, a new executor layer) must not
change speed. Both sides run in fresh processes, alternated round by round (A, B, A, B ...)
so that load from anything else on the machine falls on both alike; the table gives each
side's median and the ratio current / baseline (above 1.0 = the current code is faster).

  mine   `codehone mine --limit N -j J` of the bundled corpus into an empty folder
  check  `codehone check --no-cache -j J` of the first U units' own artifacts (c-wat)

The baseline is `git worktree add`ed into a temporary folder and imported through
PYTHONPATH, with this checkout's venv; both sides share the zig cache, warmed first.

Run: python benchmarks/stage_throughput.py [--baseline-rev dfa4125] [--rounds 3] [--files 120] [--units 24]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.monotonic() - t0
    if r.returncode not in (0, 1):  # check exits 1 when a candidate fails; anything else is an error
        sys.exit(f"{' '.join(cmd[:4])} failed ({r.returncode}): {r.stderr.strip()[-400:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline-rev", default="dfa4125", help="git revision to compare against")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--files", type=int, default=120, help="files mined per round (--limit)")
    ap.add_argument("--units", type=int, default=24, help="units whose artifacts are checked per round")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="codehone-throughput-"))
    base_src = work / "baseline"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-f", "--detach", str(base_src), args.baseline_rev],
                   check=True, capture_output=True)
    try:
        env = {**os.environ, "ZIG_GLOBAL_CACHE_DIR": os.environ.get("ZIG_GLOBAL_CACHE_DIR",
                                                                     str(REPO / ".cache" / "zig"))}
        sides = {"baseline": {**env, "PYTHONPATH": str(base_src / "src")},
                 "current": {**env, "PYTHONPATH": str(REPO / "src")}}
        ch = [sys.executable, "-m", "codehone"]
        # Warm-up (and the units to check): one mine with the current code, outside the timings.
        seed = work / "seed"
        _run([*ch, "mine", "-o", str(seed), "-j", str(args.jobs), "--limit", str(args.files)], sides["current"])
        units = [json.loads(line) for line in (seed / "units.jsonl").read_text().splitlines()][: args.units]
        samples = work / "samples.jsonl"
        samples.write_text("".join(json.dumps({"unit_id": u["id"], "candidate": u["artifact"]}) + "\n"
                                   for u in units))
        times: dict[tuple[str, str], list[float]] = {}
        for r in range(args.rounds):
            for side, senv in sides.items() if r % 2 == 0 else reversed(list(sides.items())):
                out = work / f"mine-{side}-{r}"
                times.setdefault(("mine", side), []).append(
                    _run([*ch, "mine", "-o", str(out), "-j", str(args.jobs), "--limit", str(args.files)], senv))
                times.setdefault(("check", side), []).append(
                    _run([*ch, "check", str(samples), "-t", "c-wat", "--units", str(seed / "units.jsonl"),
                          "--no-cache", "-j", str(args.jobs)], senv))
                shutil.rmtree(out, ignore_errors=True)
        print(f"baseline {args.baseline_rev} vs current checkout; {args.rounds} alternated rounds, -j {args.jobs}, "
              f"mine --limit {args.files}, check {len(units)} c-wat artifacts (load {os.getloadavg()[0]:.1f})")
        print(f"{'stage':<7} {'baseline s (median)':>20} {'current s (median)':>19} {'ratio':>7}   all rounds")
        for stage in ("mine", "check"):
            b, c = times[(stage, "baseline")], times[(stage, "current")]
            mb, mc = statistics.median(b), statistics.median(c)
            print(f"{stage:<7} {mb:>20.2f} {mc:>19.2f} {mb / mc:>7.2f}   "
                  f"baseline {', '.join(f'{x:.1f}' for x in b)}; current {', '.join(f'{x:.1f}' for x in c)}")
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_src)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
