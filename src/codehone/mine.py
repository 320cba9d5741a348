"""`codehone mine`: sources → units.jsonl + stats.json, in parallel, resumable after any kill.

Durability protocol (one writer, the parent process), per mined file:
  1. the reference module is written atomically to modules/<sha256>.wasm;
  2. the file's units are appended to units.jsonl and fsync'ed;
  3. a journal line for the file is appended to journal.jsonl and fsync'ed.
A kill between any two steps is harmless: on rerun the partial last line of
either file is cut, files already in the journal are skipped, and units of a
re-mined file that are already in units.jsonl are recognised by id and not
written again. So every unit is present exactly once.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from . import records
from .records import JsonlAppender, content_hash, read_jsonl, write_text_atomic
from .sources import Source, SourceError, WalkOptions, WalkStats, read_list_file, resolve, walk
from .targets import c_wat
from .toolchains import zig

TARGETS = {"c-wat": c_wat}


@dataclass
class MineConfig:
    target: str = "c-wat"
    jobs: int = 0  # 0 = all cores
    walk: WalkOptions = field(default_factory=WalkOptions)
    opts: c_wat.MineOptions = field(default_factory=c_wat.MineOptions)
    limit_files: int | None = None


def default_corpus() -> list[Source]:
    """zig's bundled wasi-libc sources: real C, present after `pip install`, no network needed.

    It is mined with the include folders and defines of wasi-libc's own Makefile (the
    musl `hidden`/`weak` attributes live in a header zig does not ship, so they are defines).
    """
    from .sources import detect_license

    wasi = zig.libc_sources() / "wasi"
    lic = detect_license(wasi) or "Apache-2.0 WITH LLVM-exception"
    commit = f"ziglang-{zig.version()}"
    musl_defines = [
        "hidden=__attribute__((__visibility__(\"hidden\")))",
        "weak=__attribute__((__weak__))",
        "weak_alias(old,new)=extern __typeof(old) new __attribute__((__weak__, __alias__(#old)))",
        "_WASI_EMULATED_SIGNAL",
    ]
    top = wasi / "libc-top-half"
    bottom = wasi / "libc-bottom-half"
    return [
        Source(root=top, name="wasi-libc-top-half", commit=commit, license=lic,
               include_dirs=[str(top / d) for d in ("musl/src/include", "musl/src/internal", "musl/arch/wasm32",
                                                    "headers/private")],
               defines=musl_defines),
        Source(root=bottom, name="wasi-libc-bottom-half", commit=commit, license=lic,
               include_dirs=[str(bottom / d) for d in ("headers/private", "cloudlibc/src/include", "cloudlibc/src")],
               defines=musl_defines),
    ]


def parse_source_line(line: str, base: Path | None = None, cache: Path | None = None) -> Source:
    """`SOURCE [-I DIR]... [-D MACRO]...`: a source with its own include folders and defines."""
    parts = line.split()
    src = resolve(parts[0], cache=cache, base=base)
    i = 1
    while i < len(parts):
        tok = parts[i]
        if tok in ("-I", "-D") and i + 1 < len(parts):
            val = parts[i + 1]
            i += 2
        elif tok.startswith(("-I", "-D")) and len(tok) > 2:
            val = tok[2:]
            tok = tok[:2]
            i += 1
        else:
            raise SourceError(f"unexpected token {tok!r} after source {parts[0]!r} (use -I DIR or -D MACRO)")
        if tok == "-I":
            p = Path(val)
            src.include_dirs.append(str(p if p.is_absolute() else (src.root / p).resolve()))
        else:
            src.defines.append(val)
    return src


def collect_sources(specs: Iterable[str], list_files: Iterable[Path], cache: Path | None = None) -> list[Source]:
    sources = []
    for lf in list_files:
        for line in read_list_file(lf):
            sources.append(parse_source_line(line, base=lf.parent, cache=cache))
    for s in specs:
        sources.append(parse_source_line(s, cache=cache))
    names = Counter(s.name for s in sources)
    seen: Counter = Counter()
    for s in sources:  # two repos both called "src" must stay apart in provenance
        if names[s.name] > 1:
            seen[s.name] += 1
            s.name = f"{s.name}#{seen[s.name]}"
    return sources


class ToolchainError(RuntimeError):
    """The compiler cannot work at all (not one file's problem); the message is one line."""


# ---------------------------------------------------------------- worker side

_WORKER_STATE: dict = {}


def _work(args: tuple) -> tuple[str, dict]:
    key, src, path, opts = args
    # Per source: the header index and the include folders learned so far. Keyed by root too,
    # so two sources of the same name never share what was learned about one of them.
    state = _WORKER_STATE.setdefault((src.name, str(src.root)), {})
    if "index" not in state:
        state["index"] = c_wat.HeaderIndex(src.root)
        state["learned"] = []
    try:
        res = c_wat.mine_file(Path(path), src, opts, state["index"], state["learned"])
    except Exception as e:  # a bug must cost one file, never the run
        res = c_wat.FileResult(path=str(path), file_reason="internal_error")
        res.examples["internal_error"] = f"{path}: {type(e).__name__}: {e}"
        res.failures["internal_error"] += 1
    return key, res.__dict__


# ---------------------------------------------------------------- parent side


def _file_key(src: Source, path: Path, cfg_hash: str) -> str:
    st = path.stat()
    return content_hash(src.name, str(path.relative_to(src.root)), str(st.st_size), str(int(st.st_mtime_ns)),
                        cfg_hash)


def run_mine(
    sources: list[Source],
    out: Path,
    cfg: MineConfig,
    progress: Callable[[int, int, int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    on_status: Callable[[str], None] | None = None,
) -> dict:
    """Mine every file of every source into `out`. Returns the stats dict (also written to stats.json)."""
    t_start = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    (out / "modules").mkdir(exist_ok=True)
    units_path, journal_path = out / "units.jsonl", out / "journal.jsonl"
    cfg_hash = content_hash(cfg.target, cfg.opts.opt_level, json.dumps(cfg.opts.defines),
                            json.dumps(cfg.opts.extra_include_dirs))

    # Resume: what is already durable.
    records.repair_tail(units_path)
    records.repair_tail(journal_path)
    unit_ids: set[str] = set()
    norm_seen: set[str] = set()
    if units_path.exists():
        for u in read_jsonl(units_path, errors=[]):
            unit_ids.add(u["id"])
            norm_seen.add(u.get("meta", {}).get("norm_hash", u["id"]))
    done: dict[str, dict] = {}
    if journal_path.exists():
        for j in read_jsonl(journal_path, errors=[]):
            done[j["key"]] = j

    # Walk.
    walk_stats = WalkStats()
    tasks = []
    for src in sources:
        for p in walk(src.root, cfg.walk, walk_stats):
            tasks.append((_file_key(src, p, cfg_hash), src, str(p), cfg.opts))
    if cfg.limit_files is not None and len(tasks) > cfg.limit_files:
        # An even spread over the walk order, not its head: the first files of a tree are often
        # its arch headers, so a quick look at "the first N" would not look like the corpus.
        n = cfg.limit_files
        tasks = [tasks[i * len(tasks) // n] for i in range(n)] if n else []
    todo = [t for t in tasks if t[0] not in done]
    resumed = len(tasks) - len(todo)
    if on_total:
        on_total(len(tasks))

    jobs = cfg.jobs or os.cpu_count() or 1
    zig.cache_dir()  # create it before workers race to
    if todo:
        if on_status:
            on_status("preparing the toolchain (builds wasi libc into the zig cache once, ~30 s)")
        err = c_wat.warm_toolchain(cfg.opts)
        if err:
            raise ToolchainError(f"the zig toolchain cannot build for wasm32-wasi: {err}")
    units_app = JsonlAppender(units_path)
    journal_app = JsonlAppender(journal_path)
    files_done = resumed
    units_total = len(unit_ids)
    if progress:
        progress(files_done, units_total, 0)
    interrupted = False

    def handle(key: str, res: dict) -> None:
        nonlocal files_done, units_total
        for sha, data in res["modules"].items():
            mp = out / "modules" / f"{sha}.wasm"
            if not mp.exists():
                write_text_atomic(mp, data)
        new, dups, present = [], 0, 0
        for u in res["units"]:
            if u["id"] in unit_ids:
                present += 1
                continue
            nh = u["meta"]["norm_hash"]
            if nh in norm_seen:
                dups += 1
                continue
            norm_seen.add(nh)
            unit_ids.add(u["id"])
            new.append(u)
        units_app.write_many(new)
        entry = {
            "key": key,
            "path": res["path"],
            "functions": res["functions"],
            "units": len(new) + present,
            "duplicates": dups,
            "compiled": len(res["units"]) + res["failures"].get("empty_body", 0),
            "failures": dict(res["failures"]),
            "examples": res["examples"],
            "file_reason": res["file_reason"],
            "non_utf8": res["non_utf8"],
            "seconds": round(res["seconds"], 4),
            "attempts": res["compile_attempts"],
        }
        journal_app.write_many([entry])
        done[key] = entry
        files_done += 1
        units_total += len(new)
        if progress:
            progress(files_done, units_total, len(new))

    try:
        if jobs <= 1:
            _WORKER_STATE.clear()  # in-process: nothing learned in an earlier run may leak into this one
            for t in todo:
                handle(*_work(t))
        else:
            # forkserver, not fork: the parent may hold wasmtime (threads), and forking a threaded
            # process can deadlock the child.
            ctx = multiprocessing.get_context("forkserver")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
                pending = set()
                it = iter(todo)
                window = jobs * 4
                try:
                    for t in it:
                        pending.add(pool.submit(_work, t))
                        if len(pending) >= window:
                            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                            for f in finished:
                                handle(*f.result())
                    while pending:
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for f in finished:
                            handle(*f.result())
                except KeyboardInterrupt:
                    interrupted = True
                    for f in pending:
                        f.cancel()
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    finally:
        units_app.close()
        journal_app.close()

    # unit_ids holds every id in units.jsonl (loaded on resume, added as written): no re-read needed.
    stats = summarize(done, tasks, walk_stats, len(unit_ids), time.monotonic() - t_start, resumed, jobs)
    stats["sources"] = [
        {"name": s.name, "root": str(s.root), "url": s.url, "commit": s.commit, "license": s.license}
        for s in sources
    ]
    stats["interrupted"] = interrupted
    write_text_atomic(out / "stats.json", json.dumps(stats, indent=2, sort_keys=True) + "\n")
    return stats


def summarize(done: dict, tasks: list, walk_stats: WalkStats, units_written: int, seconds: float, resumed: int,
              jobs: int) -> dict:
    keys = {t[0] for t in tasks}
    entries = [done[k] for k in keys if k in done]
    failures: Counter = Counter()
    file_failures: Counter = Counter()
    examples: dict[str, str] = {}
    for e in sorted(entries, key=lambda e: e["path"]):
        failures.update(e["failures"])
        if e["file_reason"]:
            file_failures[e["file_reason"]] += 1
        for r, ex in e["examples"].items():
            examples.setdefault(r, ex)
    functions = sum(e["functions"] for e in entries)
    skipped = dict(walk_stats.skipped)
    mined_seconds = sum(e["seconds"] for e in entries)
    return {
        "files_seen": walk_stats.seen,
        "files_mined": len(entries),
        "files_resumed": resumed,
        "files_skipped": skipped,
        "files_non_utf8": sum(1 for e in entries if e["non_utf8"]),
        "files_failed": dict(file_failures.most_common()),
        "functions_found": functions,
        "functions_compiled": sum(e["compiled"] for e in entries),
        "units_written": units_written,
        "exact_duplicates": sum(e["duplicates"] for e in entries),
        "failure_reasons": dict(failures.most_common()),
        "failure_examples": {r: examples[r] for r, _ in failures.most_common() if r in examples},
        "yield": round(units_written / functions, 4) if functions else 0.0,
        "seconds": round(seconds, 2),
        "worker_seconds": round(mined_seconds, 2),
        "functions_per_second": round(functions / seconds, 1) if seconds > 0 and not resumed else None,
        "jobs": jobs,
    }
