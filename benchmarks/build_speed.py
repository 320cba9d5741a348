"""How fast `codehone build` is, and what it does to real mined units. Prints tables.

Usage:
    python benchmarks/build_speed.py [UNITS_OR_MINE_DIRS...] [--scale K] [--set key=value ...]

With no inputs it uses every /tmp/b_*/units.jsonl (the folders the `codehone mine`
examples write). It builds once from the inputs as given (the card's figures:
units in, duplicates, near-duplicates, filtered by reason, per split) and reports
units/s with a per-step breakdown. With --scale K it also builds from K renamed
copies of every unit (each copy a new repository, its functions and variables
renamed, one constant changed), which exercises near-dedup at K times the size:
nearly all copies must be caught as near-duplicates.
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import sys
import tempfile
import time
from pathlib import Path

from codehone.config import load_build_config
from codehone.dataset import read_units, run_build


def table(title: str, rows: list[tuple[str, object]]) -> None:
    w = max(len(k) for k, _ in rows)
    print(f"\n{title}")
    print("-" * (w + 24))
    for k, v in rows:
        print(f"{k:<{w}}  {v}")


def renamed_copies(units: list[dict], k: int) -> list[dict]:
    """k near-copies of each unit, as a fork would make them: a new repository and id, the function and
    its parameters renamed, and the first integer literal bumped by one."""
    out = []
    for c in range(1, k + 1):
        for u in units:
            sig = u["signature"]
            names = [u["name"]]
            if "(" in sig:
                for part in sig[sig.index("(") + 1 : sig.rindex(")") if ")" in sig else None].split(","):
                    m = re.search(r"(\w+)\s*(\[[^\]]*\])*\s*$", part)
                    if m and m.group(1) not in ("void", "int", "char", "long", "unsigned", "double", "float"):
                        names.append(m.group(1))
            src = u["source"]
            for n in dict.fromkeys(names):
                src = re.sub(rf"\b{re.escape(n)}\b", f"{n}_c{c}", src)
            src = re.sub(r"\b(\d+)\b", lambda m: str(int(m.group(1)) + 1), src, count=1)
            out.append({**u, "id": f"{u['id']}c{c}", "repo": f"{u['repo']}-copy{c}", "source": src})
    return out


def run(inputs: list[Path], sets: list[str], label: str) -> dict:
    cfg = load_build_config(None, sets)
    with tempfile.TemporaryDirectory() as tmp:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        stats = run_build(inputs, Path(tmp) / "ds", cfg, timings=timings)
        dt = time.perf_counter() - t0
    d, sp = stats["dedup"], stats["split"]
    table(
        f"{label}: {', '.join(map(str, inputs))}",
        [
            ("units in", stats["units_in"]),
            ("repositories", len(stats["repos"])),
            ("malformed lines", stats["inputs"]["malformed"]),
            ("filtered (units)", json.dumps(stats["filtered"]) if stats["filtered"] else 0),
            ("exact duplicates", d["exact_duplicates"]),
            ("near-duplicates", f"{d['near_duplicates']}  (clusters by size {d['near_clusters']})"),
            ("decontaminated", stats["decontam"]["dropped"]),
            ("examples dropped for length", json.dumps(stats["examples_filtered"]) or 0),
            ("units without examples", stats["units_without_examples"]),
            (f"units per split (by {sp['group_by']})", json.dumps(sp["units"])),
            ("examples per split", json.dumps(sp["examples"])),
            ("token lengths", stats["lengths"]["tokenizer"]),
            ("seconds", f"{dt:.2f}"),
            ("units/s", f"{stats['units_in'] / dt:.0f}"),
            ("steps (s)", "  ".join(f"{k}={v:.2f}" for k, v in timings.items())),
        ],
    )
    return stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*", type=Path)
    ap.add_argument("--scale", type=int, default=0, help="also build from K renamed copies of every unit")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="build config override")
    a = ap.parse_args()
    inputs = a.inputs or [Path(p) for p in sorted(glob.glob("/tmp/b_*/units.jsonl"))]
    if not inputs:
        print("no inputs: mine some first (see the module doc)", file=sys.stderr)
        return 2
    run(inputs, a.sets, "real mined units")
    if a.scale:
        units, _ = read_units(inputs, [])
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "scaled.jsonl"
            p.write_text("".join(json.dumps(u) + "\n" for u in units + renamed_copies(units, a.scale)))
            run([p], a.sets, f"{a.scale + 1}x scaled (renamed copies)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
