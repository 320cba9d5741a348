"""Mining yield and speed on real, offline C corpora; prints a table.

Corpora:
  * zig's bundled wasi-libc sources (the default corpus, always present);
  * Debian source packages (zlib, cJSON, lz4, libdeflate, libyaml, lua5.4), fetched with
    `apt-get source` into --corpora when missing (needs a deb-src line; skipped if unavailable).

Each project is mined as its *library code*, with what its own build would pass (the folder of
the library, a generated config header's defines), the way a user would give them on a list
file line. The table says exactly what was passed.

Speed is measured with a warm toolchain cache: a fresh zig cache in which libc and the WASI
emulation libraries have been built once (by mining a one-line file), so zig's per-file object
cache gives no free hits. The baseline row is the same corpus mined serially (-j 1), in the
same run.

    python benchmarks/mine_yield.py [--corpora DIR] [--jobs 2] [--only zlib,cjson]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from codehone.mine import MineConfig, collect_sources, default_corpus, parse_source_line, run_mine

# name, debian source package, library folder, extra tokens for the list-file line
PROJECTS = [
    ("zlib", "zlib", ".", ""),
    ("cjson", "cjson", ".", ""),
    ("lz4", "lz4", "lib", ""),
    ("libdeflate", "libdeflate", "lib", "-I .."),
    ("libyaml", "libyaml", "src", "-I ../include -D YAML_VERSION_MAJOR=0 -D YAML_VERSION_MINOR=2 "
                                  "-D YAML_VERSION_PATCH=5 -D YAML_VERSION_STRING=\"0.2.5\""),
    ("lua5.4", "lua5.4", "src", "-I {stub}"),
]


def fetch(corpora: Path, package: str) -> Path | None:
    found = sorted(p for p in glob.glob(str(corpora / f"{package}-*")) if os.path.isdir(p))
    if found:
        return Path(found[-1])
    corpora.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["apt-get", "source", package], cwd=corpora, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"  (skipping {package}: apt-get source failed: {r.stderr.strip().splitlines()[-1:]})")
        return None
    found = sorted(p for p in glob.glob(str(corpora / f"{package}-*")) if os.path.isdir(p))
    return Path(found[-1]) if found else None


def warm_cache(cache: Path) -> float:
    """Build libc + emulation libs into a fresh zig cache by mining a trivial file."""
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "w.c").write_text("int warm(int x) { return x + 1; }\n")
        (src,) = collect_sources([d], [])
        run_mine([src], Path(d) / "out", MineConfig(jobs=1))
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", type=Path, default=Path(os.environ.get("CODEHONE_CORPORA", "/work/corpora")))
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--only", default="", help="comma-separated project names")
    ap.add_argument("--baseline", default="zlib", help="project also mined with -j 1 as the speed baseline")
    args = ap.parse_args()

    cache = Path(tempfile.mkdtemp(prefix="codehone-bench-zig-"))
    os.environ["ZIG_GLOBAL_CACHE_DIR"] = str(cache)
    print(f"zig cache {cache}: warming libc and emulation libs ...", flush=True)
    print(f"  warmed in {warm_cache(cache):.1f}s")
    stub = Path(tempfile.mkdtemp(prefix="codehone-stub-"))
    (stub / "lua5.4-deb-multiarch.h").write_text('#define DEB_HOST_MULTIARCH "wasm32-wasi"\n')

    rows = []
    only = {x for x in args.only.split(",") if x}
    work = Path(tempfile.mkdtemp(prefix="codehone-bench-"))

    def run(label: str, sources, jobs: int, passed: str) -> None:
        t0 = time.monotonic()
        stats = run_mine(sources, work / f"{label}-j{jobs}", MineConfig(jobs=jobs))
        secs = time.monotonic() - t0
        top = ", ".join(f"{k}={v}" for k, v in list(stats["failure_reasons"].items())[:3])
        y = (stats["units_written"] + stats["exact_duplicates"]) / max(1, stats["functions_found"])
        rows.append((label, jobs, stats["files_mined"], stats["functions_found"], stats["units_written"],
                     stats["exact_duplicates"], f"{y:.1%}", f"{stats['functions_found'] / secs:.1f}", secs, top,
                     passed))
        print(f"  {label} -j{jobs}: {stats['units_written']} units in {secs:.1f}s", flush=True)

    if not only or "wasi-libc" in only:
        run("wasi-libc", default_corpus(), args.jobs, "(built-in: wasi-libc Makefile includes/defines)")
    for name, pkg, sub, extra in PROJECTS:
        if only and name not in only:
            continue
        root = fetch(args.corpora, pkg)
        if root is None:
            continue
        line = f"{root / sub} {extra.format(stub=stub)}".strip()
        sources = [parse_source_line(line)]
        sources[0].name = name
        passed = f"{sub} {extra.format(stub='<stub>')}".strip()
        if name == args.baseline:
            run(name, [parse_source_line(line)], 1, passed + "  [baseline: serial]")
        run(name, sources, args.jobs, passed)

    hdr = ("corpus", "-j", "files", "functions", "units", "dups", "yield", "fn/s", "sec", "top failure reasons",
           "passed")
    widths = [max(len(str(h)), *(len(_fmt(r[i])) for r in rows)) for i, h in enumerate(hdr)]
    print()
    print("  ".join(str(h).ljust(w) for h, w in zip(hdr, widths, strict=True)))
    for r in rows:
        print("  ".join(_fmt(v).ljust(w) for v, w in zip(r, widths, strict=True)))
    lib = [r for r in rows if r[0] != "wasi-libc" and "baseline" not in r[10]]
    if lib:
        f = sum(r[3] for r in lib)
        u = sum(r[4] + r[5] for r in lib)
        s = sum(r[8] for r in lib)
        print(f"\nDebian library code: {f} functions, {u} compiled to units (incl. exact dups) = {u / f:.1%}; "
              f"{f / s:.1f} functions/s at -j{args.jobs}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    return 0


def _fmt(v) -> str:
    return f"{v:.1f}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    sys.exit(main())
