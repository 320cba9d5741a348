"""The reference compressor on a whole corpus: files, round-trip rate, token ratios, speed.

    python benchmarks/compress_reference.py                      # the Python stdlib, every .py file
    python benchmarks/compress_reference.py --lang c DIR         # C files under DIR
    python benchmarks/compress_reference.py --every 10           # a 1-in-10 sample, quick

Baseline in the same run: formatting and comments only (`ast.unparse`, or the tight C layout
with no aliases), against the full reference compressor (plus one-space indentation and the
symbol map). Ratios are cl100k_base tokens of the original over tokens of the output; a file
counts only when its output expands back to the same tree. Files that do not parse in the
first place (the stdlib ships deliberately broken test files) are counted apart.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import sysconfig
import time
from pathlib import Path

from codehone.targets.compress import c_code, python_code, ratio_figures, tokens
from codehone.targets.compress.notation import Notation


def baseline_python(src: str, _count) -> str:
    import ast

    return ast.unparse(python_code.parse(src))


def baseline_c(src: str, _count) -> str:
    tree = c_code.parse(src)
    return c_code._emit(tree, src.encode("utf-8", "surrogatepass"), {})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default=sysconfig.get_paths()["stdlib"])
    ap.add_argument("--lang", choices=("python", "c"), default="python")
    ap.add_argument("--every", type=int, default=1, help="take every Nth file (1 = all)")
    a = ap.parse_args()
    codec = python_code if a.lang == "python" else c_code
    exts = (".py",) if a.lang == "python" else (".c", ".h")
    root = Path(a.root)
    files = sorted(p for p in root.rglob("*") if p.suffix in exts and p.is_file()
                   and "site-packages" not in p.relative_to(root).parts and not p.is_symlink())[:: a.every]
    methods = {"formatting only (baseline)": baseline_python if a.lang == "python" else baseline_c,
               "reference compressor": codec.compress}
    rows = {m: [] for m in methods}
    fails = {m: 0 for m in methods}
    secs = {m: 0.0 for m in methods}
    unparsable = non_utf8 = 0
    for p in files:
        try:
            src = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            non_utf8 += 1
            continue
        try:
            codec.parse(src)
        except (python_code.CodecError, c_code.CodecError, RecursionError):
            unparsable += 1
            continue
        before = tokens.count(src)
        for m, fn in methods.items():
            t0 = time.perf_counter()
            try:
                out = fn(src, tokens.count)
                ok = codec.same(src, codec.expand(Notation(body=out).render() if fn is not codec.compress else out))
            except (python_code.CodecError, c_code.CodecError, RecursionError):
                ok = False
            secs[m] += time.perf_counter() - t0
            if ok:
                rows[m].append((before, tokens.count(out)))
            else:
                fails[m] += 1
    n = len(files) - unparsable - non_utf8
    print(f"corpus: {root} ({a.lang}), {len(files)} files, {unparsable} do not parse, {non_utf8} not UTF-8; "
          f"tokenizer {tokens.label()}; Python {sys.version.split()[0]}\n")
    print("| method | files | round trip | ratio median | ratio p10 | ratio total | tokens in | tokens out | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m in methods:
        f = ratio_figures(rows[m])
        tin, tout = sum(b for b, _ in rows[m]), sum(x for _, x in rows[m])
        rt = f"{len(rows[m])}/{n} ({100 * len(rows[m]) / max(n, 1):.2f}%)"
        print(f"| {m} | {n} | {rt} | {f.get('ratio_median')} | {f.get('ratio_p10')} | {f.get('ratio_total')} | "
              f"{tin:,} | {tout:,} | {secs[m]:.1f} |")
    if rows["reference compressor"]:
        saved = 1 - 1 / ratio_figures(rows["reference compressor"])["ratio_total"]
        print(f"\nreference compressor: {100 * saved:.1f}% fewer tokens in total; "
              f"median file {statistics.median(b for b, _ in rows['reference compressor'])} tokens")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
