"""How fast is `codehone check`? Verdicts/s serial vs `-j N`, and a cold check vs a cache hit.

    python benchmarks/check_speed.py [--n 16] [--jobs 2] [--repeat 3] [--targets rust,zig] [--units OUT/units.jsonl]

Candidates are generated here (distinct, so nothing hits the cache by
accident): small Rust and Zig files, half of them with tests, so the figures
include compile, lint and sandboxed test runs. c-wat is measured when
`--units` points at a `codehone mine` output and the c-wat judge is installed:
--per-unit distinct candidates for each of --n units (each one the unit's
reference WAT with its own trailing comment, so it is judged in full), every
unit cold on each side of each round (no reference held in this process or
in a freshly started pool), as in a fresh eval of k samples per unit.

Figures:
  serial      jobs=1, cache off (zig and wasmtime compile on one thread: `-j N` is N workers)
  -j N        jobs=N, cache off (the speedup is serial time / parallel time; the two are
              interleaved round by round, best of each kept, per-round spread printed)
  zig raw     the same zig compiles run bare (no sandbox, no judge), serial vs N at once, in
              the same rounds: what the compiler itself gets from N cores right now
  cpu         N CPU-bound Python loops vs 1: what the cores give at all, with the other work
              on the machine (on a shared box this, not the judge, caps the -j N speedup)
  cold        per-verdict time of a serial run that fills the cache (c-wat: from cold units)
  cached      per-verdict time of a rerun that hits the cache for every candidate
The worker pool is started before timing (check keeps it across calls, as eval
does); its one-off start costs about 0.5 s. The machine's load is printed too: on a shared 2-core box, other work skews -j 2.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from codehone.check import Item, check, load_units
from codehone.sandbox import best_isolation


def rust_candidates(n: int) -> list[str]:
    out = []
    for k in range(n):
        src = (
            f"/// Scaled sum of the values not divisible by three.\n"
            f"pub fn scaled_{k}(v: &[i64]) -> i64 {{\n"
            f"    v.iter().map(|x| x * {k + 2}).filter(|x| x % 3 != 0).sum()\n}}\n"
        )
        if k % 2 == 0:
            want = sum(x * (k + 2) for x in (1, 2, 3, 4) if x * (k + 2) % 3 != 0)
            src += (
                "\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn it_works() {\n"
                f"        assert_eq!(super::scaled_{k}(&[1, 2, 3, 4]), {want});\n    }}\n}}\n"
            )
        out.append(src)
    return out


def zig_candidates(n: int) -> list[str]:
    out = []
    for k in range(n):
        src = (
            'const std = @import("std");\n\n'
            "/// Scaled sum of a slice.\n"
            f"pub fn scaled{k}(xs: []const i64) i64 {{\n"
            "    var t: i64 = 0;\n"
            f"    for (xs) |x| t += x * {k + 2};\n"
            "    return t;\n}\n"
        )
        if k % 2 == 0:
            src += (
                f'\ntest "scaled{k}" {{\n'
                f"    try std.testing.expectEqual(@as(i64, {10 * (k + 2)}), scaled{k}(&.{{ 1, 2, 3, 4 }}));\n}}\n"
            )
        out.append(src)
    return out


def cwat_items(units_path: Path, n: int, per_unit: int) -> tuple[list[Item], dict]:
    """`per_unit` distinct candidates (the reference with a different trailing comment) for each of
    `n` units: eval's shape, k samples per unit, and judged as fully as the reference itself."""
    units = list(load_units(units_path).values())
    random.Random(0).shuffle(units)
    items = [Item(candidate=f"{u['artifact']}\n;; sample {k}", unit=u) for u in units[:n] for k in range(per_unit)]
    random.Random(1).shuffle(items)
    return items, {"modules_dir": str(units_path.parent / "modules")}


def cold_cwat(jobs: int) -> None:
    """Forget every unit's reference, in this process and in the pool (a fresh one, started and idle),
    so each side of a round starts from nothing, as a fresh `codehone check` or eval run does."""
    from codehone import check as chk
    from codehone.targets.c_wat import inputs as c_wat_inputs
    from codehone.targets.c_wat import judge as c_wat

    c_wat._REF_CACHE.clear()
    c_wat._WAT_CACHE.clear()
    c_wat_inputs._draws.cache_clear()  # the per-test arena draws (~0.25 s to redo): a fresh pool's
    c_wat_inputs._arena.cache_clear()  # workers start without them, so serial must too
    chk._drop_pool()
    chk.warm_pool(jobs, "c-wat")  # start every worker, wasmtime loaded, outside the timings (as serial has it)


def _raw_zig(cands: list[str], jobs: int, work: Path) -> None:
    """The zig compiles a verdict needs (ast-check + test build), run directly: no sandbox, no
    cache copy, no Python judge. Each worker has its own warmed cache, as the judge's sandboxes do."""
    import queue
    from concurrent.futures import ThreadPoolExecutor

    from codehone.targets.zig import judge as zj
    from codehone.toolchains import zig as tc

    free: queue.Queue = queue.Queue()
    for i in range(jobs):  # one warmed cache per concurrent compile, made once outside the timings
        d = work / f"w{i}"
        if not (d / "zg").exists():
            shutil.copytree(zj.seed_cache(), d / "zg")
        free.put(d)

    def one(k: int) -> None:
        d = free.get()
        try:
            compile_one(k, d)
        finally:
            free.put(d)

    def compile_one(k: int, d: Path) -> None:
        src = cands[k] + zj.references(cands[k])
        f = d / f"c{k}.zig"
        f.write_text(src)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(d), "ZIG_GLOBAL_CACHE_DIR": str(d / "zg"),
               "ZIG_LOCAL_CACHE_DIR": str(d / "zl")}
        subprocess.run([tc.zig_exe(), "ast-check", f.name], cwd=d, env=env, capture_output=True, check=True)
        tests = "test " in src
        cmd = [tc.zig_exe(), "test", f.name, "-j1", "--cache-dir", "zl"]
        cmd += ["--test-no-exec", f"-femit-bin=t{k}.bin"] if tests else ["-fno-emit-bin"]
        subprocess.run(cmd, cwd=d, env=env, capture_output=True, check=True)
        if tests:
            subprocess.run([f"./t{k}.bin"], cwd=d, env=env, capture_output=True, check=True)
        shutil.rmtree(d / "zl", ignore_errors=True)  # no local cache hits across candidates

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, range(len(cands))))


_BURN = "s = 0\nfor i in range(4_000_000):\n    s += i * i\n"


def cpu_ceiling(jobs: int, repeat: int) -> tuple[float, float, float]:
    """(min, median, max) over `repeat` interleaved rounds of the throughput gain of `jobs` concurrent
    CPU-bound processes (a Python loop) over one: what the machine's cores give right now, with
    whatever else is running on them. On an idle 2-core machine this is ~2.0."""
    def run(n: int) -> float:
        t0 = time.monotonic()
        procs = [subprocess.Popen([sys.executable, "-c", _BURN]) for _ in range(n)]
        for p in procs:
            p.wait()
        return time.monotonic() - t0

    gains = []
    for r in range(repeat):
        a, b = (run(1), run(jobs)) if r % 2 == 0 else tuple(reversed((run(jobs), run(1))))
        gains.append(jobs * a / b)
    gains.sort()
    return gains[0], statistics.median(gains), gains[-1]


def measure(target: str, cands: list, options: dict, jobs: int, repeat: int = 1, raw: bool = False,
            reset=None) -> dict:
    """Serial and -j N runs *interleaved* (alternating which goes first), `repeat` rounds: on a
    shared machine other work comes and goes, and back-to-back blocks would charge it all to one
    side. Reports the best of each side (other work only ever adds time) and the spread of the
    per-round ratio. `raw` adds the same for the bare compiler (zig only): what the machine allows."""
    t_serial, t_par, t_raw1, t_rawj = [], [], [], []
    serial = par = None
    work = Path(tempfile.mkdtemp(prefix="codehone-bench-raw-"))
    if raw:
        _raw_zig(cands[:jobs], jobs, work)  # warm the per-worker caches outside the timings
    try:
        for r in range(repeat):
            order = ("s", "p") if r % 2 == 0 else ("p", "s")
            for side in order:
                if reset:
                    reset()
                t0 = time.monotonic()
                if side == "s":
                    serial = check(target, cands, jobs=1, cache_dir=False, options=options)
                    t_serial.append(time.monotonic() - t0)
                else:
                    par = check(target, cands, jobs=jobs, cache_dir=False, options=options)
                    t_par.append(time.monotonic() - t0)
            if raw:
                for j, bucket in ((1, t_raw1), (jobs, t_rawj)) if r % 2 == 0 else ((jobs, t_rawj), (1, t_raw1)):
                    t0 = time.monotonic()
                    _raw_zig(cands, j, work)
                    bucket.append(time.monotonic() - t0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert [v.ok for v in serial] == [v.ok for v in par], "serial and parallel verdicts differ"
    cache = Path(tempfile.mkdtemp(prefix="codehone-bench-cache-"))
    if reset:
        reset()
    try:
        t0 = time.monotonic()
        check(target, cands, jobs=1, cache_dir=cache, options=options)  # fill
        t_cold = time.monotonic() - t0
        t0 = time.monotonic()
        hits = check(target, cands, jobs=1, cache_dir=cache, options=options)
        t_hit = time.monotonic() - t0
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    assert all(v.cached for v in hits)
    n = len(cands)
    ratios = sorted(a / b for a, b in zip(t_serial, t_par, strict=True))
    out = {
        "target": target,
        "n": n,
        "ok": sum(v.ok for v in serial),
        "serial_vps": n / min(t_serial),
        "par_vps": n / min(t_par),
        "speedup": min(t_serial) / min(t_par),
        "spread": (ratios[0], statistics.median(ratios), ratios[-1]),
        "cold_ms": 1000 * t_cold / n,
        "hit_ms": 1000 * t_hit / n,
        "cache_x": t_cold / t_hit if t_hit > 0 else float("inf"),
    }
    if raw:
        raw_ratios = sorted(a / b for a, b in zip(t_raw1, t_rawj, strict=True))
        out["raw"] = (min(t_raw1) / min(t_rawj), raw_ratios[0], statistics.median(raw_ratios), raw_ratios[-1],
                      1000 * min(t_raw1) / n)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16, help="candidates per target")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--targets", default="rust,zig,c-wat")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds; the best of each side is kept")
    ap.add_argument("--units", type=Path, default=None, help="units.jsonl from `codehone mine`, for c-wat")
    ap.add_argument("--per-unit", type=int, default=4, help="c-wat candidates per unit (--n units)")
    args = ap.parse_args()
    os.environ.setdefault("ZIG_GLOBAL_CACHE_DIR", str(Path.home() / ".cache" / "codehone" / "zig"))
    sys.stdout.reconfigure(line_buffering=True)
    print(f"isolation: {best_isolation()} · cores: {os.cpu_count()} · load before: {os.getloadavg()[0]:.2f}")
    # Warm once-per-machine state (zig seed cache, toolchain versions) outside the timings.
    # The worker pool is kept across calls (as in eval); start it here too.
    check("zig", ["pub fn w() u8 {\n    return 1;\n}\n"], cache_dir=False)
    check(
        "rust",
        [f"pub fn w{i}() -> u8 {{\n    1\n}}\n" for i in range(args.jobs)],
        jobs=args.jobs,
        cache_dir=False,
    )
    rows = []
    ceilings = []
    for target in args.targets.split(","):
        ceilings.append(cpu_ceiling(args.jobs, args.repeat))
        if target == "rust":
            rows.append(measure("rust", rust_candidates(args.n), {}, args.jobs, args.repeat))
        elif target == "zig":
            rows.append(measure("zig", zig_candidates(args.n), {}, args.jobs, args.repeat, raw=True))
        elif target == "c-wat":
            from codehone.targets import available

            why = available("c-wat")
            if why:
                print(f"c-wat: skipped ({why})")
                continue
            if not args.units:
                print("c-wat: skipped (pass --units OUT/units.jsonl from `codehone mine`)")
                continue
            items, opts = cwat_items(args.units, args.n, args.per_unit)
            print(f"c-wat: {args.n} units from {args.units}, {args.per_unit} candidates each, every unit cold "
                  f"on each side of each round")
            rows.append(measure("c-wat", items, opts, args.jobs, args.repeat, reset=lambda: cold_cwat(args.jobs)))
            from codehone.targets.c_wat import wasm_run

            print(f"  c-wat: wasmtime's {wasm_run.ALLOCATOR} instance allocator", file=sys.stderr)
        print(f"  {target} done", file=sys.stderr)
    hdr = (
        f"{'target':7} {'n':>3} {'ok':>3} {'serial v/s':>10} {f'-j{args.jobs} v/s':>9} {'speedup':>7} "
        f"{'cold ms':>8} {'cached ms':>9} {'cache x':>8}"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(
            f"{r['target']:7} {r['n']:>3} {r['ok']:>3} {r['serial_vps']:>10.2f} {r['par_vps']:>9.2f} "
            f"{r['speedup']:>6.2f}x {r['cold_ms']:>8.1f} {r['hit_ms']:>9.2f} {r['cache_x']:>7.0f}x"
        )
    print(f"\nper-round -j{args.jobs} speedup over {args.repeat} interleaved rounds (min / median / max):")
    for r in rows:
        lo, med, hi = r["spread"]
        print(f"  {r['target']:7} {lo:.2f}x / {med:.2f}x / {hi:.2f}x")
        if "raw" in r:
            best, rlo, rmed, rhi, ms = r["raw"]
            print(f"  {'zig raw':7} {rlo:.2f}x / {rmed:.2f}x / {rhi:.2f}x (best-of {best:.2f}x, {ms:.0f} ms serial per "
                  f"candidate): the bare compiler, no sandbox or judge, same candidates, same rounds")
    lo = min(c[0] for c in ceilings)
    hi = max(c[2] for c in ceilings)
    med = statistics.median(c[1] for c in ceilings)
    print(f"  {'cpu':7} {lo:.2f}x / {med:.2f}x / {hi:.2f}x: {args.jobs} CPU-bound processes vs 1, measured before each "
          f"target (the ceiling the shared machine allowed)")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
