"""What the `codehone` command line prints: progress bars, summary tables and status lines.

It lives apart from cli.py so that what the CLI prints is kept apart from what it does: cli.py parses a
verb's options and calls one stage function; the bars that stage drives and the table printed at its end
are built here. Every function takes the console it prints to. Only rich is imported at module level;
anything heavier (a stage module's formatting helpers) is imported inside the function that needs it,
so the CLI still starts fast.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

# ---------------------------------------------------------------- small helpers


def dim(console: Console) -> Callable[[str], None]:
    """A log callback: each message one dim line, its text never read as markup."""

    def say(m: str) -> None:
        console.print(f"[dim]{escape(m)}[/]", soft_wrap=True, highlight=False)
    return say


def wide(console: Console) -> Console:
    """The console for wide tables: a log file (not a terminal) gets the whole table, not 80 squeezed columns."""
    return console if console.is_terminal else Console(stderr=True, width=220)


def say_for(progress: Progress, console: Console) -> Callable[[str], None]:
    """A log callback that prints above `progress` while it is live, else to `console`."""

    def say(m: str) -> None:
        target = progress.console if progress.live.is_started else console
        target.print(f"[dim]{escape(m)}[/]", soft_wrap=True, highlight=False)
    return say


def compile_label(target: str) -> str:
    from .targets import TargetError, get

    try:
        return get(target).compile_label
    except TargetError:
        return "compile rate"


# ---------------------------------------------------------------- progress bars


@contextmanager
def mine_progress(console: Console) -> Iterator[tuple[Callable[[int], None], Callable[[int, int, int], None]]]:
    """The mine bar, live for the `with` block; yields run_mine's `(on_total, progress)` callbacks."""
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
    t0 = time.monotonic()
    state = {"task": None, "start_done": 0}

    def on_total(n: int) -> None:
        state["task"] = progress.add_task("mine", total=n, units=0, rate="-")

    def on_progress(files: int, units: int, _new: int) -> None:
        if state["task"] is None:
            return
        if state["start_done"] == 0 and files and _new == 0 and time.monotonic() - t0 < 0.5:
            state["start_done"] = files  # files resumed from an earlier run do not count towards the rate
        dt = time.monotonic() - t0
        rate = f"{(files - state['start_done']) / dt:.1f}" if dt > 0 else "-"
        progress.update(state["task"], completed=files, units=units, rate=rate)

    with progress:
        yield on_total, on_progress


@contextmanager
def check_progress(console: Console, target: str, n: int) -> Iterator[Callable]:
    """The check bar over `n` candidates (none for a single one); yields check()'s progress callback."""
    progress = Progress(
        TextColumn(f"[bold]check {target}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[green]{task.fields[ok]}[/] ok · {task.fields[cached]} cached"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=n < 2,
    )
    state = {"ok": 0, "cached": 0}
    with progress:
        task = progress.add_task("check", total=n, ok=0, cached=0)

        def on_progress(done: int, total: int, v) -> None:
            state["ok"] += v.ok
            state["cached"] += v.cached
            progress.update(task, completed=done, ok=state["ok"], cached=state["cached"])

        yield on_progress


@contextmanager
def distill_progress(console: Console) -> Iterator[Callable[[int, int, int], None]]:
    """The distill bar over prompts, with the passing candidates so far."""
    progress = Progress(TextColumn("[bold]distill[/]"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("[green]{task.fields[kept]}[/] passed"), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=console, transient=False)
    state = {"kept": 0}
    with progress:
        task = progress.add_task("distill", total=None, kept=0)

        def on_progress(done: int, total: int, passed: int) -> None:
            state["kept"] += passed
            progress.update(task, completed=done, total=total, kept=state["kept"])

        yield on_progress


def print_distill_summary(console: Console, s: dict) -> None:
    t = Table(title=f"codehone distill → {s['out']}", show_header=False)
    t.add_row("prompts", str(s["prompts"]))
    t.add_row("candidates", str(s["candidates"]))
    t.add_row("passed the judge (kept)", f"{s['passed']} → {s['kept_examples']} distinct examples, "
              f"{s['prompts_with_a_pass']} prompts with a pass")
    t.add_row("rejected", f"{s['rejected']} ({', '.join(f'{k}={v}' for k, v in s['rejected_by_stage'].items()) or '-'})")
    t.add_row("request errors", str(s["request_errors"]))
    tok = s["tokens"]
    t.add_row("teacher tokens", f"{tok['prompt']:,} prompt + {tok['completion']:,} completion"
              + (" (some estimated with cl100k_base)" if tok["estimated"] else ""))
    t.add_row("seconds (this run)", str(s["seconds_this_run"]))
    console.print(t)
    console.print(f"train on it: codehone train RECIPE --set data={s['out']}/data")


@contextmanager
def eval_progress(console: Console) -> Iterator[tuple[Callable[[str, int, int], None], Callable[[str], None]]]:
    """One bar per eval phase (generate, judge), each started on first use so an early error prints no empty
    bar; yields run_eval's `(progress, log)` callbacks and stops the bars when the block ends."""
    progress = Progress(
        TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
    )
    tasks: dict[str, int] = {}

    def on_progress(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            progress.start()
            tasks[phase] = progress.add_task(phase, total=total)
        progress.update(tasks[phase], completed=done, total=total)

    try:
        yield on_progress, dim(progress.console)
    finally:
        progress.stop()


@contextmanager
def train_progress(console: Console) -> Iterator[tuple[Callable, Callable[[str], None]]]:
    """The train bar (loss, eval loss, tokens/s); yields run_train's `(progress_factory, log)` and stops the bar
    when the block ends."""
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
        yield factory, say_for(progress, console)
    finally:
        progress.stop()


def stage_progress(console: Console):
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


@contextmanager
def loop_progress(console: Console) -> Iterator[tuple[Callable, Callable[[str], None]]]:
    """stage_progress for iterate and sweep: yields `(make, say)` and stops the bars when the block ends."""
    progress, make = stage_progress(console)
    try:
        yield make, say_for(progress, console)
    finally:
        progress.stop()


@contextmanager
def export_status(console: Console, to: str) -> Iterator[Callable[[str], None]]:
    """A spinner naming export's current step; yields its log callback (each step also one dim line)."""
    with console.status(f"export {to}") as status:
        def log(m: str) -> None:
            status.update(f"[bold]export {escape(to)}[/]: {escape(m)}")
            console.print(f"[dim]{escape(m)}[/]", soft_wrap=True, highlight=False)

        yield log


# ---------------------------------------------------------------- summaries


def print_mine_summary(console: Console, stats: dict, out: Path, explain: bool) -> None:
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


def print_build_summary(console: Console, stats: dict, out: Path, dt: float) -> None:
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


def print_check_summary(console: Console, target: str, s: dict, single: list) -> None:
    t = Table(title=f"codehone check --target {target}", show_header=False)
    t.add_row("candidates", str(s["candidates"]))
    n = s["candidates"] or 1
    t.add_row("passed the judge", f"[bold green]{s['ok']}[/] ({s['ok'] / n * 100:.1f}%)")
    t.add_row("verified (ran a test or input)", f"{s.get('verified', 0)} ({s['pass_rate'] * 100:.1f}% = pass rate)")
    if s.get("passed_without_running"):
        t.add_row("passed without running anything", f"[yellow]{s['passed_without_running']}[/] (not counted as passes)")
    t.add_row("compile rate", f"{s['compile_rate'] * 100:.1f}%")
    t.add_row("stage reached", ", ".join(f"{k}={v}" for k, v in s["stages"].items()))
    for k in ("avg_clippy_warnings", "avg_warnings", "avg_idiomatic_score", "avg_doc_rate", "tests_passed",
              "tests_failed", "timeouts"):
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


def print_check_results(console: Console, target: str, rows: list[dict], verdicts: list, summary: dict,
                        to_file: bool) -> None:
    """The check table; then, unless the verdicts went to a file, up to 20 verdict rows as JSON lines on stdout;
    then the summary as one JSON line."""
    print_check_summary(console, target, summary, verdicts if len(verdicts) == 1 else [])
    if not to_file:
        for r in rows if len(rows) <= 20 else []:
            print(json.dumps(r, ensure_ascii=False, sort_keys=True))
    print(json.dumps(summary, sort_keys=True))


def print_eval_table(console: Console, m: dict) -> None:
    pct = lambda x: "-" if x is None else f"{x * 100:.1f}%"  # noqa: E731
    t = Table(title=f"codehone eval → {m['out']}", show_header=False)
    t.add_row("model", m["model"])
    t.add_row("split", f"{m['split']} ({m['target']}): {m['prompts']} prompts × n={m['n']} = {m['samples']} samples")
    t.add_row("sampling", f"seed {m['seed']}, temperature {m['temperature']}, top_p {m['top_p']}, "
              f"max {m['max_new_tokens']} new tokens")
    t.add_row(compile_label(m["target"]), pct(m["compile_rate"]))
    for key in sorted((x for x in m if x.startswith("pass@")), key=lambda s: int(s[5:])):
        t.add_row(key, f"[bold green]{pct(m[key])}[/]")
    for mode, b in (m.get("by_mode") or {}).items():
        t.add_row(f"  {mode}", ", ".join(f"{x} {pct(v)}" for x, v in b.items() if x.startswith("pass@"))
                  + f", compile {pct(b['compile_rate'])} ({b['prompts']} prompts)")
    t.add_row("failure stages", ", ".join(f"{s}={c}" for s, c in m["failure_stages"].items()) or "-")
    t.add_row("stopped at EOS", pct(m["stopped_at_eos_rate"]))
    for key in ("passed_without_running", "prompts_unverifiable", "clippy_warnings_per_kloc", "idiomatic_score", "doc_rate",
                "test_pass_rate"):
        if m.get(key) is not None:
            t.add_row(key.replace("_", " "), str(m[key]))
    g, s = m["generation"], m["seconds"]
    t.add_row("generation", f"{g['tokens']} tokens in {s['gen']}s ({g['tokens_per_s'] or '-'} tok/s), "
              f"{g['samples_reused']} samples reused")
    t.add_row("judging", f"{s['judge']}s for {m['judge']['distinct']} distinct ({m['judge']['cached']} cached)")
    console.print(t)


def print_eval_results(console: Console, metrics: dict) -> None:
    """The eval table, then the headline metrics as one JSON line on stdout."""
    print_eval_table(console, metrics)
    print(json.dumps({key: metrics[key] for key in metrics if key.startswith("pass@") or key in (
        "assemble_rate", "compile_rate", "prompts", "samples", "out")}, sort_keys=True))


def round_reporter(say: Callable[[str], None], metric: str) -> Callable[[dict], None]:
    """iterate's on_round callback: one line per finished round (its counts and headline metrics)."""
    from .iterate import fmt

    def on_round(d: dict) -> None:
        m = d.get("metrics") or {}
        c = d.get("counts") or {}
        bits = [f"{k}={fmt(v)}" for k, v in m.items() if k in ("assemble_rate", "pass@1") or k == metric]
        if c:
            bits.insert(0, f"passing {c.get('passing')}/{c.get('samples')}, kept {c.get('kept')}")
        say(f"round {d['round']} done ({d['status']}): " + ", ".join(bits))
    return on_round


def print_iterate_summary(console: Console, summary: dict, out: Path) -> None:
    from .iterate import COLUMNS, fmt

    t = Table(title=f"codehone iterate → {out} ({summary['metric']})")
    k = next((r["k"] for r in summary["rounds"] if r.get("k")), "pass@k")
    for c in COLUMNS:
        t.add_column(k if c == "pass@k" else c, justify="right" if c not in ("init", "status") else "left")
    for r in summary["rounds"]:
        t.add_row(*(fmt(r[c]) for c in COLUMNS))
    wide(console).print(t)
    b = summary["best"]
    console.print(f"best: round {b['round']} ({summary['metric']} {b[summary['metric']]:.4f}) → {b['model']}")
    if summary["stopped"]:
        console.print(f"[yellow]stopped:[/] {escape(summary['stopped'])}", soft_wrap=True, highlight=False)
    print(json.dumps({"rounds": len(summary["rounds"]) - 1, "best": b, "stopped": summary["stopped"]}))


def trial_reporter(say: Callable[[str], None], metric: str) -> Callable[[dict], None]:
    """sweep's on_trial callback: one line per finished trial (its metric and eval loss)."""

    def on_trial(t: dict) -> None:
        m = (t.get("metrics") or {}).get(metric)
        say(f"trial {t['trial']} done ({t['status']}): {metric}={m if m is None else round(m, 4)}, "
            f"eval loss {t.get('eval_loss')}")
    return on_trial


def print_sweep_summary(console: Console, board: dict, params: list[str], out: Path) -> None:
    from .sweep import leaderboard_rows

    head, rows = leaderboard_rows(board, params)
    t = Table(title=f"codehone sweep → {out} (by {board['metric']})")
    for h in head:
        t.add_column(h)
    for r in rows:
        t.add_row(*(escape(x) for x in r))
    wide(console).print(t)
    w = board["winner"]
    if w:
        console.print(f"[bold green]winner:[/] trial {w['trial']} "
                      f"({escape(', '.join(f'{k}={v}' for k, v in w['params'].items()))}) → {w['model']}")
    if board["budget_stop"]:
        console.print(f"[yellow]{escape(board['budget_stop'])}[/]")
    print(json.dumps({"winner": w, "finished": board["finished"], "planned": board["planned"]}))


def print_export_result(console: Console, rec: dict) -> None:
    """The parity verdict in green or red, then the export record as one JSON line on stdout."""
    console.print(("[green]" if rec["parity_passed"] else "[bold red]") + escape(rec["summary"]) + "[/]",
                  soft_wrap=True, highlight=False)
    print(json.dumps({k: rec[k] for k in ("format", "quant", "out", "info", "parity", "seconds")}))
