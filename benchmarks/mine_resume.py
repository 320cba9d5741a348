"""Kill `codehone mine` at random moments on a real corpus, resume, and check nothing is lost or doubled.

    python benchmarks/mine_resume.py [SOURCE] [--kills 10] [--seed 0]

SOURCE defaults to the bundled wasi-libc bottom half. A clean, uninterrupted run is the
reference; the killed-and-resumed output must hold the same functions (by normalised-source
hash, since which copy of an exact duplicate is kept may depend on completion order), each once.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from codehone.mine import default_corpus
from codehone.records import read_jsonl


def mine_cmd(src: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "codehone.cli", "mine", src, "-o", str(out), "-j", "2"]


def norm_hashes(out: Path) -> collections.Counter:
    return collections.Counter(u["meta"]["norm_hash"] for u in read_jsonl(out / "units.jsonl"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", nargs="?", default=str(default_corpus()[1].root))
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="codehone-resume-"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    t0 = time.monotonic()
    subprocess.run(mine_cmd(args.source, work / "ref"), env=env, check=True, capture_output=True)
    clean_s = time.monotonic() - t0
    ref = norm_hashes(work / "ref")
    if not ref:
        print(f"{args.source}: the clean run wrote no units, so there is nothing to check")
        return 2

    out = work / "killed"
    kills = 0
    for _ in range(args.kills):
        p = subprocess.Popen(mine_cmd(args.source, out), env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(0.3, max(0.5, clean_s * 0.6)))
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            kills += 1
        p.wait()
    subprocess.run(mine_cmd(args.source, out), env=env, check=True, capture_output=True)
    got = norm_hashes(out)
    ids = [u["id"] for u in read_jsonl(out / "units.jsonl")]

    lost = sum((ref - got).values())
    extra = sum((got - ref).values())
    doubled = len(ids) - len(set(ids))
    print(f"source           {args.source}")
    print(f"clean run        {sum(ref.values())} units in {clean_s:.1f}s")
    print(f"SIGKILLs         {kills} of {args.kills} runs killed mid-way (random moments)")
    print(f"after resume     {sum(got.values())} units")
    print(f"lost             {lost}")
    print(f"extra/doubled    {extra} / {doubled}")
    ok = lost == 0 and extra == 0 and doubled == 0
    print("result           " + ("OK: nothing lost, nothing duplicated" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
