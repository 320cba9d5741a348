"""How good is the c-wat judge's differential execution? Mutation testing on real mined units.

For each corpus (cJSON, zlib, and the bundled wasi-libc by default), it mines
units (or reuses an earlier mine in --work), judges every selected unit's own
artifact (any failure there is a false alarm), then makes mutants by editing
one instruction of the artifact's WAT text:

  const     i32/i64.const N -> N+1
  add<->sub i32/i64/f32/f64 add <-> sub
  lt<->le   off-by-one comparisons: lt <-> le, gt <-> ge (signed, unsigned, float)
  eq<->ne   i32/i64 eq <-> ne
  and<->or  i32/i64 and <-> or, xor -> or
  shift     shl -> shr_u, shr_u -> shl, shr_s -> shr_u

Each mutant must still assemble (those that do not are counted, not judged).
A mutant is caught when its verdict fails. Survivors are classified:

  ref-traps   the reference traps (or runs out of fuel) on every input, so
              only "it traps too" could be compared;
  unreached   putting `unreachable` before the mutated instruction still
              passes: no test on which the reference returns reaches it (dead
              code, or a branch the generated inputs never take);
  input-gap   caught when judged again with 8x more tests and another seed;
  undistinguished  reached on returning inputs, and no observable difference
              in 8x more tests either: an equivalent mutant (e.g. `s < 100 ? s : 100`
              with `<=`, a stack-frame size, a flag used only as a boolean) or a
              value-level input gap (the operands never hit the boundary, or the
              state lives in static data the inputs do not set); examples are
              printed so they can be told apart by eye.

Units mined since the DWARF change carry `meta.c_params` (parameter types and
struct layouts), which the judge's typed inputs use; an older --work mine
without them still runs (untyped inputs only). `--unmodified all` also judges
every other unit of each corpus unmodified, for the false-alarm count.

Run: python benchmarks/c_wat_mutants.py [--units 40] [--per-unit 2] [--tests 64] [--work DIR]
     [--unmodified all]
(about 5 minutes for 40 units per corpus: 120 units, ~234 mutants; --unmodified all adds ~550
verdicts, about 18 minutes in all). A --work folder mined before mine recorded `meta.c_params`
judges with untyped inputs only and scores lower: the run says so.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from codehone.mine import MineConfig, default_corpus, parse_source_line, run_mine
from codehone.records import read_jsonl
from codehone.targets.c_wat import judge as c_wat

CORPORA = {
    "cjson": "/work/corpora/cjson-1.7.15",
    "zlib": "/work/corpora/zlib-1.2.13.dfsg -D HAVE_UNISTD_H",
    "wasi-libc": "default",
}

_T = r"(i32|i64)"
RULES: list[tuple[str, re.Pattern, callable]] = [
    ("const", re.compile(rf"^{_T}\.const (-?\d+)$"), lambda m: f"{m.group(1)}.const {int(m.group(2)) + 1}"),
    ("add<->sub", re.compile(r"^(i32|i64|f32|f64)\.(add|sub)$"),
     lambda m: f"{m.group(1)}.{'sub' if m.group(2) == 'add' else 'add'}"),
    ("lt<->le", re.compile(rf"^{_T}\.(lt|le|gt|ge)_(s|u)$"),
     lambda m: f"{m.group(1)}.{ {'lt': 'le', 'le': 'lt', 'gt': 'ge', 'ge': 'gt'}[m.group(2)]}_{m.group(3)}"),
    ("lt<->le", re.compile(r"^(f32|f64)\.(lt|le|gt|ge)$"),
     lambda m: f"{m.group(1)}.{ {'lt': 'le', 'le': 'lt', 'gt': 'ge', 'ge': 'gt'}[m.group(2)]}"),
    ("eq<->ne", re.compile(rf"^{_T}\.(eq|ne)$"), lambda m: f"{m.group(1)}.{'ne' if m.group(2) == 'eq' else 'eq'}"),
    ("and<->or", re.compile(rf"^{_T}\.(and|or|xor)$"),
     lambda m: f"{m.group(1)}.{ {'and': 'or', 'or': 'and', 'xor': 'or'}[m.group(2)]}"),
    ("shift", re.compile(rf"^{_T}\.(shl|shr_u|shr_s)$"),
     lambda m: f"{m.group(1)}.{ {'shl': 'shr_u', 'shr_u': 'shl', 'shr_s': 'shr_u'}[m.group(2)]}"),
]
OPERATORS = list(dict.fromkeys(r[0] for r in RULES))


def sites(artifact: str) -> list[tuple[str, int, str, str]]:
    """Every (operator, line index, old instruction, new instruction) in a function's WAT."""
    out = []
    for i, line in enumerate(artifact.splitlines()):
        instr = line.strip().rstrip(")").strip()
        for op, rx, fn in RULES:
            m = rx.match(instr)
            if m:
                out.append((op, i, instr, fn(m)))
                break
    return out


def apply(artifact: str, line_no: int, old: str, new: str) -> str:
    lines = artifact.splitlines()
    lines[line_no] = lines[line_no].replace(old, new, 1)
    return "\n".join(lines)


def probe(artifact: str, line_no: int) -> str:
    """The original function with `unreachable` just before the instruction at `line_no`."""
    lines = artifact.splitlines()
    indent = re.match(r"\s*", lines[line_no]).group(0)
    return "\n".join([*lines[:line_no], indent + "unreachable", *lines[line_no:]])


def load_units(name: str, spec: str, work: Path) -> tuple[list[dict], Path]:
    out = work / name
    if not (out / "units.jsonl").exists():
        if spec != "default" and not Path(spec.split()[0]).exists():
            print(f"  {name}: {spec.split()[0]} not found, skipped")
            return [], out
        sources = default_corpus() if spec == "default" else [parse_source_line(spec)]
        t = time.monotonic()
        run_mine(sources, out, MineConfig(jobs=2))
        print(f"  {name}: mined in {time.monotonic() - t:.0f}s")
    units = list(read_jsonl(out / "units.jsonl"))
    if units and not any("c_params" in u["meta"] for u in units):
        print(f"  {name}: WARNING: mined without meta.c_params (an old mine): no typed inputs; "
              f"delete {out} to mine again")
    return units, out / "modules"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/codehone-mutants"))
    ap.add_argument("--corpora", default=",".join(CORPORA))
    ap.add_argument("--units", type=int, default=40, help="units sampled per corpus")
    ap.add_argument("--per-unit", type=int, default=2, help="mutants per unit (distinct operators first)")
    ap.add_argument("--tests", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--examples", type=int, default=3, help="survivor examples printed per class")
    ap.add_argument("--explore", type=int, default=None, help="explore_runs for the judge (default: the judge's)")
    ap.add_argument("--unmodified", choices=("sampled", "all"), default="sampled",
                    help="false alarms: judge the sampled units only, or every unit of each corpus")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    if args.explore is not None:
        c_wat.judge.__kwdefaults__["explore_runs"] = args.explore
    t_start = time.monotonic()
    rows: list[dict] = []  # one per mutant
    unmodified = Counter()
    false_alarms: list[str] = []
    print("corpora:")
    for cname in args.corpora.split(","):
        units, modules = load_units(cname, CORPORA[cname], args.work)
        units = sorted(units, key=lambda u: u["id"])
        rng.shuffle(units)
        picked = 0
        for u in units:
            if picked >= args.units:
                break
            candidates = sites(u["artifact"])
            if not candidates:
                continue
            picked += 1
            v = c_wat.judge(u["artifact"], unit=u, modules_dir=modules, tests=args.tests, seed=args.seed)
            if not v.counts.get("executed", False):
                unmodified["not executable"] += 1
                continue
            unmodified["judged"] += 1
            if not v.ok:
                unmodified["false alarms"] += 1
                false_alarms.append(f"{cname}:{u['name']}: {v.diagnostics[0].message[:200]}")
                continue
            all_trap = v.counts["run"] == v.counts["reference_traps"]
            rng.shuffle(candidates)
            chosen, used_ops = [], set()
            for s in candidates:  # distinct operators first
                if s[0] not in used_ops and len(chosen) < args.per_unit:
                    chosen.append(s)
                    used_ops.add(s[0])
            for s in candidates:
                if len(chosen) >= args.per_unit:
                    break
                if s not in chosen:
                    chosen.append(s)
            for op, line_no, old, new in chosen:
                mutant = apply(u["artifact"], line_no, old, new)
                mv = c_wat.judge(mutant, unit=u, modules_dir=modules, tests=args.tests, seed=args.seed)
                row = {"corpus": cname, "unit": u["name"], "op": op, "line": line_no + 1, "old": old, "new": new,
                       "stage": mv.stage, "caught": not mv.ok, "all_trap": all_trap,
                       "why": mv.diagnostics[0].message[:160] if mv.diagnostics else "",
                       "context": "\n".join(u["artifact"].splitlines()[max(0, line_no - 3): line_no + 2])}
                if mv.stage in ("parse", "assemble") and not mv.ok:
                    row["assembled"] = False
                else:
                    row["assembled"] = True
                    if not mv.ok:
                        pass
                    elif all_trap:
                        row["class"] = "ref-traps"
                    elif c_wat.judge(probe(u["artifact"], line_no), unit=u, modules_dir=modules,
                                     tests=args.tests, seed=args.seed).ok:
                        row["class"] = "unreached"
                    elif not c_wat.judge(mutant, unit=u, modules_dir=modules, tests=8 * args.tests,
                                         seed=args.seed + 1).ok:
                        row["class"] = "input-gap"
                    else:
                        row["class"] = "undistinguished"
                rows.append(row)
        if args.unmodified == "all":  # every other unit of the corpus, unmodified: any failure is a false alarm
            sampled = set()
            for u in units:
                if len(sampled) >= picked:
                    break
                if sites(u["artifact"]):
                    sampled.add(u["id"])
            for u in units:
                if u["id"] in sampled:
                    continue
                v = c_wat.judge(u["artifact"], unit=u, modules_dir=modules, tests=args.tests, seed=args.seed)
                if not v.counts.get("executed", False):
                    unmodified["not executable"] += 1
                elif v.ok:
                    unmodified["judged"] += 1
                else:
                    unmodified["judged"] += 1
                    unmodified["false alarms"] += 1
                    false_alarms.append(f"{cname}:{u['name']}: {v.diagnostics[0].message[:200]}")
        print(f"  {cname}: {picked} units sampled from {len(units)}", flush=True)

    judged = [r for r in rows if r["assembled"]]
    caught = sum(r["caught"] for r in judged)
    print(f"\nc-wat differential execution: mutation testing ({args.tests} tests per verdict, seed {args.seed})")
    print(f"{'':26}{'mutants':>9}{'caught':>9}{'caught %':>10}")
    for op in OPERATORS:
        rs = [r for r in judged if r["op"] == op]
        if rs:
            c = sum(r["caught"] for r in rs)
            print(f"  {op:24}{len(rs):>9}{c:>9}{100 * c / len(rs):>9.1f}%")
    for cname in args.corpora.split(","):
        rs = [r for r in judged if r["corpus"] == cname]
        if rs:
            c = sum(r["caught"] for r in rs)
            print(f"  corpus {cname:17}{len(rs):>9}{c:>9}{100 * c / len(rs):>9.1f}%")
    if judged:
        print(f"  {'ALL':24}{len(judged):>9}{caught:>9}{100 * caught / len(judged):>9.1f}%")
    print(f"  mutants that did not assemble (not counted): {len(rows) - len(judged)}")
    stages = Counter(r["stage"] for r in judged if r["caught"])
    print(f"  caught at stage: {dict(stages)}")
    print(f"\nunmodified units judged: {unmodified['judged']}, false alarms: {unmodified['false alarms']}, "
          f"not executable (skipped): {unmodified['not executable']}")
    for fa in false_alarms:
        print(f"  FALSE ALARM {fa}")

    survivors = [r for r in judged if not r["caught"]]
    by_class = defaultdict(list)
    for r in survivors:
        by_class[r["class"]].append(r)
    print(f"\nsurvivors: {len(survivors)}")
    for cls in ("ref-traps", "unreached", "input-gap", "undistinguished"):
        rs = by_class.get(cls, [])
        print(f"  {cls:16} {len(rs)}")
        for r in rs[:args.examples]:
            print(f"    {r['corpus']}:{r['unit']} line {r['line']}: {r['old']} -> {r['new']}")
            for ln in r["context"].splitlines():
                print(f"        | {ln}")
    print(f"\n{time.monotonic() - t_start:.0f}s")
    (args.work / "mutants.json").write_text(json.dumps(rows, indent=1))
    ok = unmodified["false alarms"] == 0 and judged and caught / len(judged) >= 0.9 and len(judged) >= 200
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
