"""How good is the c-wat judge's differential execution? Mutation testing on real mined units.

Two sets of corpora, reported side by side (`--set tuned|unseen|both`, default both):

  tuned   cJSON, zlib and the bundled wasi-libc: the corpora the judge's input
          generation was developed against; their survivors may guide changes.
  unseen  libtommath 1.2.0 and yajl 2.1.0 (Debian sources, `apt-get source
          libtommath yajl`), outside the training corpus (zlib, sqlite3, lua, jq,
          cJSON, libpng, libyaml, pcre2). Picked once, before any change was
          measured on them. Inputs must never be tuned on them: read their catch
          rate, not their survivors (`--show-unseen` prints those, for judging
          equivalence after a final run only). See docs/c-wat-mutants.md.

For each corpus it mines
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

Each corpus draws its units and mutants from its own seeded stream, so adding a corpus to a set
never changes another corpus's mutants. The table also gives, per set, the unmodified units that
failed (false alarms), those whose reference ran no input at all, and the judge's seconds per unit
(a unit's first verdict: building and exploring the reference) and per mutant verdict.

Run: python benchmarks/c_wat_mutants.py [--set both] [--units 40] [--per-unit 2] [--tests 64]
     [--work DIR] [--unmodified all]
(about 10 minutes on a loaded 2-core machine for 40 units per corpus: 200 units, ~390 mutants;
--unmodified all adds every other unit of each corpus). A --work folder mined before mine recorded `meta.c_params`
judges with untyped inputs only and scores lower: the run says so.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

from codehone.mine import MineConfig, default_corpus, parse_source_line, run_mine
from codehone.records import read_jsonl
from codehone.targets.c_wat import judge as c_wat

# The tuned set: the corpora the judge's input generation was developed against (its survivors are
# what input generation may be tuned on).
TUNED = {
    "cjson": "/work/corpora/cjson-1.7.15",
    "zlib": "/work/corpora/zlib-1.2.13.dfsg -D HAVE_UNISTD_H",
    "wasi-libc": "default",
}
# The unseen set: Debian C sources outside the training corpus (zlib, sqlite3, lua, jq, cJSON,
# libpng, libyaml, pcre2), picked once and never tuned on: only their catch rate is read, never
# their survivors. `cd /work/corpora && apt-get source libtommath yajl`, then for yajl the public
# headers under include/yajl (see docs/c-wat-mutants.md).
UNSEEN = {
    "libtommath": "/work/corpora/libtommath-1.2.0",
    "yajl": "/work/corpora/yajl-2.1.0/src -I ../include",
}
CORPORA = {**TUNED, **UNSEEN}

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


def judge_corpus(cname: str, spec: str, args, rng: random.Random, rows: list[dict], stats: dict) -> None:
    """Judge `args.units` sampled units of one corpus and their mutants; append to `rows` (one per
    mutant) and count the unmodified verdicts in `stats` (the corpus's set)."""
    units, modules = load_units(cname, spec, args.work)
    units = sorted(units, key=lambda u: u["id"])
    rng.shuffle(units)
    picked = 0

    def unmodified(u: dict) -> object:
        t = time.monotonic()
        v = c_wat.judge(u["artifact"], unit=u, modules_dir=modules, tests=args.tests, seed=args.seed)
        if not v.counts.get("executed", False):
            stats["not executable"] += 1
            return None
        stats["judged"] += 1
        stats["first verdict s"] += time.monotonic() - t
        if v.counts.get("run", 0) == 0:
            stats["no input run"] += 1
            stats["no-input units"].append(f"{cname}:{u['name']}")
        if not v.ok:
            stats["false alarms"] += 1
            stats["false-alarm units"].append(f"{cname}:{u['name']}: {v.diagnostics[0].message[:200]}")
        return v

    for u in units:
        if picked >= args.units:
            break
        candidates = sites(u["artifact"])
        if not candidates:
            continue
        picked += 1
        v = unmodified(u)
        if v is None or not v.ok:
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
            t = time.monotonic()
            mv = c_wat.judge(mutant, unit=u, modules_dir=modules, tests=args.tests, seed=args.seed)
            stats["mutant verdict s"] += time.monotonic() - t
            stats["mutant verdicts"] += 1
            row = {"corpus": cname, "set": stats["name"], "unit": u["name"], "op": op, "line": line_no + 1,
                   "old": old, "new": new, "stage": mv.stage, "caught": not mv.ok, "all_trap": all_trap,
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
            if u["id"] not in sampled:
                unmodified(u)
    print(f"  {stats['name']} {cname}: {picked} units sampled from {len(units)}", flush=True)


CLASSES = ("ref-traps", "unreached", "input-gap", "undistinguished")


def table(sets: list[str], rows: list[dict], stats: dict[str, dict], corpora: dict[str, list[str]]) -> list[str]:
    """The side-by-side table: one column per set."""
    out = []
    w = 22

    def line(label: str, cells: list[str]) -> None:
        out.append(f"  {label:34}" + "".join(f"{c:>{w}}" for c in cells))

    def rate(rs: list[dict]) -> str:
        if not rs:
            return "-"
        c = sum(r["caught"] for r in rs)
        return f"{c}/{len(rs)} {100 * c / len(rs):5.1f}%"

    judged = {s: [r for r in rows if r["set"] == s and r["assembled"]] for s in sets}
    line("", sets)
    line("corpora", [",".join(corpora[s]) for s in sets])
    line("caught / mutants that assemble", [rate(judged[s]) for s in sets])
    for op in OPERATORS:
        line(f"  {op}", [rate([r for r in judged[s] if r["op"] == op]) for s in sets])
    for s in sets:
        for cname in corpora[s]:
            line(f"  corpus {cname}", [rate([r for r in judged[t] if r["corpus"] == cname]) if t == s else ""
                                       for t in sets])
    line("mutants that did not assemble", [str(sum(1 for r in rows if r["set"] == s and not r["assembled"]))
                                           for s in sets])
    line("survivors", [str(sum(not r["caught"] for r in judged[s])) for s in sets])
    for cls in CLASSES:
        line(f"  {cls}", [str(sum(not r["caught"] and r.get("class") == cls for r in judged[s])) for s in sets])
    line("caught, not counting ref-traps", [rate([r for r in judged[s] if r.get("class") != "ref-traps"])
                                            for s in sets])
    line("unmodified units judged", [str(stats[s]["judged"]) for s in sets])
    line("false alarms", [str(stats[s]["false alarms"]) for s in sets])
    line("units whose reference runs no input", [str(stats[s]["no input run"]) for s in sets])
    line("not executable (skipped)", [str(stats[s]["not executable"]) for s in sets])
    line("s per unit, first verdict", [f"{stats[s]['first verdict s'] / max(1, stats[s]['judged']):.2f}"
                                       for s in sets])
    line("s per mutant verdict", [f"{stats[s]['mutant verdict s'] / max(1, stats[s]['mutant verdicts']):.3f}"
                                  for s in sets])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/codehone-mutants"))
    ap.add_argument("--set", choices=("tuned", "unseen", "both"), default="both",
                    help="the tuned corpora, the unseen ones (never tune on them), or both side by side")
    ap.add_argument("--corpora", default=None, help="comma-separated corpus names (default: those of --set)")
    ap.add_argument("--units", type=int, default=40, help="units sampled per corpus")
    ap.add_argument("--per-unit", type=int, default=2, help="mutants per unit (distinct operators first)")
    ap.add_argument("--tests", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--examples", type=int, default=3, help="survivor examples printed per class (tuned set only)")
    ap.add_argument("--show-unseen", action="store_true",
                    help="also print the unseen set's survivors (to judge equivalence after a final run, "
                         "never to tune inputs on)")
    ap.add_argument("--explore", type=int, default=None, help="explore_runs for the judge (default: the judge's)")
    ap.add_argument("--unmodified", choices=("sampled", "all"), default="sampled",
                    help="false alarms: judge the sampled units only, or every unit of each corpus")
    args = ap.parse_args()

    if args.explore is not None:
        c_wat.judge.__kwdefaults__["explore_runs"] = args.explore
    sets = ["tuned", "unseen"] if args.set == "both" else [args.set]
    named = {"tuned": list(TUNED), "unseen": list(UNSEEN)}
    if args.corpora:
        wanted = args.corpora.split(",")
        unknown = [c for c in wanted if c not in CORPORA]
        if unknown:
            ap.error(f"unknown corpora {unknown}; known: {list(CORPORA)}")
        named = {s: [c for c in named[s] if c in wanted] for s in named}
        sets = [s for s in sets if named[s]]
    t_start = time.monotonic()
    rows: list[dict] = []  # one per mutant
    stats = {s: {"name": s, "no-input units": [], "false-alarm units": [], **dict.fromkeys(
        ("judged", "false alarms", "no input run", "not executable", "first verdict s", "mutant verdict s",
         "mutant verdicts"), 0)} for s in sets}
    print("corpora:")
    for s in sets:
        for cname in named[s]:
            # one stream per corpus: adding a corpus to a set never changes the mutants of another
            judge_corpus(cname, CORPORA[cname], args, random.Random(f"{args.seed}:{cname}"), rows, stats[s])

    print(f"\nc-wat differential execution: mutation testing ({args.tests} tests per verdict, seed {args.seed}, "
          f"{args.units} units x {args.per_unit} mutants per corpus)")
    print("\n".join(table(sets, rows, stats, named)))
    judged = [r for r in rows if r["assembled"]]
    stages = Counter(r["stage"] for r in judged if r["caught"])
    print(f"  caught at stage: {dict(stages)}")
    for s in sets:
        for fa in stats[s]["false-alarm units"]:
            print(f"  FALSE ALARM ({s}) {fa}")
        if stats[s]["no-input units"]:
            print(f"  no input run ({s}): {', '.join(stats[s]['no-input units'][:12])}")

    for s in sets:
        if s == "unseen" and not args.show_unseen:
            continue
        survivors = [r for r in judged if r["set"] == s and not r["caught"]]
        print(f"\nsurvivors ({s}): {len(survivors)}")
        for cls in CLASSES:
            rs = [r for r in survivors if r.get("class") == cls]
            print(f"  {cls:16} {len(rs)}")
            for r in rs[:args.examples]:
                print(f"    {r['corpus']}:{r['unit']} line {r['line']}: {r['old']} -> {r['new']}")
                for ln in r["context"].splitlines():
                    print(f"        | {ln}")
    print(f"\n{time.monotonic() - t_start:.0f}s")
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / f"mutants-{args.set}.json").write_text(json.dumps(rows, indent=1))
    ok = all(stats[s]["false alarms"] == 0 for s in sets) and judged and all(
        sum(r["caught"] for r in judged if r["set"] == s) >= 0.9 * max(1, sum(r["set"] == s for r in judged))
        for s in sets)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
