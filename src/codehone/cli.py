"""The `codehone` command line: one thin verb per stage; the work lives in the stage modules."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from . import __version__

app = typer.Typer(
    help="codehone: turn code repositories into small, fast specialist code models, "
    "with a compiler or a test as the judge at every step.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def fail(msg: str, code: int = 2) -> None:
    """One clear line, no traceback."""
    console.print(f"[bold red]error:[/] {msg}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        print(f"codehone {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Stages compose through plain files: mine → build → train → eval → iterate → export/serve."""


@app.command()
def mine(
    sources: list[str] = typer.Argument(
        None,
        help="Local folders or git URLs. Each may be followed, in a list file, by -I DIR / -D MACRO. "
        "With none given, the bundled default corpus (zig's wasi-libc sources) is mined.",
        show_default=False,
    ),
    out: Path = typer.Option(Path("out/mine"), "-o", "--out", help="Output folder: units.jsonl, stats.json, modules/."),
    target: str = typer.Option("c-wat", "--target", "-t", help="What to mine for. Available: c-wat."),
    list_file: list[Path] = typer.Option(None, "-l", "--list", help="File listing sources, one per line; # comments."),
    include: list[str] = typer.Option(None, "-I", "--include", help="Extra include folder for every source."),
    define: list[str] = typer.Option(None, "-D", "--define", help="Extra preprocessor define for every source."),
    jobs: int = typer.Option(0, "-j", "--jobs", help="Parallel workers (0 = all cores)."),
    opt: str = typer.Option("-O2", "--opt", help="Optimisation level for the reference build (-O0, -O1, -O2, -Os...)."),
    include_tests: bool = typer.Option(False, "--include-tests", help="Also mine test folders and files."),
    include_benches: bool = typer.Option(False, "--include-benches", help="Also mine benchmark folders."),
    include_examples: bool = typer.Option(False, "--include-examples", help="Also mine examples, demos and docs."),
    include_vendor: bool = typer.Option(False, "--include-vendor", help="Also mine vendored/third-party trees."),
    max_kb: int = typer.Option(1000, "--max-kb", help="Skip files larger than this many KiB."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds allowed to compile one file."),
    limit: int = typer.Option(None, "--limit", help="Mine at most this many files (for a quick look)."),
    explain: bool = typer.Option(False, "--explain", help="Print the top failure reasons, each with an example."),
    cache: Path = typer.Option(None, "--cache", help="Cache folder for git clones (default ~/.cache/codehone)."),
) -> None:
    """Extract every function, compile each file once in its real context, and write one unit per function.

    Output: OUT/units.jsonl (one unit per function: source, doc, signature, its WAT alone, provenance),
    OUT/stats.json (files seen/skipped, functions found/compiled, units, failure reasons, seconds) and
    OUT/modules/ (the reference wasm module of each file, by sha256, for the judge).
    Kill it at any moment and run it again: it resumes, and every unit is written exactly once.
    """
    from .mine import TARGETS, MineConfig, ToolchainError, collect_sources, default_corpus, run_mine
    from .sources import SourceError, WalkOptions
    from .targets.c_wat import MineOptions

    if target not in TARGETS:
        fail(f"unknown target {target!r}; available: {', '.join(TARGETS)}")
    if opt not in ("-O0", "-O1", "-O2", "-O3", "-Os", "-Oz"):
        fail(f"--opt must be one of -O0 -O1 -O2 -O3 -Os -Oz, not {opt!r}")
    try:
        srcs = collect_sources(sources or [], list_file or [], cache=cache)
    except SourceError as e:
        fail(str(e))
    if not srcs:
        srcs = default_corpus()
        console.print(f"no sources given: mining the bundled default corpus (zig's wasi-libc, {srcs[0].root.parent})")
    cfg = MineConfig(
        target=target,
        jobs=jobs,
        walk=WalkOptions(
            max_bytes=max_kb * 1024,
            include_tests=include_tests,
            include_benches=include_benches,
            include_examples=include_examples,
            include_vendor=include_vendor,
        ),
        opts=MineOptions(opt_level=opt, timeout_s=timeout, extra_include_dirs=list(include or []),
                         defines=list(define or [])),
        limit_files=limit,
    )
    progress = Progress(
        TextColumn("[bold]mine[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files · {task.fields[rate]} files/s · [green]{task.fields[units]}[/] units"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    import time

    t0 = time.monotonic()
    state = {"task": None, "start_done": 0}

    def on_total(n: int) -> None:
        state["task"] = progress.add_task("mine", total=n, units=0, rate="-")

    def on_progress(files: int, units: int, _new: int) -> None:
        if state["task"] is None:
            return
        if state["start_done"] == 0 and files and _new == 0 and time.monotonic() - t0 < 0.5:
            state["start_done"] = files
        dt = time.monotonic() - t0
        rate = f"{(files - state['start_done']) / dt:.1f}" if dt > 0 else "-"
        progress.update(state["task"], completed=files, units=units, rate=rate)

    try:
        with progress:
            stats = run_mine(srcs, out, cfg, progress=on_progress, on_total=on_total,
                             on_status=lambda m: console.print(f"[dim]{m}[/]"))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: what was mined is saved; run the same command again to resume.")
        raise typer.Exit(130) from None
    except ToolchainError as e:
        fail(str(e))
    except OSError as e:
        fail(f"{e.filename or ''}: {e.strerror or e}")
    _print_mine_summary(stats, out, explain)


def _print_mine_summary(stats: dict, out: Path, explain: bool) -> None:
    t = Table(title=f"codehone mine → {out}", show_header=False)
    t.add_row("files seen", str(stats["files_seen"]))
    t.add_row("files mined", f"{stats['files_mined']} ({stats['files_resumed']} already done before this run)")
    t.add_row("files skipped", ", ".join(f"{k}={v}" for k, v in sorted(stats["files_skipped"].items())) or "0")
    t.add_row("files failed to compile", ", ".join(f"{k}={v}" for k, v in stats["files_failed"].items()) or "0")
    t.add_row("non-UTF-8 files (decoded with replacement)", str(stats["files_non_utf8"]))
    t.add_row("functions found", str(stats["functions_found"]))
    t.add_row("functions compiled", str(stats["functions_compiled"]))
    t.add_row("exact duplicates dropped", str(stats["exact_duplicates"]))
    t.add_row("units written", f"[bold green]{stats['units_written']}[/]")
    t.add_row("yield (units / functions)", f"{stats['yield'] * 100:.1f}%")
    t.add_row("seconds", f"{stats['seconds']}")
    if stats.get("functions_per_second"):
        t.add_row("functions/s", str(stats["functions_per_second"]))
    console.print(t)
    reasons = stats["failure_reasons"]
    if reasons:
        top = ", ".join(f"{k}={v}" for k, v in list(reasons.items())[:5])
        console.print(f"functions lost, by reason: {top}" + ("" if explain else "  (--explain for examples)"))
    if explain and reasons:
        console.print("[bold]why functions were lost[/] (top reasons, functions lost, one example each):")
        for r, n in list(reasons.items())[:10]:
            example = stats["failure_examples"].get(r, "")
            console.print(f"  {r} ({n}): {example}", soft_wrap=True, highlight=False, markup=False)
    print(json.dumps({k: stats[k] for k in ("functions_found", "units_written", "yield", "seconds")}))


@app.command()
def build(
    units: list[str] = typer.Argument(
        None, help="units.jsonl files, or `codehone mine` output folders (their units.jsonl).", show_default=False
    ),
    out: Path = typer.Option(Path("out/dataset"), "-o", "--out", help="Dataset folder to write."),
    recipe: Path = typer.Option(None, "--recipe", "-r", help="YAML recipe; its `build:` section is used."),
    sets: list[str] = typer.Option(
        None, "--set", help="Override a recipe setting, e.g. --set dedup.near.threshold=0.8 "
        "--set 'output.formats=\\[chat,alpaca]' --set filters.tokenizer=MODEL_DIR (repeatable)."
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild even when inputs, recipe and code are unchanged."),
) -> None:
    """Units → a deduplicated, filtered, decontaminated, leak-free dataset with a card.

    Steps: unit filters → exact dedup → MinHash near-dedup → split grouped by repository or file →
    decontamination of train → every prompt mode rendered → token limits (drop, never truncate).

    Writes JSONL + Parquet per split and format, units.jsonl, dropped.jsonl, stats.json and README.md
    (the card, with plots). The same inputs and recipe give byte-identical files.
    """
    import time

    from rich.markup import escape

    from .config import ConfigError, load_build_config
    from .dataset import BuildError, run_build

    def fail(msg: str) -> None:  # one line however long (paths), and no markup read from the message
        console.print(f"[bold red]error:[/] {escape(msg)}", soft_wrap=True, highlight=False)
        raise typer.Exit(2)

    try:
        cfg = load_build_config(recipe, sets or [])
        t0 = time.monotonic()
        stats = run_build(units or [], out, cfg, force=force,
                          log=lambda m: console.print(f"[yellow]note:[/] {escape(m)}", soft_wrap=True, highlight=False))
    except (ConfigError, BuildError) as e:
        fail(str(e))
    except OSError as e:
        fail(f"{e.filename or ''}: {e.strerror or e}")
    dt = time.monotonic() - t0
    d, sp = stats["dedup"], stats["split"]
    t = Table(title=f"codehone build → {out}" + (" (up to date)" if stats.get("up_to_date") else ""),
              show_header=False)
    t.add_row("units in", str(stats["units_in"]))
    t.add_row("malformed lines skipped", str(stats["inputs"]["malformed"]))
    t.add_row("filtered", ", ".join(f"{k}={v}" for k, v in stats["filtered"].items()) or "0")
    t.add_row("exact / near duplicates", f"{d['exact_duplicates']} / {d['near_duplicates']}")
    t.add_row("decontaminated", str(stats["decontam"]["dropped"]))
    t.add_row("examples dropped for length", ", ".join(f"{k}={v}" for k, v in stats["examples_filtered"].items()) or "0")
    t.add_row(f"split (by {sp['group_by']})", ", ".join(f"{s}={n}" for s, n in sp["units"].items()) + " units; "
              + ", ".join(f"{s}={n}" for s, n in sp["examples"].items()) + " examples")
    t.add_row("seconds", f"{dt:.2f} ({stats['units_in'] / dt:.0f} units/s)" if dt > 0 else "-")
    console.print(t)
    print(json.dumps({"units_in": stats["units_in"], "units_out": stats["units_out"], "examples": sp["examples"],
                      "seconds": round(dt, 3)}))


@app.command()
def check(
    path: Path = typer.Argument(..., help="One candidate source file, or a SAMPLES.jsonl with one "
                                "{\"candidate\": ..., \"unit_id\"/\"unit\": ...} object per line.",
                                show_default=False),
    target: str = typer.Option(..., "--target", "-t", help="Which judge: c-wat, rust or zig."),
    jobs: int = typer.Option(1, "-j", "--jobs", help="Candidates judged in parallel (0 = all cores)."),
    out: Path = typer.Option(None, "-o", "--out", help="Write one verdict per candidate to this JSONL file."),
    units: Path = typer.Option(None, "--units", help="units.jsonl from `codehone mine`, to resolve `unit_id` "
                               "(c-wat); its sibling modules/ folder holds the reference modules."),
    modules: Path = typer.Option(None, "--modules", help="Reference modules folder for c-wat "
                                 "(default: next to --units)."),
    cache: Path = typer.Option(None, "--cache", help="Verdict cache folder (default ~/.cache/codehone/verdicts; "
                               "safe to delete)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Judge everything afresh and store nothing."),
    no_tests: bool = typer.Option(False, "--no-tests", help="rust/zig: compile and lint only, skip test blocks."),
    timeout: float = typer.Option(None, "--timeout", help="Seconds allowed per compile step."),
) -> None:
    """Judge candidates in a sandbox: compile, lint, run tests (rust, zig) or execute differentially (c-wat).

    Each verdict says ok, the stage reached (parse/compile/lint/test/...), structured diagnostics (code,
    message, line), counts (clippy warnings per lint, tests passed/failed), scores (idiomatic, doc rate),
    timings and the isolation level. Verdicts are cached by content (candidate + target + toolchain +
    options), so a rerun only judges what changed. Exit status: 0 when every candidate passed, 1 otherwise.
    """
    import os
    import time

    from .check import TARGETS, CheckError, load_candidates, load_units, summarize
    from .check import check as run_check
    from .records import write_jsonl_atomic

    if target not in TARGETS:
        fail(f"unknown target {target!r}; available: {', '.join(TARGETS)}")
    if jobs < 0:
        fail("--jobs must be 0 (all cores) or more")
    jobs = jobs or os.cpu_count() or 1
    options: dict = {}
    if no_tests and target != "c-wat":
        options["run_tests"] = False
    if timeout is not None:
        options["timeout_s"] = timeout
    try:
        unit_map = load_units(units) if units else None
        if target == "c-wat":
            mdir = modules or (units.parent / "modules" if units else None)
            if mdir is not None:
                if not mdir.is_dir():
                    fail(f"reference modules folder not found: {mdir}")
                options["modules_dir"] = str(mdir)
        items = load_candidates(path, unit_map)
        if not items:
            fail(f"{path}: no candidates")
        progress = Progress(
            TextColumn(f"[bold]check {target}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[green]{task.fields[ok]}[/] ok · {task.fields[cached]} cached"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            disable=len(items) < 2,
        )
        state = {"ok": 0, "cached": 0}
        t0 = time.monotonic()
        with progress:
            task = progress.add_task("check", total=len(items), ok=0, cached=0)

            def on_progress(done: int, total: int, v) -> None:
                state["ok"] += v.ok
                state["cached"] += v.cached
                progress.update(task, completed=done, ok=state["ok"], cached=state["cached"])

            verdicts = run_check(target, items, jobs=jobs, cache_dir=False if no_cache else cache,
                                 options=options, units=unit_map, progress=on_progress)
        seconds = time.monotonic() - t0
    except CheckError as e:
        fail(str(e))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: verdicts judged so far are cached; run again to resume.")
        raise typer.Exit(130) from None
    from .records import to_dict

    rows = []
    for i, (it, v) in enumerate(zip(items, verdicts, strict=True)):
        rows.append({"index": i, **(it.meta or {}), "verdict": to_dict(v)})
    if out:
        write_jsonl_atomic(out, rows)
    summary = summarize(verdicts, seconds)
    _print_check_summary(target, summary, verdicts if len(verdicts) == 1 else [])
    if not out:
        for r in rows if len(rows) <= 20 else []:
            print(json.dumps(r, ensure_ascii=False, sort_keys=True))
    print(json.dumps(summary, sort_keys=True))
    raise typer.Exit(0 if summary["ok"] == summary["candidates"] else 1)


def _print_check_summary(target: str, s: dict, single: list) -> None:
    t = Table(title=f"codehone check --target {target}", show_header=False)
    t.add_row("candidates", str(s["candidates"]))
    t.add_row("passed", f"[bold green]{s['ok']}[/] ({s['pass_rate'] * 100:.1f}%)")
    t.add_row("compile rate", f"{s['compile_rate'] * 100:.1f}%")
    t.add_row("stage reached", ", ".join(f"{k}={v}" for k, v in s["stages"].items()))
    for k in ("avg_clippy_warnings", "avg_idiomatic_score", "avg_doc_rate", "tests_passed", "tests_failed"):
        if k in s:
            t.add_row(k.replace("_", " "), str(s[k]))
    t.add_row("from cache", str(s["cached"]))
    t.add_row("isolation", ", ".join(s["isolation"]) or "-")
    t.add_row("seconds", f"{s['seconds']} ({s['verdicts_per_s']} verdicts/s)")
    console.print(t)
    for v in single:
        for d in v.diagnostics[:10]:
            where = f"line {d.line}: " if d.line else ""
            console.print(f"  {d.level} [{d.code or '-'}] {where}{d.message}", highlight=False, soft_wrap=True)


@app.command()
def train(
    recipe: Path = typer.Argument(..., help="YAML recipe; its `train:` section is used.", show_default=False),
    sets: list[str] = typer.Option(None, "--set", help="Override a setting, e.g. --set max_steps=50 "
                                   "--set data=out/dataset --set out=out/run (relative to train:; repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from the run folder's last checkpoint."),
    merge: bool = typer.Option(None, "--merge/--no-merge", help="lora: also write a merged model/ folder."),
) -> None:
    """Train from scratch (own BPE tokenizer + Llama-style model), or LoRA/full fine-tune a local HF model.

    Loss on completion tokens only; packing with per-example position ids and a block-diagonal mask;
    too-long examples dropped with a count; eval loss and sample generations every eval_every steps;
    exact --resume; metrics.jsonl, TensorBoard (tb/) and loss.png; a Hugging Face folder at the end.
    """
    from rich.markup import escape

    from .config import ConfigError, load_train_config
    from .train.run import TrainError, run_train

    def say(m: str) -> None:
        console.print(f"[dim]{escape(m)}[/]", soft_wrap=True, highlight=False)

    try:
        cfg = load_train_config(recipe, sets or [])
    except ConfigError as e:
        fail(escape(str(e)))
    progress = Progress(
        TextColumn("[bold]train[/]"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]} · eval {task.fields[ev]} · {task.fields[tps]} tok/s"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
    )
    state: dict = {}

    def factory(total: int, start: int):
        state["task"] = progress.add_task("train", total=total, completed=start, loss="-", ev="-", tps="-")
        progress.start()

        def update(step: int, loss: float, tps: float, ev: float | None) -> None:
            progress.update(state["task"], completed=step, loss=f"{loss:.3f}", tps=f"{tps:,.0f}",
                            ev="-" if ev is None else f"{ev:.3f}")
        return update

    try:
        summary = run_train(cfg, resume=resume, log=lambda m: progress.console.print(
            f"[dim]{escape(m)}[/]", soft_wrap=True, highlight=False) if progress.live.is_started else say(m),
            progress_factory=factory, merge=merge)
    except TrainError as e:
        progress.stop()
        fail(escape(str(e)))
    except KeyboardInterrupt:
        progress.stop()
        console.print("[yellow]interrupted[/]: rerun with --resume to continue from the last checkpoint.")
        raise typer.Exit(130) from None
    except OSError as e:
        progress.stop()
        fail(escape(f"{e.filename or ''}: {e.strerror or e}"))
    progress.stop()
    print(json.dumps(summary))


def run() -> None:  # pragma: no cover
    app(prog_name="codehone")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
