"""`codehone sweep`: train and *evaluate* one model per setting, and name the winner by a judged metric.

  OUT/sweep.json           the sweep, the recipe's train: section and the planned trials (a resume must match)
  OUT/trial-NN/train/      the `codehone train` run folder
  OUT/trial-NN/eval/       samples.jsonl + metrics.json of `codehone eval`
  OUT/trial-NN/trial.json  params, metrics, eval loss, seconds; written last, atomically
  OUT/leaderboard.json/.md trials sorted by the metric (ties: lower eval loss first), the winner named

Why every trial is evaluated by execution: eval loss ranks models by how well
they predict the reference text, which is not what a user of a code model wants;
two models with close losses can differ a lot in how much of what they write
runs. The loss is kept as the tie-break, which matters for small models whose
pass rates are all zero.

Why the plan is fixed up front and stored: a random sweep must draw the same
trials when it resumes, and a grid capped by `trials` must keep the same ones.
The time budget stops *starting* trials; a trial that started runs to the end.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import ConfigError, TrainConfig, load_train_config
from .iterate import fmt
from .iterate_config import SweepConfig, as_set
from .records import write_text_atomic


class SweepError(ValueError):
    """A sweep that cannot start or go on, as one line."""


def plan(cfg: SweepConfig) -> list[dict[str, Any]]:
    """The trials' parameter settings, in run order: the grid (capped by `trials`), or a seeded random draw."""
    keys = list(cfg.params)
    grid = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(cfg.params[k] for k in keys))]
    if cfg.method == "random":
        return random.Random(cfg.seed).sample(grid, min(cfg.trials or len(grid), len(grid)))
    return grid[: cfg.trials] if cfg.trials else grid


def trial_cfg(recipe: str | Path, sets: list[str], params: dict[str, Any], out: Path) -> TrainConfig:
    """The recipe's train: section with the CLI's --set, then the trial's params, then its own out."""
    extra = [as_set(k, v) for k, v in params.items()] + [as_set("out", str(out))]
    return load_train_config(recipe, [*sets, *extra])


def _write_json(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def rank_key(metric: str):
    """Sort key: finished before failed, higher metric first, then lower eval loss, then trial order."""
    def key(t: dict) -> tuple:
        m = (t.get("metrics") or {}).get(metric)
        loss = t.get("eval_loss")
        return (t["status"] != "ok", -(m if m is not None else -1.0),
                loss if loss is not None else float("inf"), t["trial"])
    return key


class Sweep:
    def __init__(self, recipe: str | Path, cfg: SweepConfig, out: str | Path, sets: list[str] | None = None, *,
                 log: Callable[[str], None] = print, progress: Callable | None = None):
        self.recipe, self.cfg, self.out, self.sets = Path(recipe), cfg, Path(out), list(sets or [])
        self.log, self.progress = log, progress
        self.trials = plan(cfg)
        # Every trial's train: section is validated before any of them runs (a bad value is a one-line error now,
        # not after an hour of other trials).
        try:
            self.cfgs = [trial_cfg(self.recipe, self.sets, p, self.tdir(i) / "train")
                         for i, p in enumerate(self.trials)]
        except ConfigError as e:
            raise SweepError(str(e)) from None
        self.dataset = cfg.dataset or self.cfgs[0].data
        if not (Path(self.dataset) / f"{cfg.eval.split}.jsonl").is_file():
            raise SweepError(f"{self.dataset}: no {cfg.eval.split}.jsonl to evaluate on (sweep.eval.split)")

    def tdir(self, i: int) -> Path:
        return self.out / f"trial-{i:02d}"

    def check_settings(self) -> None:
        path = self.out / "sweep.json"
        now = json.loads(json.dumps({"sweep": self.cfg.model_dump(), "recipe": str(self.recipe), "sets": self.sets,
                                     "trials": self.trials}))
        if path.is_file():
            then = json.loads(path.read_text())
            if then != now:
                from .iterate import _first_difference

                raise SweepError(f"{self.out} holds a different sweep ({_first_difference(then, now)}); "
                                 "resume with the same files and --set, or choose another -o")
            return
        self.out.mkdir(parents=True, exist_ok=True)
        _write_json(path, now)

    def run_trial(self, i: int) -> dict:
        from . import evaluate
        from .train.run import TrainError, run_train

        d, e, params = self.tdir(i), self.cfg.eval, self.trials[i]
        if d.exists():
            self.log(f"trial {i} was not finished: redoing it")
            shutil.rmtree(d)
        d.mkdir(parents=True)
        label = ", ".join(f"{k}={v}" for k, v in params.items())
        self.log(f"trial {i}: {label}")
        t0 = time.monotonic()
        info: dict[str, Any] = {"trial": i, "params": params}
        try:
            summary = run_train(self.cfgs[i], log=lambda m: self.log(f"trial {i} train: {m}"),
                                progress_factory=self.progress(f"trial {i} train", train=True)
                                if self.progress else None)
        except TrainError as err:
            info.update(status="failed", error=str(err), seconds={"total": round(time.monotonic() - t0, 1)})
            self.log(f"trial {i} failed: {err}")
            _write_json(d / "trial.json", info)
            return info
        t1 = time.monotonic()
        metrics = evaluate.run_eval(
            str(d / "train"), self.dataset, split=e.split, k=e.k, n=e.n, limit=e.limit, seed=self.cfg.seed,
            temperature=e.temperature, top_p=e.top_p, max_new_tokens=e.max_new_tokens, batch_size=e.batch_size,
            jobs=e.jobs, modules=self.cfg.modules, out=d / "eval", history=False,
            log=lambda m: self.log(f"trial {i} eval: {m}"),
            progress=self.progress(f"trial {i} eval") if self.progress else None)
        if self.cfg.metric not in metrics:
            avail = ", ".join(k for k, v in metrics.items() if isinstance(v, int | float))
            raise SweepError(f"sweep.metric: eval reports no {self.cfg.metric!r}; available: {avail}")
        loss = summary.get("best_eval_loss")
        info.update(status="ok", metrics=metrics, eval_loss=loss if loss is not None else summary.get("final_eval_loss"),
                    train={k: summary.get(k) for k in ("steps", "params", "final_loss", "final_eval_loss",
                                                        "best_eval_loss", "tokens_per_s", "early_stopped")},
                    model=str(d / "train"),
                    seconds={"train": round(t1 - t0, 1), "eval": round(time.monotonic() - t1, 1),
                             "total": round(time.monotonic() - t0, 1)})
        _write_json(d / "trial.json", info)
        return info

    def finished(self) -> dict[int, dict]:
        done = {}
        for i in range(len(self.trials)):
            p = self.tdir(i) / "trial.json"
            if p.is_file():
                done[i] = json.loads(p.read_text())
        return done

    def run(self, on_trial: Callable[[dict], None] | None = None, at_once: int = 0) -> dict:
        """Run the pending trials: one after another here, or `at_once` at a time on Ray (`executors.use`)."""
        from . import executors

        self.check_settings()
        done = self.finished()
        for i in sorted(done):
            self.log(f"trial {i}: already done ({done[i]['status']})")
        spent_before = sum((t.get("seconds") or {}).get("total", 0) if isinstance(t.get("seconds"), dict)
                           else t.get("seconds", 0) for t in done.values())
        t0 = time.monotonic()
        budget_stop = None

        def startable():
            """The pending trials, each handed out only while the time budget allows starting one."""
            nonlocal budget_stop
            for i in range(len(self.trials)):
                if i in done:
                    continue
                spent = spent_before + time.monotonic() - t0
                if self.cfg.budget_minutes and spent >= self.cfg.budget_minutes * 60:
                    left = len(self.trials) - len(done)
                    budget_stop = (f"time budget: {spent / 60:.1f} of {self.cfg.budget_minutes:g} minutes spent; "
                                   f"{left} planned trial(s) not started")
                    self.log(budget_stop)
                    return
                yield i

        if executors.current() == "ray":
            results = self._on_ray(startable(), at_once)
        else:
            results = ((i, self.run_trial(i)) for i in startable())
        for i, info in results:
            done[i] = info
            on_trial and on_trial(info)
            self.write_leaderboard(done, None)
        return self.write_leaderboard(done, budget_stop)

    def _on_ray(self, trials, at_once: int):
        """(trial, info) as trials finish on Ray workers, `at_once` in flight (0: one per CPU of the cluster).

        The trial folders are written by the workers, so OUT must be on a filesystem every node sees.
        A trial whose worker died on every retry is recorded as failed, like a training error.
        """
        from .executors import make_pool

        pool = make_pool(at_once)
        order: list[int] = []

        def tasks():
            for i in trials:
                order.append(i)
                self.log(f"trial {i}: sent to Ray")
                yield (str(self.recipe), self.cfg.model_dump(), str(self.out), self.sets, i)

        for n, info, err in pool.imap_unordered(_trial_on_worker, tasks(), window=pool.jobs):
            i = order[n]
            if err is not None:
                info = {"trial": i, "params": self.trials[i], "status": "failed",
                        "error": f"ray worker: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                        "seconds": {"total": 0.0}}
                _write_json(self.tdir(i) / "trial.json", info)
            self.log(f"trial {i}: {info['status']}")
            yield i, info
        pool.close()

    def write_leaderboard(self, done: dict[int, dict], budget_stop: str | None) -> dict:
        rows = sorted(done.values(), key=rank_key(self.cfg.metric))
        winner = rows[0] if rows and rows[0]["status"] == "ok" else None
        board = {"metric": self.cfg.metric, "method": self.cfg.method, "planned": len(self.trials),
                 "finished": len(done), "budget_stop": budget_stop,
                 "winner": None if winner is None else {
                     "trial": winner["trial"], "params": winner["params"],
                     self.cfg.metric: winner["metrics"][self.cfg.metric], "eval_loss": winner.get("eval_loss"),
                     "model": winner["model"]},
                 "trials": [{"rank": r + 1, **t} for r, t in enumerate(rows)]}
        _write_json(self.out / "leaderboard.json", board)
        write_text_atomic(self.out / "leaderboard.md", leaderboard_markdown(board, list(self.cfg.params)))
        return board


def _pass_k_key(metrics: dict) -> str | None:
    return next((k for k in metrics if re.fullmatch(r"pass@\d+", k) and k != "pass@1"), None)


def leaderboard_rows(board: dict, params: list[str]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the leaderboard, shared by leaderboard.md and the CLI's rich table."""
    metric = board["metric"]
    ks = {_pass_k_key(t.get("metrics") or {}) for t in board["trials"]} - {None}
    extra = sorted(ks) + ["assemble_rate"]
    extra = [m for m in ["pass@1", *extra] if m != metric]
    head = ["rank", "trial", *params, f"{metric} (metric)", *extra, "eval loss", "steps", "seconds", "status"]
    rows = []
    for t in board["trials"]:
        m = t.get("metrics") or {}
        secs = t.get("seconds")
        rows.append([str(t["rank"]), str(t["trial"]), *(fmt(t["params"].get(p)) for p in params), fmt(m.get(metric)),
                     *(fmt(m.get(x)) for x in extra), fmt(t.get("eval_loss")),
                     fmt((t.get("train") or {}).get("steps")),
                     fmt(secs.get("total") if isinstance(secs, dict) else secs),
                     t["status"] if t["status"] == "ok" else f"failed: {t.get('error', '')}"])
    return head, rows


def leaderboard_markdown(board: dict, params: list[str]) -> str:
    head, rows = leaderboard_rows(board, params)
    lines = [f"# sweep leaderboard ({board['metric']}, ties broken by lower eval loss)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    w = board["winner"]
    lines.append("")
    if w:
        label = ", ".join(f"{k}={v}" for k, v in w["params"].items())
        lines.append(f"Winner: trial {w['trial']} ({label}): {board['metric']} = {w[board['metric']]:.4f}, "
                     f"eval loss {fmt(w['eval_loss'])}; model `{w['model']}`.")
    else:
        lines.append("No trial finished.")
    lines.append(f"Trials: {board['finished']} of {board['planned']} planned ({board['method']}).")
    if board["budget_stop"]:
        lines.append(f"Stopped early: {board['budget_stop']}")
    return "\n".join(lines) + "\n"


def _trial_on_worker(task: tuple) -> dict:
    """One trial on a Ray worker: the same `run_trial` as here, logging to the worker's log."""
    recipe, cfg, out, sets, i = task
    return Sweep(recipe, SweepConfig.model_validate(cfg), out, sets, log=print).run_trial(i)


def run_sweep(recipe: str | Path, cfg: SweepConfig, out: str | Path, sets: list[str] | None = None, *,
              log: Callable[[str], None] = print, progress: Callable | None = None,
              on_trial: Callable[[dict], None] | None = None, at_once: int = 0) -> dict:
    """Run or resume a sweep folder; returns the leaderboard. Raises SweepError (one line)."""
    try:
        return Sweep(recipe, cfg, out, sets, log=log, progress=progress).run(on_trial, at_once)
    except ConfigError as e:
        raise SweepError(str(e)) from None
