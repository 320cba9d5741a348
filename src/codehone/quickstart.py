"""`codehone quickstart`: a target's whole loop on its bundled corpus, on a CPU, ending in a report.

Why subprocesses: each stage runs as the very command a user would type (`codehone mine ...`),
with the same progress bars and the same files, so the report's "reproduce by hand" section
is the literal list of what ran, and nothing here can drift from the verbs. Each stage is
skipped when its output says it finished (the verbs resume on their own too), so a killed
quickstart picks up where it stopped.

Budget: `minutes` is split across the stages from measured costs on a 2-core machine
(mine ~1 min, build seconds; the rest goes to training, two evals and one iterate round).
Training is capped by wall clock (`train.max_minutes`); generation is sized by prompt limits.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .records import write_text_atomic
from .targets import DEFAULT, TargetError, get
from .targets import recipe_path as target_recipe


class QuickstartError(ValueError):
    """Bad quickstart input: a one-line message."""


@dataclass
class Stage:
    name: str
    argv: list[str]  # after `codehone`
    done: str  # a file under DIR whose presence means the stage finished
    seconds: float | None = None
    status: str = "pending"  # pending | ran | skipped | failed
    rc: int | None = None

    def command(self) -> str:
        return "codehone " + shlex.join(self.argv)


@dataclass
class Budget:
    """What `minutes` buys: steps, time caps and prompt limits for each stage."""

    minutes: float
    train_steps: int = 0
    train_minutes: float = 0.0
    eval_limit: int = 0
    eval_n: int = 4
    max_new_tokens: int = 384
    iterate_limit: int = 0
    iterate_k: int = 4
    iterate_steps: int = 0
    iterate_train_minutes: float = 0.0
    notes: list[str] = field(default_factory=list)

    @classmethod
    def for_minutes(cls, minutes: float) -> Budget:
        if minutes <= 0:
            raise QuickstartError(f"--minutes must be positive, not {minutes}")
        b = cls(minutes=minutes)
        # Measured on 2 quiet cores: mine ~1 min (with a cold libc build ~1.5), build ~5 s,
        # tiny model ~1.2 s/step, generation ~1,500 tokens/s batched.
        b.train_minutes = round(max(0.3, 0.40 * minutes), 2)
        b.train_steps = max(10, round(20 * minutes))
        b.eval_limit = max(4, round(2 * minutes))
        b.iterate_limit = max(4, round(2 * minutes))
        b.iterate_steps = max(5, round(2 * minutes))
        b.iterate_train_minutes = round(max(0.2, 0.1 * minutes), 2)
        if minutes < 5:
            b.max_new_tokens = 256
            b.notes.append("a budget under 5 minutes trains too little for the model to write correct code")
        return b


def recipe_path(target: str = DEFAULT) -> Path:
    """The target's quickstart recipe: the packaged copy, or the repository's when running from a checkout."""
    try:
        tgt = get(target)
    except TargetError as e:
        raise QuickstartError(str(e)) from None
    if tgt.miner is None or not tgt.quickstart_recipe:
        raise QuickstartError(f"target {target} has no quickstart yet (it needs `mine` and a recipe)")
    found = target_recipe(target)
    if found is None:
        raise QuickstartError(f"cannot find the {tgt.quickstart_recipe} recipe (reinstall codehone)")
    return found


def plan(out: Path, budget: Budget, jobs: int = 0, mine_limit: int | None = None,
         seed: int = 0, target: str = DEFAULT) -> list[Stage]:
    """The stages, as the CLI commands a user would type."""
    recipe = str(recipe_path(target))
    d = str(out)
    mine = ["mine", "-o", f"{d}/mine", "-j", str(jobs), "--explain"]
    if target != DEFAULT:
        mine += ["--target", target]
    if mine_limit:
        mine += ["--limit", str(mine_limit)]
    b = budget
    evals = ["--split", "test", "-k", str(b.eval_n), "-n", str(b.eval_n), "--limit", str(b.eval_limit),
             "--seed", str(seed), "--max-new-tokens", str(b.max_new_tokens), "-j", str(max(jobs, 2) if jobs else 2)]
    return [
        Stage("mine", mine, "mine/stats.json"),
        Stage("build", ["build", f"{d}/mine", "-o", f"{d}/dataset", "--recipe", recipe], "dataset/stats.json"),
        Stage("train", ["train", recipe, "--resume", "--set", f"data={d}/dataset", "--set", f"out={d}/train",
                        "--set", f"max_steps={b.train_steps}", "--set", f"max_minutes={b.train_minutes}",
                        "--set", f"eval_every={max(5, b.train_steps // 12)}",
                        "--set", f"save_every={max(5, b.train_steps // 3)}",
                        "--set", f"warmup_steps={max(1, b.train_steps // 10)}", "--set", f"seed={seed}"],
              "train/summary.json"),
        Stage("eval", ["eval", f"{d}/train/model", "--dataset", f"{d}/dataset", *evals,
                       "-o", f"{d}/eval"], "eval/metrics.json"),
        Stage("iterate", ["iterate", recipe, "--rounds", "1", "-o", f"{d}/iterate",
                          "--set", f"train.data={d}/dataset", "--set", f"train.out={d}/train",
                          "--set", f"iterate.model={d}/train/model",
                          "--set", f"iterate.k={b.iterate_k}", "--set", f"iterate.train_limit={b.iterate_limit}",
                          "--set", f"iterate.max_new_tokens={b.max_new_tokens}",
                          "--set", f"iterate.train.max_steps={b.iterate_steps}",
                          "--set", f"iterate.train.max_minutes={b.iterate_train_minutes}",
                          # the shortest train prompts: what a small model can pass first (a curriculum)
                          "--set", "iterate.prompts=shortest",
                          "--set", f"iterate.eval.limit={b.eval_limit}", "--set", f"iterate.eval.n={b.eval_n}",
                          "--set", f"iterate.eval.k={b.eval_n}",
                          "--set", f"iterate.eval.max_new_tokens={b.max_new_tokens}", "--set", f"iterate.seed={seed}"],
              "iterate/rounds.json"),
    ]


def seed_round_zero(out: Path, log: Callable[[str], None]) -> None:
    """Let iterate's round 0 (an eval of the same model with the same settings) reuse the eval stage's
    generations: eval keys its generations.jsonl by a fingerprint of model and settings, so a copy
    is picked up only when they match, and regenerated otherwise. Saves one full eval's sampling."""
    src, dst = out / "eval", out / "iterate" / "round-00" / "eval"
    if dst.exists() or not (src / "generations.meta.json").is_file():
        return
    dst.mkdir(parents=True)
    for name in ("generations.jsonl", "generations.meta.json"):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    log("── iterate round 0 evaluates the same model as the eval stage: its generations are reused")


def _run_stage(st: Stage, out: Path, env: dict[str, str], log: Callable[[str], None]) -> None:
    log(f"── {st.name}: {st.command()}")
    t0 = time.monotonic()
    logf = out / "logs" / f"{st.name}.log"
    logf.parent.mkdir(parents=True, exist_ok=True)
    # The child writes to our terminal (its progress bars stay live); stderr is also teed to a log
    # so a failure's reason can be quoted in the report.
    with logf.open("w", encoding="utf-8") as lf:
        proc = subprocess.Popen([sys.executable, "-m", "codehone", *st.argv], env=env,
                                stderr=subprocess.PIPE, text=True, errors="replace")
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(line)
            lf.write(line)
        st.rc = proc.wait()
    st.seconds = round(time.monotonic() - t0, 1)
    st.status = "ran" if st.rc == 0 else "failed"


def run_quickstart(out: Path, minutes: float = 15.0, jobs: int = 0, mine_limit: int | None = None,
                   seed: int = 0, fresh: bool = False, log: Callable[[str], None] = print,
                   target: str = DEFAULT) -> dict:
    """Run every stage (skipping finished ones unless `fresh`), then write DIR/report.{md,html}."""
    from .report import write_report

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise QuickstartError(f"{out}: exists and is not a folder")
    budget = Budget.for_minutes(minutes)
    stages = plan(out, budget, jobs, mine_limit, seed, target)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "quickstart.json"
    try:  # a resumed run keeps the timings of the stages it skips
        before = {s["name"]: s for s in json.loads(state_path.read_text(encoding="utf-8"))["stages"]}
    except (OSError, ValueError, KeyError, TypeError):
        before = {}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    failed = None
    for note in budget.notes:
        log(f"note: {note}")
    redo = fresh
    for st in stages:
        prev = before.get(st.name)
        changed = prev is not None and prev.get("command") != st.command()
        if (out / st.done).is_file() and not (redo or changed):
            st.status = "skipped"
            st.seconds = (prev or {}).get("seconds")
            log(f"── {st.name}: done earlier ({st.done}), skipped")
            continue
        # A stage whose inputs or settings changed (--fresh, an upstream stage that ran again, another
        # command) starts over: mine and build check their own inputs; train/eval/iterate folders an
        # earlier quickstart wrote are cleared. A stage that was merely killed resumes (train --resume).
        if (redo or changed) and prev is not None and st.name in ("train", "eval", "iterate") \
                and (out / st.name).is_dir():
            shutil.rmtree(out / st.name)
        redo = True  # whatever comes after consumes this stage's new output
        if st.name == "iterate":
            seed_round_zero(out, log)
        _run_stage(st, out, env, log)
        _save_state(state_path, budget, stages, time.monotonic() - t0, target)
        if st.status == "failed":
            failed = st
            log(f"── {st.name} failed (exit {st.rc}); see {out / 'logs' / (st.name + '.log')}")
            break
    wall = time.monotonic() - t0
    state = _save_state(state_path, budget, stages, wall, target)
    write_report(out, state)
    if failed:
        raise QuickstartError(f"stage {failed.name} failed (exit {failed.rc}); the report covers the stages before "
                              f"it: {out / 'report.md'}")
    return state


def _save_state(path: Path, budget: Budget, stages: list[Stage], wall: float, target: str = DEFAULT) -> dict:
    state = {"target": target, "budget": asdict(budget), "wall_seconds": round(wall, 1),
             "stages": [{**asdict(s), "command": s.command()} for s in stages]}
    write_text_atomic(path, json.dumps(state, indent=2) + "\n")
    return state
