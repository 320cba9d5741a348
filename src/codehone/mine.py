"""`codehone mine`: sources → units.jsonl + stats.json, in parallel, resumable after any kill.

Durability protocol (one writer, the parent process), per mined file:
  1. the file's side files (e.g. its reference build) are written atomically to modules/;
  2. the file's units are appended to units.jsonl and fsync'ed;
  3. a journal line for the file is appended to journal.jsonl and fsync'ed.
A kill between any two steps is harmless: on rerun the partial last line of
either file is cut, files already in the journal are skipped, and units of a
re-mined file that are already in units.jsonl are recognised by id and not
written again. So every unit is present exactly once.

A resumed run equals a fresh one byte for byte: each file is mined from the
tree alone (the per-source context is built once, in this process, and handed
read-only to every worker), and a finished run rewrites units.jsonl in one
canonical order, keeping of each set of exact duplicates (same normalised
source) the unit that sorts first -- never the one that happened to arrive first.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import records
from .executors import Journal, canonical_jsonl, current, make_pool, run_serial, task_context
from .records import FileResult, JsonlAppender, content_hash, read_jsonl, write_text_atomic
from .sources import (
    FileTooLarge,
    Source,
    SourceError,
    WalkOptions,
    WalkStats,
    read_bounded,
    read_list_file,
    resolve,
    walk,
)
from .targets import DEFAULT, get
from .toolchains import zig


@dataclass
class MineConfig:
    target: str = DEFAULT
    jobs: int = 0  # 0 = all cores
    walk: WalkOptions = field(default_factory=WalkOptions)
    opts: Any = None  # the target's own options (its Miner.options()); None = its defaults
    limit_files: int | None = None

    def __post_init__(self) -> None:
        if self.jobs < 0:
            raise ValueError(f"jobs must be 0 (all cores) or more, not {self.jobs}")
        if self.limit_files is not None and self.limit_files < 0:
            raise ValueError(f"limit_files must be 0 or more, not {self.limit_files}")
        if self.walk.extensions is None:  # the files this target mines
            miner = get(self.target).miner
            self.walk.extensions = miner.extensions if miner else (".c", ".h")
        if self.opts is None:
            self.opts = get(self.target).miner.options()


def default_corpus(target: str = DEFAULT) -> list[Source]:
    """The bundled default corpus of `target`: real code that is on disk after `pip install`."""
    return get(target).miner.default_corpus()


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


class WorkerDied(ToolchainError):
    """A worker process died; files not yet journaled are mined again on the rerun."""


# ---------------------------------------------------------------- worker side


def _source_key(target: str, src: Source) -> tuple[str, str, str]:
    # Keyed by root too, so two sources of the same name never share their state.
    return (target, src.name, str(src.root))


def _work(args: tuple) -> tuple[str, dict]:
    key, target, src, path, opts, max_bytes = args
    miner = get(target).miner
    why = _unsafe(Path(path), max_bytes)
    if why:  # changed since the walk: replaced by a special file, or grown past the size limit
        res = FileResult(path=str(Path(path).relative_to(src.root)), file_reason=why)
        res.examples[why] = f"{path}: {why.replace('_', ' ')}"
        return key, res.__dict__
    # Per source, what the target reads for every file (for C, the header index and the include
    # folders of the tree): built once in the parent from the tree alone, read-only here.
    state = (task_context() or {}).get(_source_key(target, src))
    if state is None:
        state = miner.new_state(src)
    try:
        res = miner.mine_file(Path(path), src, opts, state)
    except Exception as e:  # a bug must cost one file, never the run
        res = FileResult(path=str(path), file_reason="internal_error")
        res.examples["internal_error"] = f"{path}: {type(e).__name__}: {e}"
        res.failures["internal_error"] += 1
    return key, res.__dict__


def _unsafe(path: Path, max_bytes: int) -> str | None:
    """Why a walked file must not be mined now (read bounded by the size limit), or None."""
    try:
        data = read_bounded(path, max_bytes)
    except FileTooLarge:
        return "too_large"
    except OSError:
        return "unreadable"
    return "special_file" if data is None else None


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
    miner = get(cfg.target).miner
    cfg_hash = content_hash(cfg.target, *miner.options_key(cfg.opts))

    # Resume: what is already durable.
    records.repair_tail(units_path)
    journal = Journal(journal_path)
    done = journal.done
    unit_ids: set[str] = set()
    if units_path.exists():
        for u in read_jsonl(units_path, errors=[]):
            unit_ids.add(u["id"])

    # Walk.
    walk_stats = WalkStats()
    tasks = []
    for src in sources:
        seen, skipped = walk_stats.seen, Counter(walk_stats.skipped)
        for p in walk(src.root, cfg.walk, walk_stats):
            tasks.append((_file_key(src, p, cfg_hash), cfg.target, src, str(p), cfg.opts, cfg.walk.max_bytes))
        if walk_stats.seen == seen:
            exts = "/".join(cfg.walk.extensions)
            dirs = sorted({k.split(":", 1)[1] for k in walk_stats.skipped - skipped if k.startswith("excluded_dir:")})
            hint = (f" outside the folders skipped by default ({', '.join(dirs)}: --include-tests, --include-vendor, "
                    "--include-examples, --include-benches mine them)" if dirs else "")
            raise SourceError(f"{src.root}: no {exts} file{hint}; nothing to mine for {cfg.target} "
                              "(name the folder that holds the code)")
    if cfg.limit_files is not None and len(tasks) > cfg.limit_files:
        # An even spread over the walk order, not its head: the first files of a tree are often
        # its arch headers, so a quick look at "the first N" would not look like the corpus.
        n = cfg.limit_files
        tasks = [tasks[i * len(tasks) // n] for i in range(n)] if n else []
    todo = journal.pending(tasks, key=lambda t: t[0])
    resumed = len(tasks) - len(todo)
    if on_total:
        on_total(len(tasks))

    jobs = cfg.jobs or os.cpu_count() or 1
    zig.cache_dir()  # create it before workers race to
    if todo:
        if on_status:
            on_status(miner.warm_message)
        err = miner.warm(cfg.opts)
        if err:
            raise ToolchainError(err)
    units_app = JsonlAppender(units_path)
    files_done = resumed
    units_total = len(unit_ids)
    if progress:
        progress(files_done, units_total, 0)
    interrupted = False

    def handle(key: str, res: dict) -> None:
        nonlocal files_done, units_total
        for name, data in res["modules"].items():
            mp = out / "modules" / name
            if not mp.exists():
                write_text_atomic(mp, data)
        # Every unit is written; exact duplicates (same normalised source) are resolved by the
        # canonical rewrite at the end, by sort order, not by which file finished first.
        new, present = [], 0
        for u in res["units"]:
            if u["id"] in unit_ids:
                present += 1
                continue
            unit_ids.add(u["id"])
            new.append(u)
        units_app.write_many(new)
        entry = {
            "key": key,
            "path": res["path"],
            "functions": res["functions"],
            "units": len(new) + present,
            "compiled": len(res["units"]) + res["failures"].get("empty_body", 0),
            "failures": dict(res["failures"]),
            "examples": res["examples"],
            "file_reason": res["file_reason"],
            "non_utf8": res["non_utf8"],
            "seconds": round(res["seconds"], 4),
            "attempts": res["compile_attempts"],
        }
        journal.record(entry)  # last: the file's modules and units are durable already
        files_done += 1
        units_total += len(new)
        if progress:
            progress(files_done, units_total, len(new))

    # The per-source context, built here once from each tree alone, read-only in every worker.
    context = {}
    if todo:
        for src in sources:
            context[_source_key(cfg.target, src)] = miner.new_state(src)
    try:
        pooled = jobs > 1 or current() != "local"  # --executor ray means Ray, even for one worker
        if not pooled:
            results = run_serial(_work, todo, context=context)
        else:
            pool = make_pool(min(jobs, max(1, len(todo))), context=context)
            results = pool.imap_unordered(_work, todo)
        try:
            for n, res, err in results:
                if err is not None:  # the worker process itself died (killed for memory?): the pool is gone
                    raise WorkerDied(f"a mine worker died on {todo[n][3]} ({type(err).__name__}: {err}); what was "
                                     "mined is saved: rerun the same command to resume")
                handle(*res)
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            if pooled:
                pool.close()
    finally:
        units_app.close()
        journal.close()

    # Every file is mined: the canonical units.jsonl (sorted, exact duplicates resolved by sort order).
    units_written, _ = canonical_jsonl(units_path, order=_unit_order,
                                       dedup=lambda u: u.get("meta", {}).get("norm_hash") or u["id"])
    stats = summarize(done, tasks, walk_stats, units_written, time.monotonic() - t_start, resumed, jobs)
    stats["sources"] = [
        {"name": s.name, "root": str(s.root), "url": s.url, "commit": s.commit, "license": s.license}
        for s in sources
    ]
    stats["interrupted"] = interrupted
    write_text_atomic(out / "stats.json", json.dumps(stats, indent=2, sort_keys=True) + "\n")
    return stats


def _unit_order(u: dict) -> tuple:
    return (str(u.get("repo")), str(u.get("path")), int(u.get("line") or 0), str(u.get("name")), u["id"])


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
        "exact_duplicates": max(0, sum(e["units"] for e in entries) - units_written),
        "failure_reasons": dict(failures.most_common()),
        "failure_examples": {r: examples[r] for r, _ in failures.most_common() if r in examples},
        "yield": round(units_written / functions, 4) if functions else 0.0,
        "seconds": round(seconds, 2),
        "worker_seconds": round(mined_seconds, 2),
        "functions_per_second": round(functions / seconds, 1) if seconds > 0 and not resumed else None,
        "jobs": jobs,
    }
