"""Kill Ray workers, and the whole run, in the middle of `codehone mine --executor ray`; count what was lost.

Three runs of the real CLI on the same corpus, compared unit by unit with a local run:
  * `worker killed`: SIGKILL to one Ray worker process (`ray::...`) while files are being mined;
    Ray retries its task on another worker, so the run must finish with every unit;
  * `node lost + rerun`: SIGKILL to the raylet (the whole local node): the run stops with one
    line and exit 1; the same command again resumes from the journal;
  * `run killed + rerun`: SIGKILL to the driver mid-run, then the same command again: the resume
    journal runs only the pending files;
  * the local baseline (`-j 2`).
Prints units, lost (ids in the baseline but not in the run), duplicated (ids twice) and whether
units.jsonl is byte-identical to the baseline's.

    python benchmarks/ray_kill.py [--target compress] [--source /usr/lib/python3.11] [--limit 400]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}


def cmd(a, out: Path, *extra: str) -> list[str]:
    src = [a.source] if a.source else []
    return [sys.executable, "-m", "codehone", "mine", "-t", a.target, *src, "-o", str(out), "--limit", str(a.limit),
            "-j", "2", *extra]


def ray_workers(pattern: str = "^ray::_run_with_context") -> list[int]:
    """Pids of Ray's task workers (`ray::<task>`), not its agents: killing `ray::DashboardAgent`
    takes the raylet down with it, which is the node-lost case, measured as its own row."""
    r = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(p) for p in r.stdout.split()]


def ray_stop() -> None:
    subprocess.run([str(Path(sys.executable).with_name("ray")), "stop", "--force"], capture_output=True)


def done_files(out: Path) -> int:
    j = out / "journal.jsonl"
    return sum(1 for _ in j.open()) if j.is_file() else 0


def wait_for_progress(proc: subprocess.Popen, out: Path, n: int, timeout: float = 600) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            return False
        if done_files(out) >= n:
            return True
        time.sleep(0.2)
    return False


def ids(out: Path) -> list[str]:
    return [json.loads(line)["id"] for line in (out / "units.jsonl").open()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="compress")
    ap.add_argument("--source", default=None, help="corpus (default: the target's default corpus)")
    ap.add_argument("--limit", type=int, default=400)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="raykill-"))
    rows = []

    t0 = time.monotonic()
    subprocess.run(cmd(a, work / "local"), check=True, capture_output=True, env=ENV)
    base = ids(work / "local")
    base_bytes = (work / "local" / "units.jsonl").read_bytes()
    rows.append(("local -j 2 (baseline)", time.monotonic() - t0, "-", work / "local"))

    # a Ray worker killed mid-run
    out = work / "worker-killed"
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd(a, out, "--executor", "ray"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=ENV)
    killed = "none (run ended first)"
    if wait_for_progress(proc, out, max(2, a.limit // 10)):
        workers = ray_workers()
        if workers:
            os.kill(workers[0], signal.SIGKILL)
            killed = f"task worker pid {workers[0]} at {done_files(out)} files done"
    rc = proc.wait()
    rows.append(("ray, a task worker killed", time.monotonic() - t0, f"{killed}; exit {rc}", out))

    # the raylet killed (the node is lost): the run stops, and the same command resumes
    out = work / "node-lost"
    t0 = time.monotonic()
    errf = (work / "node-lost.stderr").open("w+b")
    proc = subprocess.Popen(cmd(a, out, "--executor", "ray"), stdout=subprocess.DEVNULL, stderr=errf, env=ENV)
    killed = "none (run ended first)"
    if wait_for_progress(proc, out, a.limit // 3):
        raylets = ray_workers("raylet")
        if raylets:
            os.kill(raylets[0], signal.SIGKILL)
            killed = f"raylet SIGKILL at {done_files(out)} files done"
    rc = proc.wait()
    errf.seek(0)
    err = errf.read().decode(errors="replace")
    last = next((ln for ln in reversed(err.splitlines()) if ln.startswith("error:")), "")
    ray_stop()
    r2 = subprocess.run(cmd(a, out, "--executor", "ray"), capture_output=True, env=ENV)
    rows.append(("ray, node lost + rerun", time.monotonic() - t0,
                 f"{killed}; exit {rc} ({last[:60]}...); rerun exit {r2.returncode}", out))
    ray_stop()

    # the whole run killed, then rerun
    out = work / "run-killed"
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd(a, out, "--executor", "ray"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=ENV, start_new_session=True)
    killed = "none (run ended first)"
    if wait_for_progress(proc, out, a.limit // 2):
        killed = f"driver SIGKILL at {done_files(out)} files done, then rerun"
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    ray_stop()
    subprocess.run(cmd(a, out, "--executor", "ray"), check=True, capture_output=True, env=ENV)
    rows.append(("ray, run killed + rerun", time.monotonic() - t0, killed, out))

    print(f"\nmine -t {a.target} --limit {a.limit}, killed mid-run\n")
    print("| run | seconds | kill | units | lost | duplicated | identical to baseline |\n|---|---|---|---|---|---|---|")
    for name, dt, kill, o in rows:
        got = ids(o)
        dup = sum(c - 1 for c in Counter(got).values() if c > 1)
        lost = len(set(base) - set(got))
        same = (o / "units.jsonl").read_bytes() == base_bytes
        print(f"| {name} | {dt:.1f} | {kill} | {len(got)} | {lost} | {dup} | {'yes' if same else 'NO'} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
