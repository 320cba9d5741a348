"""The `codehone` command line: one thin verb per stage; the work lives in the stage modules."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from . import __version__
from . import cli_display as show
from .errors import bind_socket, check_output_dir, check_output_file, check_port, check_range, describe
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


WEAK_HELP = ("Run generated code even where no real sandbox (bubblewrap) exists, with a network namespace or "
             "rlimits only: the code can then read host files and fork. Recorded in every verdict.")


def _weak(allow: bool) -> None:
    """--allow-weak-isolation: the user accepts the risk, for this process and every worker it starts."""
    if allow:
        from .sandbox import allow_weak_isolation

        allow_weak_isolation()


def fail(msg: str, code: int = 2) -> None:
    """One clear line, no traceback."""
    console.print(f"[bold red]error:[/] {msg}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


EXECUTOR_HELP = ("Where the workers run: local (a process pool on this machine) or ray (a Ray cluster: "
                 "--ray-address, else RAY_ADDRESS, else a local Ray instance). Needs pip install 'codehone[scale]'.")
RAY_ADDRESS_HELP = "The Ray cluster to join (e.g. ray://head:10001 or auto); with --executor ray."


def _executor(kind: str, address: str | None) -> None:
    """Choose the executor for this run, or fail in one line (Ray missing, a cluster out of reach)."""
    from .executors import EXECUTORS, use
    from .executors.ray_pool import RayUnavailable

    if kind not in EXECUTORS:
        fail(f"--executor must be one of {', '.join(EXECUTORS)}, not {kind!r}")
    if address and kind != "ray":
        fail("--ray-address needs --executor ray")
    try:
        use(kind, address)
    except RayUnavailable as e:
        fail(str(e))


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
    memory_mb: int = typer.Option(2048, "--memory-mb", help="Address-space limit of each compiler process, in MiB "
                                  "(a file that needs more fails as out_of_memory)."),
    executor: str = typer.Option("local", "--executor", help=EXECUTOR_HELP),
    ray_address: str = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
) -> None:
    """Extract every function, compile each file once in its real context, and write one unit per function.

    Output: OUT/units.jsonl (one unit per function: source, doc, signature, the reference answer,
    provenance), OUT/stats.json (files seen/skipped, functions found/compiled, units, failure reasons,
    seconds) and OUT/modules/ (side files the target's judge needs, such as each file's reference build).
    Kill it at any moment and run it again: it resumes, and every unit is written exactly once.
    """
    from .mine import MineConfig, ToolchainError, collect_sources, default_corpus, run_mine
    from .sources import SourceError, WalkOptions
    from .targets import get

    if target not in with_miner():
        fail(f"unknown target {target!r}; available: {MINE_TARGETS}")
    miner = get(target).miner
    if opt not in ("-O0", "-O1", "-O2", "-O3", "-Os", "-Oz"):
        fail(f"--opt must be one of -O0 -O1 -O2 -O3 -Os -Oz, not {opt!r}")
    check_range("--jobs", jobs, 0, 4096, "0 = all cores")
    check_range("--max-kb", max_kb, 1, 10 ** 7, "KiB")
    check_range("--timeout", timeout, 0.1, 86400, "seconds")
    check_range("--memory-mb", memory_mb, 64, 10 ** 7, "MiB per compiler process")
    check_range("--limit", limit, 0)
    check_output_dir(out)
    try:
        srcs = collect_sources(sources or [], list_file or [], cache=cache)
    except SourceError as e:
        fail(str(e))
    if not srcs:
        srcs = default_corpus(target)
        console.print(f"no sources given: mining the bundled default corpus ({miner.corpus_description}, "
                      f"{srcs[0].root.parent})")
    walk = WalkOptions(max_bytes=max_kb * 1024, include_tests=include_tests, include_benches=include_benches,
                       include_examples=include_examples, include_vendor=include_vendor)
    opts = miner.options(opt_level=opt, timeout_s=timeout, include_dirs=list(include or []), defines=list(define or []),
                         memory_mb=memory_mb)
    cfg = MineConfig(target=target, jobs=jobs, walk=walk, opts=opts, limit_files=limit)
    _executor(executor, ray_address)
    try:
        with show.mine_progress(console) as (on_total, on_progress):
            stats = run_mine(srcs, out, cfg, progress=on_progress, on_total=on_total,
                             on_status=lambda m: console.print(f"[dim]{m}[/]"))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: what was mined is saved; run the same command again to resume.")
        raise typer.Exit(130) from None
    except (ToolchainError, SourceError) as e:
        fail(escape(str(e)))
    show.print_mine_summary(console, stats, out, explain)


@app.command()
def corpus(
    action: str = typer.Argument(..., help="fetch: download and unpack every package of the list into the cache.",
                                 show_default=False),
    list_file: Path = typer.Option(None, "-l", "--list", help="Corpus list: one Debian source package a line, "
                                   "optionally with -I DIR / -D MACRO (default: recipes/corpus-c.txt)."),
    cache: Path = typer.Option(None, "--cache", help="Cache folder (default ~/.cache/codehone/corpus)."),
    timeout: float = typer.Option(900.0, "--timeout", help="Seconds allowed to download or unpack one package."),
) -> None:
    """Fetch a corpus of real C libraries from Debian source packages (`apt-get source`), cached and resumable.

    Each package is unpacked into CACHE/PACKAGE (skipped when already there), then CACHE/sources.txt
    is written: a list file for `codehone mine -l`. Needs a deb-src entry in apt's sources, not root.
    """
    from rich.table import Table

    from .corpus import DEFAULT_LIST, CorpusError, default_corpus_cache, fetch, parse_list

    if action != "fetch":
        fail(f"unknown action {action!r}; available: fetch")
    check_range("--timeout", timeout, 1, 86400, "seconds")
    cache = cache or default_corpus_cache()
    check_output_dir(cache, "--cache")
    try:
        entries = parse_list(list_file or DEFAULT_LIST)

        def on_result(i: int, r) -> None:
            what = f"{r.version}, {r.files} C files" if r.status != "failed" else escape(r.error)
            color = {"fetched": "green", "cached": "dim", "failed": "red"}[r.status]
            console.print(f"[{i + 1}/{len(entries)}] {r.package}: [{color}]{r.status}[/] ({what})",
                          soft_wrap=True, highlight=False)

        results, sources = fetch(entries, cache, on_result=on_result, timeout=timeout)
    except CorpusError as e:
        fail(escape(str(e)))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: unpacked packages are kept; run the same command again to resume.")
        raise typer.Exit(130) from None
    t = Table(title=f"codehone corpus fetch → {cache}")
    for col in ("package", "version", "C files", "status"):
        t.add_column(col)
    for r in results:
        t.add_row(r.package, r.version, str(r.files), r.status if r.status != "failed" else f"failed: {r.error}")
    console.print(t)
    failed = sum(r.status == "failed" for r in results)
    console.print(f"{len(results) - failed} of {len(results)} packages ready; mine them with: "
                  f"codehone mine -l {sources}", soft_wrap=True, highlight=False)
    raise typer.Exit(1 if failed else 0)


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

    from .config import ConfigError, load_build_config
    from .dataset import BuildError, run_build

    try:
        cfg = load_build_config(recipe, sets or [])
        t0 = time.monotonic()
        stats = run_build(units or [], out, cfg, force=force,
                          log=lambda m: console.print(f"[yellow]note:[/] {escape(m)}", soft_wrap=True, highlight=False))
    except (ConfigError, BuildError) as e:  # one line however long (paths), and no markup read from the message
        fail(escape(str(e)))
    except OSError as e:
        fail(escape(f"{e.filename or ''}: {e.strerror or e}"))
    show.print_build_summary(console, stats, out, time.monotonic() - t0)


@app.command()
def check(
    path: Path = typer.Argument(None, help="One candidate source file, or a SAMPLES.jsonl with one "
                                "{\"candidate\": ..., \"unit_id\"/\"unit\": ...} object per line. Omitted with "
                                "--units: every unit's own artifact is judged (the unit contract).",
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
    allow_weak_isolation: bool = typer.Option(False, "--allow-weak-isolation", help=WEAK_HELP),
    executor: str = typer.Option("local", "--executor", help=EXECUTOR_HELP),
    ray_address: str = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
) -> None:
    """Judge candidates in a sandbox: compile, lint, run tests, or execute against the reference.

    Each verdict says ok, the stage reached (parse/compile/lint/test/...), structured diagnostics (code,
    message, line), counts (clippy warnings per lint, tests passed/failed), scores (idiomatic, doc rate),
    timings and the isolation level. Verdicts are cached by content (candidate + target + toolchain +
    options), so a rerun only judges what changed. Exit status: 0 when every candidate passed, 1 otherwise.
    `codehone check -t T --units OUT/units.jsonl` (no PATH) checks the unit contract: every unit's
    artifact, the reference answer, must pass its own judge.
    """
    import os
    import time

    from .check import CheckError, Item, load_candidates, load_units, summarize
    from .check import check as run_check
    from .targets import TargetError, get

    try:
        tgt = get(target)
    except TargetError as e:
        fail(str(e))
    check_range("--jobs", jobs, 0, 4096, "0 = all cores")
    check_range("--timeout", timeout, 0.1, 86400, "seconds")
    if out is not None:
        check_output_file(out)
    _weak(allow_weak_isolation)
    _executor(executor, ray_address)
    try:
        unit_map = load_units(units) if units else None
        options = _judge_options(tgt, no_tests, timeout, units, modules)
        if path is None:
            if not unit_map:
                fail("give candidates (a file or SAMPLES.jsonl), or --units OUT/units.jsonl to judge every unit's "
                     "own artifact")
            items = [Item(candidate=u.get("artifact") or "", unit=u) for u in unit_map.values()]
        else:
            items = load_candidates(path, unit_map)
        if not items:
            fail(f"{path or units}: no candidates")
        t0 = time.monotonic()
        with show.check_progress(console, target, len(items)) as on_progress:
            verdicts = run_check(target, items, jobs=jobs or os.cpu_count() or 1,
                                 cache_dir=False if no_cache else cache, options=options, units=unit_map,
                                 progress=on_progress)
        seconds = time.monotonic() - t0
    except CheckError as e:
        fail(str(e))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: verdicts judged so far are cached; run again to resume.")
        raise typer.Exit(130) from None
    rows = _verdict_rows(items, verdicts, out)
    summary = summarize(verdicts, seconds)
    show.print_check_results(console, target, rows, verdicts, summary, to_file=bool(out))
    raise typer.Exit(0 if summary["ok"] == summary["candidates"] else 1)


def _judge_options(tgt, no_tests: bool, timeout: float | None, units: Path | None, modules: Path | None) -> dict:
    """check's options for the judge: --no-tests, --timeout, and the reference modules folder if it needs one."""
    options: dict = {}
    if no_tests and tgt.runs_tests:
        options["run_tests"] = False
    if timeout is not None:
        options["timeout_s"] = timeout
    if tgt.needs_modules:
        mdir = modules or (units.parent / "modules" if units else None)
        if mdir is not None:
            if not mdir.is_dir():
                fail(f"reference modules folder not found: {mdir}")
            options["modules_dir"] = str(mdir)
    return options


def _verdict_rows(items: list, verdicts: list, out: Path | None) -> list[dict]:
    """One row per candidate (its index, its meta, its verdict), written to OUT when given.

    The file leaves out each verdict's timings and cache flag, as eval's samples do: they differ
    between identical runs, and a run resumed from the verdict cache must write the same bytes as
    a fresh one. The summary line keeps the seconds and the cache count.
    """
    from .records import to_dict, write_jsonl_atomic

    rows = [{"index": i, **(it.meta or {}), "verdict": to_dict(v)}
            for i, (it, v) in enumerate(zip(items, verdicts, strict=True))]
    if out:
        stable = [{**r, "verdict": {k: x for k, x in r["verdict"].items() if k not in ("timings", "cached")}}
                  for r in rows]
        write_jsonl_atomic(out, stable)
    return rows


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
    Data-parallel on several processes under `torchrun --nproc_per_node N -m codehone train ...` or
    `accelerate launch`: the same global batch whatever N, rank 0 alone writes.
    """
    from .config import ConfigError, load_train_config
    from .train.distributed import is_main_process
    from .train.run import TrainError, run_train

    try:
        cfg = load_train_config(recipe, sets or [])
    except ConfigError as e:
        fail(escape(str(e)))
    try:
        if not is_main_process():  # torchrun/accelerate: rank 0 alone draws and prints
            run_train(cfg, resume=resume, log=lambda m: None, merge=merge)
            return
        with show.train_progress(console) as (factory, log):
            summary = run_train(cfg, resume=resume, log=log, progress_factory=factory, merge=merge)
    except TrainError as e:
        fail(escape(str(e)))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: rerun with --resume to continue from the last checkpoint.")
        raise typer.Exit(130) from None
    except OSError as e:
        fail(escape(f"{e.filename or ''}: {e.strerror or e}"))
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


@app.command()
def iterate(
    recipe: Path = typer.Argument(..., help="YAML recipe: its `iterate:` section, and `train:` for the rounds' "
                                  "training.", show_default=False),
    rounds: int = typer.Option(..., "--rounds", "-r", help="Rounds after round 0 (the start model's eval)."),
    sets: list[str] = typer.Option(None, "--set", help="Override a setting, relative to iterate: (k=8, "
                                   "eval.limit=20, iterate.train.max_steps=20 for the rounds' training); "
                                   "train.KEY changes the recipe's train: section (repeatable)."),
    out: Path = typer.Option(None, "-o", "--out", help="Run folder (default: the recipe's train.out + '-iterate')."),
    allow_weak_isolation: bool = typer.Option(False, "--allow-weak-isolation", help=WEAK_HELP),
    executor: str = typer.Option("local", "--executor", help=EXECUTOR_HELP + " Sampling and training stay here; "
                                 "judging goes to the workers."),
    ray_address: str = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
) -> None:
    """Expert iteration: sample k completions per train prompt, keep what the judge passes, fine-tune, evaluate.

    Each round writes OUT/round-NN/ (samples/, data/, train/, eval/, round.json). Round 0 evaluates the
    start model. Stops after --rounds, on a plateau of the metric, or on a round with no passing samples.
    Kill it at any time and rerun the same command: finished rounds are kept, a half-done one is redone.
    Writes OUT/rounds.json, rounds.md and rounds.png.
    """
    from .config import ConfigError
    from .iterate import IterateError, run_iterate
    from .iterate_config import load_iterate_config

    check_range("--rounds", rounds, 0, 1000)
    _weak(allow_weak_isolation)
    _executor(executor, ray_address)
    try:
        cfg, base = load_iterate_config(recipe, sets or [])
    except ConfigError as e:
        fail(escape(str(e)))
    out = out or Path(f"{base.out}-iterate")
    check_output_dir(out)
    try:
        with show.loop_progress(console) as (make, say):
            summary = run_iterate(cfg, base, out, rounds, log=say, progress=make,
                                  on_round=show.round_reporter(say, cfg.metric))
    except (IterateError, ConfigError, ValueError) as e:
        fail(escape(str(e)))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: finished rounds are kept; run the same command again to resume.")
        raise typer.Exit(130) from None
    show.print_iterate_summary(console, summary, out)


@app.command()
def sweep(
    recipe: Path = typer.Argument(..., help="YAML recipe; its `train:` section is the starting point.",
                                  show_default=False),
    sweep_file: Path = typer.Option(None, "--sweep", "-s", help="SWEEP.yaml: method, params, trials, "
                                    "budget_minutes, metric, eval (default: the recipe's `sweep:` section)."),
    sets: list[str] = typer.Option(None, "--set", help="Override a train: setting for every trial (repeatable)."),
    out: Path = typer.Option(None, "-o", "--out", help="Sweep folder (default: the recipe's train.out + '-sweep')."),
    executor: str = typer.Option("local", "--executor", help="local: trials one after another here; ray: trials "
                                 "on Ray workers, --trials-at-once at a time (OUT must be on a filesystem every "
                                 "node sees). Needs pip install 'codehone[scale]'."),
    ray_address: str = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
    at_once: int = typer.Option(0, "--trials-at-once", help="With --executor ray: trials in flight (0 = one per "
                                "CPU of the cluster)."),
) -> None:
    """Grid or random search over train: settings; every trial is trained AND evaluated by execution.

    Trials go to OUT/trial-NN/ (train/, eval/, trial.json). The leaderboard (OUT/leaderboard.md and .json) is
    sorted by the sweep's metric (default pass@1), ties broken by the lower eval loss, and names the winner.
    budget_minutes stops starting new trials. Kill it and rerun the same command: finished trials are kept.
    """
    from .config import ConfigError, load_train_config
    from .iterate_config import load_sweep_config
    from .sweep import SweepError, run_sweep

    try:
        cfg = load_sweep_config(recipe, sweep_file)
        base = load_train_config(recipe, sets or [])
    except ConfigError as e:
        fail(escape(str(e)))
    out = out or Path(f"{base.out}-sweep")
    check_range("--trials-at-once", at_once, 0, 10 ** 5, "0 = one per CPU")
    _executor(executor, ray_address)
    try:
        with show.loop_progress(console) as (make, say):
            board = run_sweep(recipe, cfg, out, sets or [], log=say, progress=make,
                              on_trial=show.trial_reporter(say, cfg.metric), at_once=at_once)
    except (SweepError, ConfigError, ValueError) as e:
        fail(escape(str(e)))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: finished trials are kept; run the same command again to resume.")
        raise typer.Exit(130) from None
    show.print_sweep_summary(console, board, list(cfg.params), out)


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
    allow_weak_isolation: bool = typer.Option(False, "--allow-weak-isolation", help=WEAK_HELP),
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
    _weak(allow_weak_isolation)
    check_port(port)
    n_threads = _set_threads(threads)
    try:
        be = load_backend(model, backend, n_threads)  # verifies the model files first: one line if corrupt
    except ServeError as e:
        fail(str(e))
    sock = bind_socket(host, port)  # binds, or fails in one line, before it says it is serving
    import uvicorn

    limits = Limits(max_request_bytes=max_request_kb * 1024, max_tokens=max_tokens, timeout_s=timeout,
                    max_queue=max_queue, max_batch=max_batch)
    mid = name or (model.name if model.name not in ("model", "adapter") else model.parent.name) or "codehone"
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        console.print(f"[yellow]warning:[/] listening on {host} without an API key", highlight=False)
    config = uvicorn.Config(create_app(be, mid, limits, api_key), host=host, port=port, log_level="warning")
    console.print(f"serving [bold]{mid}[/] ({backend}) on http://{host}:{port}/v1", highlight=False)
    uvicorn.Server(config).run(sockets=[sock])


def _set_threads(n: int) -> int:
    """0 = the cores the load average leaves free (eval's rule): torch's spinning thread pool on a busy CPU
    measured 1.6 tok/s with 2 threads vs 150 tok/s with 1 (tiny model, 2 cores, load 8)."""
    import torch

    from .sampling import cpu_threads

    n = n or cpu_threads()
    torch.set_num_threads(n)
    return n


def _serve_units(units: Path | None) -> tuple[dict, Path | None]:
    """mcp/chat --units (a units.jsonl or a mine folder) → the unit map and the modules/ folder beside it."""
    from .check import load_units
    from .serve.docs_index import units_file

    if units is None:
        return {}, None
    uf = units_file(units)
    return load_units(uf), uf.parent / "modules"


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
    allow_weak_isolation: bool = typer.Option(False, "--allow-weak-isolation", help=WEAK_HELP),
) -> None:
    """An MCP server (official SDK): generate, check, suggest_fix (verified fixes only), get_docs. Stateless calls."""
    from .check import CheckError
    from .serve import ServeError
    from .serve.backends import load_backend
    from .serve.docs_index import DocsIndex
    from .serve.mcp_server import Toolbox, build_server
    from .serve.prompts import check_target

    if transport not in ("stdio", "http"):
        fail("--transport must be stdio or http")
    if transport == "http":
        check_port(port)
    _weak(allow_weak_isolation)
    n_threads = _set_threads(threads)
    try:
        check_target(target)
        unit_map, modules_dir = _serve_units(units)
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
    allow_weak_isolation: bool = typer.Option(False, "--allow-weak-isolation", help=WEAK_HELP),
) -> None:
    """Chat with the model in the terminal (history kept; /check judges the last code block, /reset, /exit)."""
    from .check import CheckError
    from .serve import ServeError
    from .serve.backends import load_backend
    from .serve.chat import ChatSession, repl
    from .serve.mcp_server import Toolbox
    from .serve.prompts import check_target

    if max_tokens < 1 or not 0 <= temperature <= 2:
        fail("--max-tokens must be >= 1 and --temperature within 0..2")
    _weak(allow_weak_isolation)
    n_threads = _set_threads(threads)
    try:
        check_target(target)
        unit_map, modules_dir = _serve_units(units)
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
    from transformers.utils import logging as hf_logging

    from .export import export as run_export
    from .export.runtime import RuntimeLoadError
    from .export.source import ExportError

    check_range("--parity-tokens", parity_tokens, 1, 10 ** 5)
    if not out.exists() or overwrite:
        check_output_dir(out)
    hf_logging.disable_progress_bar()  # per-file loading bars would bury the export's own lines
    try:
        with show.export_status(console, to) as log:
            rec = run_export(model, to, out, quant=quant, llama_cpp=llama_cpp, overwrite=overwrite,
                             parity_tokens=parity_tokens, log=log)
    except (ExportError, RuntimeLoadError) as e:
        fail(escape(str(e)))
    except OSError as e:
        fail(escape(f"{e.filename or ''}: {e.strerror or e}"))
    show.print_export_result(console, rec)
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
    constrained: bool = typer.Option(False, "--constrained", help="Constrained decoding: every sample follows "
                                     "the target's answer grammar (c-wat: one well-formed (func ...) with the "
                                     "unit's own name and wasm type), through llguidance."),
    allow_weak_isolation: bool = typer.Option(False, "--allow-weak-isolation", help=WEAK_HELP),
    executor: str = typer.Option("local", "--executor", help=EXECUTOR_HELP + " Sampling stays here; judging goes "
                                 "to the workers."),
    ray_address: str = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
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

    from .evaluate import EvalError, run_eval

    check_range("--jobs", jobs, 0, 4096, "0 = all cores")
    check_range("-k", k, 1, 10 ** 6)
    check_range("-n", n, 1, 10 ** 6)
    check_range("--limit", limit, 1)
    check_range("--max-new-tokens", max_new_tokens, 1, 10 ** 6)
    check_range("--batch-size", batch_size, 1, 10 ** 5)
    check_range("--top-p", top_p, 0.0, 1.0)
    check_range("--temperature", temperature, 0.0, 10.0)
    if out is not None:
        check_output_dir(out)
    _weak(allow_weak_isolation)
    _executor(executor, ray_address)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the weight-loading bar of a 5M model is noise here
    # generate() warns when a left-padded batch is wider than the context, although each row stops
    # within its own (sampling.RowLimit); a warning about every batch would be noise too.
    hf_logging.set_verbosity_error()
    try:
        with show.eval_progress(console) as (on_progress, say):
            metrics = run_eval(model, dataset, split=split, k=k, n=n, limit=limit, seed=seed,
                               temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                               batch_size=batch_size, jobs=jobs or os.cpu_count() or 1, modules=modules, out=out,
                               history=not no_history, log=say, progress=on_progress, constrained=constrained)
    except EvalError as e:
        fail(escape(str(e)))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: completions generated so far are kept; rerun to resume.")
        raise typer.Exit(130) from None
    except OSError as e:
        fail(escape(f"{e.filename or ''}: {e.strerror or e}"))
    show.print_eval_results(console, metrics)


@app.command()
def distill(
    dataset: Path = typer.Argument(..., help="A `codehone build` output folder (its prompts and units).",
                                   show_default=False),
    endpoint: str = typer.Option(..., "--endpoint", "-e", help="The teacher: an OpenAI-compatible base URL "
                                 "(http://127.0.0.1:8000/v1 for `codehone serve`, llama.cpp, vLLM, a hosted API).",
                                 show_default=False),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder (resumable).", show_default=False),
    model: str = typer.Option(None, "--model", "-m", help="The model name to send (some servers need one)."),
    api_key_env: str = typer.Option(None, "--api-key-env", help="Name of the environment variable holding the "
                                    "API key (never the key itself on the command line)."),
    split: str = typer.Option("train", "--split", help="Which split's prompts to send."),
    limit: int = typer.Option(None, "--limit", help="Only the first N prompts."),
    n: int = typer.Option(4, "-n", help="Candidates per prompt (one request each)."),
    temperature: float = typer.Option(0.8, "--temperature"),
    top_p: float = typer.Option(0.95, "--top-p"),
    max_tokens: int = typer.Option(512, "--max-tokens", help="Tokens per candidate at most."),
    concurrency: int = typer.Option(4, "--concurrency", "-c", help="Requests in flight at most."),
    rate: float = typer.Option(None, "--rate", help="Requests per second at most (default: no limit)."),
    retries: int = typer.Option(3, "--retries", help="Retries per request on errors, 429 and 5xx, with backoff."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds per request."),
    jobs: int = typer.Option(0, "-j", "--jobs", help="Cores judging (0 = all)."),
    seed: int = typer.Option(0, "--seed"),
    allow_weak_isolation: bool = typer.Option(False, "--allow-weak-isolation", help=WEAK_HELP),
) -> None:
    """Distill a teacher: its answers to a target's prompts, judged, only the passing ones kept.

    Every candidate goes through the target's judge (as eval's samples do); only verified passes are
    written to OUT/data/train.jsonl, ready for `codehone train --set data=OUT/data`. OUT/candidates.jsonl
    keeps every candidate with its verdict, OUT/summary.json the counts and the teacher's tokens.
    Bounded concurrency, a rate limit, retries with backoff; a killed run resumes where it stopped.
    """
    import os

    from .distill import DistillError, TeacherConfig, run_distill

    check_range("-n", n, 1, 1000)
    check_range("--limit", limit, 1)
    check_range("--concurrency", concurrency, 1, 1024)
    check_range("--rate", rate, 0.001, 10 ** 6, "requests per second")
    check_range("--retries", retries, 0, 100)
    check_range("--jobs", jobs, 0, 4096, "0 = all cores")
    check_output_dir(out)
    _weak(allow_weak_isolation)
    key = None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            fail(f"--api-key-env {api_key_env}: that environment variable is not set")
    try:
        cfg = TeacherConfig(endpoint=endpoint, model=model, api_key=key, n=n, temperature=temperature, top_p=top_p,
                            max_tokens=max_tokens, concurrency=concurrency,
                            min_interval_s=1.0 / rate if rate else 0.0, retries=retries, timeout_s=timeout)
        with show.distill_progress(console) as on_progress:
            summary = run_distill(dataset, out, cfg, split=split, limit=limit, jobs=jobs or os.cpu_count() or 1,
                                  seed=seed, progress=on_progress, log=lambda m: console.print(f"[dim]{escape(m)}[/]"))
    except DistillError as e:
        fail(escape(str(e)))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: distilled prompts are saved; rerun to resume.")
        raise typer.Exit(130) from None
    show.print_distill_summary(console, summary)


def _one_line_errors(fn):
    """One way out for every verb: a fault the user can cause (an OS error on an input or an output, a
    corrupt model file, a bad port, an out-of-range option) is one line and exit status 2, never a traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - mapped to one line when it is the user's fault, re-raised if a bug
            msg = describe(e)
            if msg is None:
                raise
            fail(escape(msg))

    return wrapper


for _cmd in app.registered_commands:
    _cmd.callback = _one_line_errors(_cmd.callback)


def run() -> None:  # pragma: no cover
    app(prog_name="codehone")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
