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
from .targets import DEFAULT as DEFAULT_TARGET
from .targets import NAMES as TARGET_NAMES
from .targets import with_miner

MINE_TARGETS = ", ".join(with_miner())
ALL_TARGETS = ", ".join(TARGET_NAMES)

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
        "With none given, the target's bundled default corpus is mined.",
        show_default=False,
    ),
    out: Path = typer.Option(Path("out/mine"), "-o", "--out", help="Output folder: units.jsonl, stats.json, modules/."),
    target: str = typer.Option(DEFAULT_TARGET, "--target", "-t", help=f"What to mine for. Available: {MINE_TARGETS}."),
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
    limit: int = typer.Option(None, "--limit", help="Mine at most this many files, spread evenly over the tree (for a quick look)."),
    explain: bool = typer.Option(False, "--explain", help="Print the top failure reasons, each with an example."),
    cache: Path = typer.Option(None, "--cache", help="Cache folder for git clones (default ~/.cache/codehone)."),
) -> None:
    """Extract every function, compile each file once in its real context, and write one unit per function.

    Output: OUT/units.jsonl (one unit per function: source, doc, signature, the reference answer,
    provenance), OUT/stats.json (files seen/skipped, functions found/compiled, units, failure reasons,
    seconds) and OUT/modules/ (side files the target's judge needs, such as each file's reference build).
    Kill it at any moment and run it again: it resumes, and every unit is written exactly once.
    """
    from .mine import MineConfig, ToolchainError, collect_sources, default_corpus, run_mine, targets
    from .sources import SourceError, WalkOptions
    from .targets import get

    if target not in targets():
        fail(f"unknown target {target!r}; available: {', '.join(targets())}")
    miner = get(target).miner
    if opt not in ("-O0", "-O1", "-O2", "-O3", "-Os", "-Oz"):
        fail(f"--opt must be one of -O0 -O1 -O2 -O3 -Os -Oz, not {opt!r}")
    try:
        srcs = collect_sources(sources or [], list_file or [], cache=cache)
    except SourceError as e:
        fail(str(e))
    if not srcs:
        srcs = default_corpus(target)
        console.print(f"no sources given: mining the bundled default corpus ({miner.corpus_description}, "
                      f"{srcs[0].root.parent})")
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
        opts=miner.options(opt_level=opt, timeout_s=timeout, include_dirs=list(include or []),
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
    target: str = typer.Option(..., "--target", "-t", help=f"Which judge: {ALL_TARGETS}."),
    jobs: int = typer.Option(0, "-j", "--jobs", help="Cores to judge on, one candidate (or one unit's candidates, "
                             "for a judge that explores the unit first) per core at a time (0 = all cores; "
                             "1 = serial, in this process)."),
    out: Path = typer.Option(None, "-o", "--out", help="Write one verdict per candidate to this JSONL file."),
    units: Path = typer.Option(None, "--units", help="units.jsonl from `codehone mine`, to resolve `unit_id`; "
                               "its sibling modules/ folder holds the reference modules a judge may need."),
    modules: Path = typer.Option(None, "--modules", help="Reference modules folder, for a judge that needs one "
                                 "(default: next to --units)."),
    cache: Path = typer.Option(None, "--cache", help="Verdict cache folder (default ~/.cache/codehone/verdicts; "
                               "safe to delete)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Judge everything afresh and store nothing."),
    no_tests: bool = typer.Option(False, "--no-tests", help="Compile and lint only, skip the file's tests "
                                  "(for judges that run them)."),
    timeout: float = typer.Option(None, "--timeout", help="Seconds allowed per compile step."),
) -> None:
    """Judge candidates in a sandbox: compile, lint, run tests, or execute against the reference.

    Each verdict says ok, the stage reached (parse/compile/lint/test/...), structured diagnostics (code,
    message, line), counts (clippy warnings per lint, tests passed/failed), scores (idiomatic, doc rate),
    timings and the isolation level. Verdicts are cached by content (candidate + target + toolchain +
    options), so a rerun only judges what changed. Exit status: 0 when every candidate passed, 1 otherwise.
    """
    import os
    import time

    from .check import CheckError, load_candidates, load_units, summarize
    from .check import check as run_check
    from .records import write_jsonl_atomic
    from .targets import TargetError, get

    try:
        tgt = get(target)
    except TargetError as e:
        fail(str(e))
    if jobs < 0:
        fail("--jobs must be 0 (all cores) or more")
    jobs = jobs or os.cpu_count() or 1
    options: dict = {}
    if no_tests and tgt.runs_tests:
        options["run_tests"] = False
    if timeout is not None:
        options["timeout_s"] = timeout
    try:
        unit_map = load_units(units) if units else None
        if tgt.needs_modules:
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


@app.command()
def quickstart(
    out: Path = typer.Option(Path("out/quickstart"), "-o", "--out", help="Folder for every stage's output + report."),
    minutes: float = typer.Option(15.0, "--minutes", "-m", help="Total time budget (sizes training and sampling)."),
    jobs: int = typer.Option(0, "-j", "--jobs", help="Parallel workers for mine and the judge (0 = all cores)."),
    mine_limit: int = typer.Option(None, "--mine-limit", help="Mine at most this many files (a faster, smaller run)."),
    seed: int = typer.Option(0, "--seed", help="Seed for training, sampling and the judge's inputs."),
    fresh: bool = typer.Option(False, "--fresh", help="Rerun every stage even when its output is there."),
) -> None:
    """The whole loop of the default target on its bundled corpus, on a CPU: mine → build → train → eval → one
    iterate round.

    Each stage runs as the `codehone` command you could type yourself (they are listed in the report),
    and leaves its output in OUT for reuse with the individual verbs. Ends with OUT/report.md and
    OUT/report.html: what was mined, the dataset card figures, the loss curve, pass rates before and
    after the iterate round, three samples with the judge's verdicts. Rerun to resume after a kill.
    """
    from rich.markup import escape

    from .quickstart import QuickstartError, run_quickstart

    try:
        state = run_quickstart(out, minutes=minutes, jobs=jobs, mine_limit=mine_limit, seed=seed, fresh=fresh,
                               log=lambda m: console.print(f"[bold cyan]{escape(m)}[/]", soft_wrap=True,
                                                           highlight=False))
    except QuickstartError as e:
        fail(escape(str(e)))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: finished stages are kept; run the same command again to resume.")
        raise typer.Exit(130) from None
    console.print(f"[bold green]done[/] in {state['wall_seconds'] / 60:.1f} min: {out / 'report.md'} and "
                  f"{out / 'report.html'}")


def _stage_progress():
    """A rich progress bar factory for the loops: `(what, train=False)` → an eval or a train progress callback."""
    progress = Progress(TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=console, transient=True)

    def make(what: str, train: bool = False):
        if not progress.live.is_started:
            progress.start()
        if train:
            def factory(total: int, start: int):
                task = progress.add_task(what, total=total, completed=start, info="")

                def update(step: int, loss: float, tps: float, ev: float | None) -> None:
                    ev_s = "-" if ev is None else f"{ev:.3f}"
                    progress.update(task, completed=step, info=f"loss {loss:.3f} · eval {ev_s} · {tps:,.0f} tok/s")
                return update
            return factory
        tasks: dict = {}

        def update(phase: str, done: int, total: int) -> None:  # eval's progress: ("generate" | "judge", done, total)
            if phase not in tasks:
                tasks[phase] = progress.add_task(what, total=total, info=phase)
            progress.update(tasks[phase], completed=done, total=total)
        return update
    return progress, make


def _wide() -> Console:
    """The console for wide tables: a log file (not a terminal) gets the whole table, not 80 squeezed columns."""
    return console if console.is_terminal else Console(stderr=True, width=220)


def _say(progress):
    from rich.markup import escape

    def say(m: str) -> None:
        target = progress.console if progress.live.is_started else console
        target.print(f"[dim]{escape(m)}[/]", soft_wrap=True, highlight=False)
    return say


@app.command()
def iterate(
    recipe: Path = typer.Argument(..., help="YAML recipe: its `iterate:` section, and `train:` for the rounds' "
                                  "training.", show_default=False),
    rounds: int = typer.Option(..., "--rounds", "-r", help="Rounds after round 0 (the start model's eval)."),
    sets: list[str] = typer.Option(None, "--set", help="Override a setting, relative to iterate: (k=8, "
                                   "eval.limit=20, iterate.train.max_steps=20 for the rounds' training); "
                                   "train.KEY changes the recipe's train: section (repeatable)."),
    out: Path = typer.Option(None, "-o", "--out", help="Run folder (default: the recipe's train.out + '-iterate')."),
) -> None:
    """Expert iteration: sample k completions per train prompt, keep what the judge passes, fine-tune, evaluate.

    Each round writes OUT/round-NN/ (samples/, data/, train/, eval/, round.json). Round 0 evaluates the
    start model. Stops after --rounds, on a plateau of the metric, or on a round with no passing samples.
    Kill it at any time and rerun the same command: finished rounds are kept, a half-done one is redone.
    Writes OUT/rounds.json, rounds.md and rounds.png.
    """
    from rich.markup import escape

    from .config import ConfigError
    from .iterate import COLUMNS, IterateError, fmt, run_iterate
    from .iterate_config import load_iterate_config

    try:
        cfg, base = load_iterate_config(recipe, sets or [])
    except ConfigError as e:
        fail(escape(str(e)))
    out = out or Path(f"{base.out}-iterate")
    progress, make = _stage_progress()
    say = _say(progress)

    def on_round(d: dict) -> None:
        m = d.get("metrics") or {}
        c = d.get("counts") or {}
        bits = [f"{k}={fmt(v)}" for k, v in m.items() if k in ("assemble_rate", "pass@1") or k == cfg.metric]
        if c:
            bits.insert(0, f"passing {c.get('passing')}/{c.get('samples')}, kept {c.get('kept')}")
        say(f"round {d['round']} done ({d['status']}): " + ", ".join(bits))

    try:
        summary = run_iterate(cfg, base, out, rounds, log=say, progress=make, on_round=on_round)
    except (IterateError, ConfigError, ValueError) as e:
        progress.stop()
        fail(escape(str(e)))
    except KeyboardInterrupt:
        progress.stop()
        console.print("[yellow]interrupted[/]: finished rounds are kept; run the same command again to resume.")
        raise typer.Exit(130) from None
    progress.stop()
    t = Table(title=f"codehone iterate → {out} ({summary['metric']})")
    k = next((r["k"] for r in summary["rounds"] if r.get("k")), "pass@k")
    for c in COLUMNS:
        t.add_column(k if c == "pass@k" else c, justify="right" if c not in ("init", "status") else "left")
    for r in summary["rounds"]:
        t.add_row(*(fmt(r[c]) for c in COLUMNS))
    _wide().print(t)
    b = summary["best"]
    console.print(f"best: round {b['round']} ({summary['metric']} {b[summary['metric']]:.4f}) → {b['model']}")
    if summary["stopped"]:
        console.print(f"[yellow]stopped:[/] {escape(summary['stopped'])}", soft_wrap=True, highlight=False)
    print(json.dumps({"rounds": len(summary["rounds"]) - 1, "best": b, "stopped": summary["stopped"]}))


@app.command()
def sweep(
    recipe: Path = typer.Argument(..., help="YAML recipe; its `train:` section is the starting point.",
                                  show_default=False),
    sweep_file: Path = typer.Option(None, "--sweep", "-s", help="SWEEP.yaml: method, params, trials, "
                                    "budget_minutes, metric, eval (default: the recipe's `sweep:` section)."),
    sets: list[str] = typer.Option(None, "--set", help="Override a train: setting for every trial (repeatable)."),
    out: Path = typer.Option(None, "-o", "--out", help="Sweep folder (default: the recipe's train.out + '-sweep')."),
) -> None:
    """Grid or random search over train: settings; every trial is trained AND evaluated by execution.

    Trials go to OUT/trial-NN/ (train/, eval/, trial.json). The leaderboard (OUT/leaderboard.md and .json) is
    sorted by the sweep's metric (default pass@1), ties broken by the lower eval loss, and names the winner.
    budget_minutes stops starting new trials. Kill it and rerun the same command: finished trials are kept.
    """
    from rich.markup import escape

    from .config import ConfigError, load_train_config
    from .iterate_config import load_sweep_config
    from .sweep import SweepError, leaderboard_rows, run_sweep

    try:
        cfg = load_sweep_config(recipe, sweep_file)
        base = load_train_config(recipe, sets or [])
    except ConfigError as e:
        fail(escape(str(e)))
    out = out or Path(f"{base.out}-sweep")
    progress, make = _stage_progress()
    say = _say(progress)

    def on_trial(t: dict) -> None:
        m = (t.get("metrics") or {}).get(cfg.metric)
        say(f"trial {t['trial']} done ({t['status']}): {cfg.metric}={m if m is None else round(m, 4)}, "
            f"eval loss {t.get('eval_loss')}")

    try:
        board = run_sweep(recipe, cfg, out, sets or [], log=say, progress=make, on_trial=on_trial)
    except (SweepError, ConfigError, ValueError) as e:
        progress.stop()
        fail(escape(str(e)))
    except KeyboardInterrupt:
        progress.stop()
        console.print("[yellow]interrupted[/]: finished trials are kept; run the same command again to resume.")
        raise typer.Exit(130) from None
    progress.stop()
    head, rows = leaderboard_rows(board, list(cfg.params))
    t = Table(title=f"codehone sweep → {out} (by {board['metric']})")
    for h in head:
        t.add_column(h)
    for r in rows:
        t.add_row(*(escape(x) for x in r))
    _wide().print(t)
    w = board["winner"]
    if w:
        console.print(f"[bold green]winner:[/] trial {w['trial']} "
                      f"({escape(', '.join(f'{k}={v}' for k, v in w['params'].items()))}) → {w['model']}")
    if board["budget_stop"]:
        console.print(f"[yellow]{escape(board['budget_stop'])}[/]")
    print(json.dumps({"winner": w, "finished": board["finished"], "planned": board["planned"]}))


@app.command()
def serve(
    model: Path = typer.Argument(..., help="An HF folder, a PEFT adapter, a `codehone train` output folder, "
                                 "or an ONNX/GGUF export (with --backend).", show_default=False),
    backend: str = typer.Option("hf", "--backend", "-b", help="hf, onnx or gguf (the last two: `codehone export`)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; loopback unless you mean otherwise."),
    port: int = typer.Option(8000, "--port", "-p", help="TCP port."),
    api_key: str = typer.Option(None, "--api-key", envvar="CODEHONE_API_KEY",
                                help="Require `Authorization: Bearer KEY` on /v1/* (env CODEHONE_API_KEY)."),
    name: str = typer.Option(None, "--name", help="Model id reported by /v1/models (default: the folder name)."),
    max_tokens: int = typer.Option(1024, "--max-tokens", help="Cap on a request's max_tokens (400 above it)."),
    max_request_kb: int = typer.Option(1024, "--max-request-kb", help="Largest request body in KiB (413 above it)."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds a request may take, queueing included (408)."),
    max_queue: int = typer.Option(16, "--max-queue", help="Requests waiting at most (429 when full)."),
    max_batch: int = typer.Option(8, "--max-batch", help="Requests generated together in one batch (hf)."),
    threads: int = typer.Option(0, "--threads", help="torch CPU threads (0 = the cores the load average "
                                "leaves free; on a shared CPU extra threads cost far more than they give)."),
) -> None:
    """An OpenAI-compatible API: /v1/chat/completions and /v1/completions (stream=true for SSE), /v1/models, /health.

    Chat prompts are rendered with the model's saved chat template. Concurrent requests queue for one
    generation worker; requests waiting together are generated as one batch (hf backend).
    """
    from .serve import ServeError
    from .serve.api import Limits, create_app
    from .serve.backends import load_backend

    if threads < 0 or max_tokens < 1 or max_request_kb < 1 or timeout <= 0 or max_queue < 1 or max_batch < 1:
        fail("--threads must be >= 0; --max-tokens, --max-request-kb, --max-queue, --max-batch >= 1; --timeout > 0")
    n_threads = _set_threads(threads)
    try:
        be = load_backend(model, backend, n_threads)
    except ServeError as e:
        fail(str(e))
    import uvicorn

    limits = Limits(max_request_bytes=max_request_kb * 1024, max_tokens=max_tokens, timeout_s=timeout,
                    max_queue=max_queue, max_batch=max_batch)
    mid = name or (model.name if model.name not in ("model", "adapter") else model.parent.name) or "codehone"
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        console.print(f"[yellow]warning:[/] listening on {host} without an API key", highlight=False)
    console.print(f"serving [bold]{mid}[/] ({backend}) on http://{host}:{port}/v1", highlight=False)
    uvicorn.run(create_app(be, mid, limits, api_key), host=host, port=port, log_level="warning")


def _set_threads(n: int) -> int:
    """0 = the cores the load average leaves free (eval's rule): torch's spinning thread pool on a busy CPU
    measured 1.6 tok/s with 2 threads vs 150 tok/s with 1 (tiny model, 2 cores, load 8)."""
    import torch

    from .sampling import cpu_threads

    n = n or cpu_threads()
    torch.set_num_threads(n)
    return n


@app.command()
def mcp(
    model: Path = typer.Argument(..., help="An HF folder, a PEFT adapter, a `codehone train` output folder, "
                                 "or an ONNX/GGUF export (with --backend).", show_default=False),
    transport: str = typer.Option("stdio", "--transport", help="stdio, or http (streamable HTTP at /mcp)."),
    target: str = typer.Option(DEFAULT_TARGET, "--target", "-t", help=f"Default target of the tools: {ALL_TARGETS}."),
    units: Path = typer.Option(None, "--units", help="units.jsonl or a `codehone mine` folder: the units a judge "
                               "compares against (its modules/ folder beside it) and, without --docs, the docs "
                               "index source."),
    docs: Path = typer.Option(None, "--docs", help="Docs index for get_docs: a units.jsonl / mine folder "
                              "(indexed once, cached under ~/.cache/codehone/docs) or an index folder."),
    backend: str = typer.Option("hf", "--backend", "-b", help="hf, onnx or gguf."),
    host: str = typer.Option("127.0.0.1", "--host", help="http: address to bind."),
    port: int = typer.Option(8001, "--port", "-p", help="http: TCP port."),
    max_tokens: int = typer.Option(512, "--max-tokens", help="Most tokens one generation may produce."),
    threads: int = typer.Option(0, "--threads", help="torch CPU threads (0 = the cores the load average leaves free)."),
) -> None:
    """An MCP server (official SDK): generate, check, suggest_fix (verified fixes only), get_docs. Stateless calls."""
    from .check import CheckError, load_units
    from .serve import ServeError
    from .serve.backends import load_backend
    from .serve.docs_index import DocsIndex, units_file
    from .serve.mcp_server import Toolbox, build_server
    from .serve.prompts import check_target

    if transport not in ("stdio", "http"):
        fail("--transport must be stdio or http")
    n_threads = _set_threads(threads)
    try:
        check_target(target)
        unit_map, modules_dir = {}, None
        if units is not None:
            uf = units_file(units)
            unit_map, modules_dir = load_units(uf), uf.parent / "modules"
        index = DocsIndex.open(docs or (units if units is not None else None)) if (docs or units) else None
        tb = Toolbox(load_backend(model, backend, n_threads), target=target, units=unit_map, modules_dir=modules_dir,
                     docs=index, max_tokens=max_tokens)
    except (ServeError, CheckError) as e:
        fail(str(e))
    server = build_server(tb)
    console.print(f"codehone mcp: {len(unit_map)} units, docs {'on' if index else 'off'}, transport {transport}"
                  + (f" at http://{host}:{port}/mcp" if transport == "http" else ""), highlight=False)
    if transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=host, port=port, stateless_http=True)


@app.command()
def chat(
    model: Path = typer.Argument(..., help="An HF folder, a PEFT adapter, a `codehone train` output folder, "
                                 "or an ONNX/GGUF export (with --backend).", show_default=False),
    prompt: str = typer.Option(None, "--prompt", help="One shot: print the reply to this message and exit."),
    target: str = typer.Option(DEFAULT_TARGET, "--target", "-t", help=f"The target /check judges: {ALL_TARGETS}."),
    units: Path = typer.Option(None, "--units", help="units.jsonl or a mine folder, for /check on a target whose "
                               "judge needs the unit."),
    system: str = typer.Option(None, "--system", help="System message (default: the target's; '' for none)."),
    backend: str = typer.Option("hf", "--backend", "-b", help="hf, onnx or gguf."),
    max_tokens: int = typer.Option(256, "--max-tokens", help="Most tokens per reply."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy."),
    threads: int = typer.Option(0, "--threads", help="torch CPU threads (0 = the cores the load average leaves free)."),
) -> None:
    """Chat with the model in the terminal (history kept; /check judges the last code block, /reset, /exit)."""
    from .check import CheckError, load_units
    from .serve import ServeError
    from .serve.backends import load_backend
    from .serve.chat import ChatSession, repl
    from .serve.docs_index import units_file
    from .serve.mcp_server import Toolbox
    from .serve.prompts import check_target

    if max_tokens < 1 or not 0 <= temperature <= 2:
        fail("--max-tokens must be >= 1 and --temperature within 0..2")
    n_threads = _set_threads(threads)
    try:
        check_target(target)
        unit_map, modules_dir = {}, None
        if units is not None:
            uf = units_file(units)
            unit_map, modules_dir = load_units(uf), uf.parent / "modules"
        tb = Toolbox(load_backend(model, backend, n_threads), target=target, units=unit_map, modules_dir=modules_dir,
                     max_tokens=max_tokens)
        session = ChatSession(tb, max_tokens=max_tokens, temperature=temperature, system=system)
        if prompt is not None:
            c = session.send(prompt)
            print(c.text)
            return
    except (ServeError, CheckError) as e:
        fail(str(e))

    def write(s: str) -> None:
        sys.stdout.write(s)
        sys.stdout.flush()

    repl(session, input, write, lambda m: console.print(m, style="dim", highlight=False, markup=False))


@app.command()
def export(
    model: Path = typer.Argument(..., help="An HF model folder, a LoRA adapter folder, or a `codehone train` "
                                 "run folder (its model/ or adapter/ is used).", show_default=False),
    to: str = typer.Option(..., "--to", help="merged | int8 | onnx | gguf", show_default=False),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder (written whole at the end).",
                             show_default=False),
    quant: str = typer.Option(None, "--quant", help="gguf only: f16 | q8_0 | q4_k_m (default q8_0)."),
    llama_cpp: Path = typer.Option(None, "--llama-cpp", help="gguf: a llama.cpp checkout or a llama-cpp-python "
                                   "sdist (.tar.gz) holding convert_hf_to_gguf.py; default: the installed "
                                   "llama-cpp-python's sdist, cached in ~/.cache/codehone/llama.cpp/."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
    parity_tokens: int = typer.Option(32, "--parity-tokens", help="Greedy tokens compared per parity prompt."),
) -> None:
    """Export a model to merged HF, int8 (torch dynamic), ONNX (with KV cache) or GGUF (llama.cpp).

    Every format keeps the tokenizer, chat template and EOS, writes OUT/README.md (a model card) and
    ends with a parity check against the source on fixed prompts (max |logit diff| and greedy tokens),
    printed and stored as OUT/parity.json. Exit code 1 when the export was written but parity failed.
    """
    from rich.markup import escape
    from transformers.utils import logging as hf_logging

    from .export import export as run_export
    from .export.runtime import RuntimeLoadError
    from .export.source import ExportError

    hf_logging.disable_progress_bar()  # per-file loading bars would bury the export's own lines
    with console.status(f"export {to}") as status:
        def log(m: str) -> None:
            status.update(f"[bold]export {escape(to)}[/]: {escape(m)}")
            console.print(f"[dim]{escape(m)}[/]", soft_wrap=True, highlight=False)

        try:
            rec = run_export(model, to, out, quant=quant, llama_cpp=llama_cpp, overwrite=overwrite,
                             parity_tokens=parity_tokens, log=log)
        except (ExportError, RuntimeLoadError) as e:
            fail(escape(str(e)))
        except OSError as e:
            fail(escape(f"{e.filename or ''}: {e.strerror or e}"))
    console.print(("[green]" if rec["parity_passed"] else "[bold red]") + escape(rec["summary"]) + "[/]",
                  soft_wrap=True, highlight=False)
    print(json.dumps({k: rec[k] for k in ("format", "quant", "out", "info", "parity", "seconds")}))
    if not rec["parity_passed"]:
        raise typer.Exit(1)


@app.command("eval")
def eval_(
    model: Path = typer.Argument(..., help="A Hugging Face model folder, a PEFT adapter folder, or a "
                                 "`codehone train` output folder (its model/, else adapter/).", show_default=False),
    dataset: Path = typer.Option(..., "--dataset", "-d", help="A `codehone build` output folder."),
    split: str = typer.Option("test", "--split", help="Which split's prompts to sample."),
    k: int = typer.Option(1, "-k", help="Report pass@1 and pass@K."),
    n: int = typer.Option(None, "-n", help="Samples per prompt (default K; must be >= K)."),
    limit: int = typer.Option(None, "--limit", help="Only the first N prompts of the split."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed: the same model and seed give the same samples."),
    temperature: float = typer.Option(None, "--temperature", help="0 = greedy (default for n=1; 0.8 for n>1)."),
    top_p: float = typer.Option(0.95, "--top-p", help="Nucleus sampling mass."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", help="Tokens generated at most per sample."),
    batch_size: int = typer.Option(8, "--batch-size", help="Sequences generated together."),
    jobs: int = typer.Option(0, "-j", "--jobs", help="Samples judged in parallel (0 = all cores)."),
    modules: Path = typer.Option(None, "--modules", help="Reference modules folder, for a judge that needs one "
                                 "(default: the mine folder's modules/, found through the dataset's stats.json)."),
    out: Path = typer.Option(None, "-o", "--out", help="Output folder (default MODEL/eval/SPLIT-seedS-nN)."),
    no_history: bool = typer.Option(False, "--no-history", help="Do not append to MODEL/history.jsonl."),
) -> None:
    """Sample a model on a dataset split, judge every sample by execution, and report pass@k.

    Prompts go through the model's own chat template; generation is batched with the KV cache.
    The code (first fenced block, else the reply) is judged by the target's judge in parallel,
    with the verdict cache. Writes OUT/samples.jsonl (prompt, completion, code, verdict per sample)
    and OUT/metrics.json (assemble/compile rate, pass@1, pass@K, failure stages, EOS rate...),
    and appends to MODEL/history.jsonl with a plot in history.png. A killed run resumes: the
    completions already generated (OUT/generations.jsonl) are reused.
    """
    import os

    from rich.markup import escape

    from .evaluate import EvalError, run_eval

    progress = Progress(
        TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
    )
    tasks: dict[str, int] = {}

    def on_progress(phase: str, done: int, total: int) -> None:
        if phase not in tasks:  # started on first use, so an early error prints no empty bar
            progress.start()
            tasks[phase] = progress.add_task(phase, total=total)
        progress.update(tasks[phase], completed=done, total=total)

    def say(m: str) -> None:
        progress.console.print(f"[dim]{escape(m)}[/]", soft_wrap=True, highlight=False)

    if jobs < 0:
        fail("--jobs must be 0 (all cores) or more")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the weight-loading bar of a 5M model is noise here
    # generate() warns when a left-padded batch is wider than the context, although each row stops
    # within its own (sampling.RowLimit); a warning about every batch would be noise too.
    hf_logging.set_verbosity_error()
    try:
        try:
            metrics = run_eval(model, dataset, split=split, k=k, n=n, limit=limit, seed=seed,
                               temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                               batch_size=batch_size, jobs=jobs or os.cpu_count() or 1, modules=modules, out=out,
                               history=not no_history, log=say, progress=on_progress)
        finally:
            progress.stop()
    except EvalError as e:
        fail(escape(str(e)))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: completions generated so far are kept; rerun to resume.")
        raise typer.Exit(130) from None
    except OSError as e:
        fail(escape(f"{e.filename or ''}: {e.strerror or e}"))
    _print_eval_table(metrics)
    print(json.dumps({key: metrics[key] for key in metrics if key.startswith("pass@") or key in (
        "assemble_rate", "compile_rate", "prompts", "samples", "out")}, sort_keys=True))


def _compile_label(target: str) -> str:
    from .targets import TargetError, get

    try:
        return get(target).compile_label
    except TargetError:
        return "compile rate"


def _print_eval_table(m: dict) -> None:
    pct = lambda x: "-" if x is None else f"{x * 100:.1f}%"  # noqa: E731
    t = Table(title=f"codehone eval → {m['out']}", show_header=False)
    t.add_row("model", m["model"])
    t.add_row("split", f"{m['split']} ({m['target']}): {m['prompts']} prompts × n={m['n']} = {m['samples']} samples")
    t.add_row("sampling", f"seed {m['seed']}, temperature {m['temperature']}, top_p {m['top_p']}, "
              f"max {m['max_new_tokens']} new tokens")
    t.add_row(_compile_label(m["target"]), pct(m["compile_rate"]))
    for key in sorted((x for x in m if x.startswith("pass@")), key=lambda s: int(s[5:])):
        t.add_row(key, f"[bold green]{pct(m[key])}[/]")
    for mode, b in (m.get("by_mode") or {}).items():
        t.add_row(f"  {mode}", ", ".join(f"{x} {pct(v)}" for x, v in b.items() if x.startswith("pass@"))
                  + f", compile {pct(b['compile_rate'])} ({b['prompts']} prompts)")
    t.add_row("failure stages", ", ".join(f"{s}={c}" for s, c in m["failure_stages"].items()) or "-")
    t.add_row("stopped at EOS", pct(m["stopped_at_eos_rate"]))
    for key in ("passed_without_execution", "clippy_warnings_per_kloc", "idiomatic_score", "doc_rate",
                "test_pass_rate"):
        if m.get(key) is not None:
            t.add_row(key.replace("_", " "), str(m[key]))
    g, s = m["generation"], m["seconds"]
    t.add_row("generation", f"{g['tokens']} tokens in {s['gen']}s ({g['tokens_per_s'] or '-'} tok/s), "
              f"{g['samples_reused']} samples reused")
    t.add_row("judging", f"{s['judge']}s for {m['judge']['distinct']} distinct ({m['judge']['cached']} cached)")
    console.print(t)


def run() -> None:  # pragma: no cover
    app(prog_name="codehone")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
