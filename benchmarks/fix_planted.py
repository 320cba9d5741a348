"""suggest_fix end to end on planted compile errors: how often does a real model find a *verified* fix?

    python benchmarks/fix_planted.py MODEL MINE_DIR [--dataset DS] [--n 8] [--attempts 4]

For N c-wat units (shortest WAT first, taken from the dataset's train and test
splits when --dataset is given, so memorised and unseen functions are told
apart), the unit's reference WAT gets a planted compile error (`local.get 0`
→ `local.get 99`, an undefined local). The MCP `suggest_fix` logic then asks
the model for fixes, judges each with the c-wat judge and returns only a fix
that passed. Odd attempts use the fix prompt (code + judge error), even ones
regenerate from the unit's C source with the training prompt.

Baseline in the same run: the planted code itself, judged (it must fail, or
the planted error proves nothing).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from codehone.check import load_units
from codehone.serve.backends import load_backend
from codehone.serve.mcp_server import Toolbox


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("mine", type=Path)
    ap.add_argument("--dataset", type=Path)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--attempts", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    units = load_units(a.mine / "units.jsonl")
    split_of: dict[str, str] = {}
    if a.dataset:
        for split in ("train", "val", "test"):
            p = a.dataset / f"{split}.jsonl"
            if p.is_file():
                for line in p.open():
                    split_of.setdefault(json.loads(line).get("unit_id"), split)
    cands = [u for u in units.values() if "local.get 0" in u["artifact"] and u.get("source")
             and (not split_of or u["id"] in split_of)]
    cands.sort(key=lambda u: len(u["artifact"]))
    picked = []
    for split in ("train", "test") if split_of else (None,):
        picked += [u for u in cands if split is None or split_of.get(u["id"]) == split][: a.n // (2 if split_of else 1)]
    tb = Toolbox(load_backend(a.model), target="c-wat", units=units, modules_dir=a.mine / "modules",
                 check_cache=False, max_tokens=512)
    t = Table(title=f"suggest_fix on planted errors ({a.attempts} attempts each)")
    for col in ("unit", "split", "planted fails", "verified fix", "attempt", "tried (stage per attempt)", "s"):
        t.add_column(col)
    found = 0
    for u in picked:
        bad = u["artifact"].replace("local.get 0", "local.get 99", 1)
        base = tb.check(bad, unit_id=u["id"])
        t0 = time.monotonic()
        r = tb.suggest_fix(bad, unit_id=u["id"], attempts=a.attempts,
                           max_tokens=min(512, len(tb.backend.encode(u["artifact"])) * 2 + 16))
        dt = time.monotonic() - t0
        found += r["verified"]
        t.add_row(u["name"], split_of.get(u["id"], "-"), "yes" if not base["ok"] else "NO",
                  "yes" if r["verified"] else "no", str(r["attempts"]) if r["verified"] else "-",
                  ", ".join(x["stage"] + ("✓" if x["ok"] else "") for x in r["tried"]), f"{dt:.1f}")
    console = Console(width=140)
    console.print(t)
    print(json.dumps({"units": len(picked), "verified_fixes": found, "attempts": a.attempts}))


if __name__ == "__main__":
    main()
