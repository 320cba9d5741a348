"""`codehone iterate`: expert iteration (rejection-sampling fine-tuning) with the judge as the filter.

Each round samples k completions per training prompt from the latest model,
judges them (that is `codehone eval` on the train split), keeps the passing
ones, fine-tunes on them, and evaluates the result on the test split:

  OUT/iterate.json         the settings the run was started with (a resume must match them)
  OUT/round-00/            eval/ of the start model; round.json
  OUT/round-NN/prompts/    this round's training prompts (train_limit of them, chosen by `prompts`)
              samples/    samples.jsonl + metrics.json of the sampling pass (split=train)
              data/        train.jsonl (kept samples as chat examples), kept.jsonl, val.jsonl
              train/       the `codehone train` run folder (model/ or adapter/)
              eval/        samples.jsonl + metrics.json on the eval split
              round.json   counts, metrics, seconds, init choice; written last, atomically
  OUT/rounds.json, rounds.md, rounds.png   the per-round table and plot

Why round granularity for resume: a round is sample → train → eval and only its
round.json says it finished, so a kill anywhere inside a round leaves a folder
with no round.json, which the next run deletes and redoes. Sampling is seeded by
round, so a redone round draws the same samples.

Why a round with no passing samples stops the run: training on an empty set
would only copy the model, and every later round would sample from the same
model with the same outcome. The round records its counts and the reason.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import ConfigError, TrainConfig
from .dedup import normalize_code
from .iterate_config import IterateConfig, round_train_cfg
from .records import read_jsonl, write_jsonl_atomic, write_text_atomic
from .targets import DEFAULT, get
from .targets.verdict import verified


class IterateError(ValueError):
    """An iterate run that cannot start or go on, as one line."""


def normalise(code: str, target: str | None = None) -> str:
    """Code without comments (the target's own, then C-family `//`/`/* */`) and with whitespace collapsed."""
    return normalize_code(get(target).strip_comments(code) if target else code)


def dataset_target(dataset: Path) -> str:
    """The target a `codehone build` folder was built for (its stats.json, else its first unit)."""
    stats = dataset / "stats.json"
    if stats.is_file():
        try:
            t = json.loads(stats.read_text()).get("target")
        except ValueError:
            t = None
        if t:
            return t
    if (dataset / "units.jsonl").is_file():
        for u in read_jsonl(dataset / "units.jsonl", errors=[]):
            if u.get("target"):
                return u["target"]
    return DEFAULT


def has_model(path: str | Path) -> bool:
    """Whether `path` is a HF folder, a PEFT adapter folder, or a train run folder holding one."""
    p = Path(path)
    return any((p / sub / name).is_file() for sub in ("", "model", "adapter")
               for name in ("config.json", "adapter_config.json"))


def select(samples: list[dict], keep: str, target: str | None = None) -> tuple[list[dict], dict[str, int]]:
    """The passing samples to train on, and the counts of the selection.

    A sample passes only when its verdict is verified (ok *and* it ran at least one test or
    input, targets/verdict.py): an answer the judge could not exercise is never training data.

    keep=all: every passing sample, one per distinct normalised code per prompt.
    keep=best_of_k: per prompt the passing sample with the shortest normalised code, or the
    lowest `answer_cost` where the target defines one (compress: the fewest tokens) (ties: the
    first drawn), so the model is pushed towards the tersest correct answer.
    """
    cost_of = (get(target).answer_cost if target else None) or None
    by_prompt: dict[str, dict[str, dict]] = {}
    passing = unverified = 0
    for s in samples:
        if not (s.get("ok") and verified(s.get("verdict") or {})):
            unverified += bool(s.get("ok"))
            continue
        passing += 1
        key = s["example_id"]
        by_prompt.setdefault(key, {}).setdefault(normalise(s.get("code") or "", target), s)
    kept: list[dict] = []
    for codes in by_prompt.values():
        if keep == "best_of_k":
            kept.append(min(codes.items(), key=lambda kv: cost_of(kv[1]["code"]) if cost_of else len(kv[0]))[1])
        else:
            kept.extend(codes.values())
    counts = {
        "prompts": len({s["example_id"] for s in samples}),
        "samples": len(samples),
        "passing": passing,
        "passed_without_running": unverified,
        "prompts_with_pass": len(by_prompt),
        "unique": sum(len(c) for c in by_prompt.values()),
        "kept": len(kept),
    }
    return kept, counts


def as_example(s: dict, rnd: int, i: int) -> dict:
    """A kept sample as a chat training example: its prompt messages + the judged code as the answer."""
    messages = [m for m in s["messages"] if m.get("role") != "assistant"]
    return {"id": f"r{rnd:02d}-{s['example_id']}-{i}", "messages": [*messages, {"role": "assistant",
            "content": s["code"]}], "mode": s.get("mode"), "unit_id": s.get("unit_id"),
            "source": f"iterate round {rnd}"}


def _write_json(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


class Iterate:
    """One iterate run folder: its settings, its finished rounds, and how to run the next one."""

    def __init__(self, cfg: IterateConfig, base: TrainConfig, out: str | Path, *,
                 log: Callable[[str], None] = print, progress: Callable | None = None):
        self.cfg, self.base, self.out = cfg, base, Path(out)
        self.log, self.progress = log, progress
        self.start_model = cfg.model or base.out
        self.dataset = cfg.dataset or base.data
        if not has_model(self.start_model):
            where = "iterate.model" if cfg.model else "train.out"
            raise IterateError(f"{where}: {self.start_model} holds no model (train one first with `codehone train`, "
                               "or set iterate.model)")
        if not (Path(self.dataset) / "train.jsonl").is_file():
            raise IterateError(f"{self.dataset}: no train.jsonl (iterate samples the dataset's train split)")
        self._modules = self.modules()
        self.target = dataset_target(Path(self.dataset))

    # ------------------------------------------------------------ settings and resume

    def settings(self) -> dict:
        return {"iterate": self.cfg.model_dump(), "train": self.base.model_dump(),
                "start_model": str(self.start_model), "dataset": str(self.dataset)}

    def check_settings(self) -> None:
        """Write OUT/iterate.json, or make sure a resumed run has the settings it was started with."""
        path = self.out / "iterate.json"
        now = json.loads(json.dumps(self.settings()))
        if path.is_file():
            then = json.loads(path.read_text())
            diff = _first_difference(then, now)
            if diff:
                raise IterateError(f"{self.out} was started with other settings ({diff}); "
                                   "resume with the same recipe and --set, or choose another -o")
            return
        self.out.mkdir(parents=True, exist_ok=True)
        _write_json(path, now)

    def rdir(self, r: int) -> Path:
        return self.out / f"round-{r:02d}"

    def finished(self) -> list[dict]:
        """Finished rounds in order; the first unfinished one (and any after it) is deleted to be redone."""
        done, r = [], 0
        while (self.rdir(r) / "round.json").is_file():
            done.append(json.loads((self.rdir(r) / "round.json").read_text()))
            r += 1
        for stale in sorted(self.out.glob("round-*")):
            m = re.fullmatch(r"round-(\d+)", stale.name)
            if m and int(m.group(1)) >= r and stale.is_dir():
                self.log(f"{stale.name} was not finished: redoing it")
                shutil.rmtree(stale)
        return done

    # ------------------------------------------------------------ the steps

    def modules(self) -> str | None:
        """The reference modules folder: the recipe's, or the one eval finds for the original dataset."""
        if self.cfg.modules:
            return self.cfg.modules
        from .evaluate import find_modules

        stats = Path(self.dataset) / "stats.json"
        found = find_modules(Path(self.dataset), json.loads(stats.read_text())) if stats.is_file() else None
        return str(found) if found else None

    def prompt_set(self, r: int, folder: Path) -> Path:
        """A dataset folder holding this round's training prompts (train.jsonl), with the dataset's units and stats.

        Why a folder: eval reads a split of a dataset folder; writing the chosen prompts as one keeps
        eval's contract and records exactly which prompts a round sampled.
        """
        rows = list(read_jsonl(Path(self.dataset) / "train.jsonl"))
        n = self.cfg.train_limit or len(rows)
        if self.cfg.prompts == "random":
            rows = random.Random(f"{self.cfg.seed}-prompts-{r}").sample(rows, min(n, len(rows)))
        elif self.cfg.prompts == "shortest":
            rows = sorted(rows, key=lambda x: (len(x["messages"][-1]["content"]), str(x.get("id"))))[:n]
        else:
            rows = rows[:n]
        folder.mkdir(parents=True, exist_ok=True)
        write_jsonl_atomic(folder / "train.jsonl", rows)
        for name in ("units.jsonl", "stats.json"):
            if (Path(self.dataset) / name).is_file():
                shutil.copyfile(Path(self.dataset) / name, folder / name)
        return folder

    def evaluate(self, model: str | Path, out: Path, *, split: str, k: int, n: int | None, limit: int | None,
                 temperature: float | None, top_p: float, max_new_tokens: int, batch_size: int, jobs: int,
                 seed: int, what: str, dataset: Path | None = None) -> dict:
        from . import evaluate

        return evaluate.run_eval(
            str(model), str(dataset or self.dataset), split=split, k=k, n=n, limit=limit, seed=seed,
            temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, batch_size=batch_size, jobs=jobs,
            modules=self._modules, out=out, history=False, log=lambda m: self.log(f"{what}: {m}"),
            progress=self.progress(what) if self.progress else None, constrained=self.cfg.constrained)

    def eval_test(self, model: str | Path, out: Path, r: int) -> dict:
        e = self.cfg.eval
        return self.evaluate(model, out, split=e.split, k=e.k, n=e.n, limit=e.limit, temperature=e.temperature,
                             top_p=e.top_p, max_new_tokens=e.max_new_tokens, batch_size=e.batch_size, jobs=e.jobs,
                             seed=self.cfg.seed, what=f"round {r} eval ({e.split})")

    def round_zero(self) -> dict:
        t0 = time.monotonic()
        d = self.rdir(0)
        metrics = self.eval_test(self.start_model, d / "eval", 0)
        self._metric_of(metrics)
        info = {"round": 0, "status": "ok", "model": str(self.start_model), "metrics": metrics,
                "seconds": {"eval": round(time.monotonic() - t0, 1), "total": round(time.monotonic() - t0, 1)}}
        _write_json(d / "round.json", info)
        return info

    def _metric_of(self, metrics: dict) -> float:
        m = self.cfg.metric
        if m not in metrics or not isinstance(metrics[m], int | float):
            avail = ", ".join(k for k, v in metrics.items() if isinstance(v, int | float))
            raise IterateError(f"iterate.metric: eval reports no {m!r}; available: {avail}")
        return float(metrics[m])

    def round_data(self, r: int, kept: list[dict], data: Path) -> int:
        """Write data/: kept.jsonl, train.jsonl (kept + earlier rounds' kept + original mix), val.jsonl."""
        data.mkdir(parents=True, exist_ok=True)
        write_jsonl_atomic(data / "kept.jsonl", kept)
        examples = [as_example(s, r, i) for i, s in enumerate(kept)]
        if self.cfg.accumulate:
            seen = {(e["messages"][-2]["content"], normalise(e["messages"][-1]["content"], self.target))
                    for e in examples}
            for prev in range(1, r):
                for i, s in enumerate(read_jsonl(self.rdir(prev) / "data" / "kept.jsonl")):
                    ex = as_example(s, prev, i)
                    key = (ex["messages"][-2]["content"], normalise(ex["messages"][-1]["content"], self.target))
                    if key not in seen:
                        seen.add(key)
                        examples.append(ex)
        if self.cfg.mix_original:
            orig = list(read_jsonl(Path(self.dataset) / "train.jsonl"))
            n = round(self.cfg.mix_original * len(orig))
            examples += random.Random(self.cfg.seed + r).sample(orig, n)
        write_jsonl_atomic(data / "train.jsonl", examples)
        val = Path(self.dataset) / "val.jsonl"
        if val.is_file():
            shutil.copyfile(val, data / "val.jsonl")
        return len(examples)

    def run_round(self, r: int, latest: str) -> dict:
        """Sample → select → (stop if nothing passed) → data → train → eval; round.json last."""
        from .train.run import run_train

        c, d = self.cfg, self.rdir(r)
        secs: dict[str, float] = {}
        t0 = time.monotonic()
        prompts = self.prompt_set(r, d / "prompts")
        sm = self.evaluate(latest, d / "samples", split="train", k=c.k, n=c.k, limit=None, dataset=prompts,
                           temperature=c.temperature, top_p=c.top_p, max_new_tokens=c.max_new_tokens,
                           batch_size=c.batch_size, jobs=c.jobs, seed=c.seed + r, what=f"round {r} sampling")
        secs["sample"] = round(time.monotonic() - t0, 1)
        samples = list(read_jsonl(d / "samples" / "samples.jsonl"))
        refs = {str(row.get("id")): row["messages"][-1]["content"] for row in read_jsonl(prompts / "train.jsonl")}
        renamed = 0
        for smp in samples:
            if smp.get("ok") and verified(smp.get("verdict") or {}) and smp.get("code"):
                fixed = get(self.target).canonical(smp["code"], refs.get(smp["example_id"], ""))
                if fixed != smp["code"]:
                    smp["code_as_sampled"], smp["code"], renamed = smp["code"], fixed, renamed + 1
        kept, counts = select(samples, c.keep, self.target)
        counts["renamed"] = renamed
        init_from = str(self.start_model) if c.init == "base" else latest
        info: dict[str, Any] = {"round": r, "init": c.init, "init_from": init_from, "sampled_from": latest,
                                "counts": counts, "sampling_metrics": sm}
        if not kept:
            stages = sm.get("failure_stages") or sm.get("stages") or {}
            why = f" (failure stages: {', '.join(f'{k}={v}' for k, v in stages.items())})" if stages else ""
            info.update(status="no_passing", model=latest, seconds={**secs, "total": secs["sample"]},
                        message=f"round {r}: none of {counts['samples']} samples of {counts['prompts']} train "
                                f"prompts passed the judge{why}; nothing to train on, stopping")
            _write_json(d / "round.json", info)
            return info
        counts["train_examples"] = self.round_data(r, kept, d / "data")
        t1 = time.monotonic()
        tcfg = round_train_cfg(self.base, c.train, out=str(d / "train"), load_from=init_from,
                               data=str(d / "data"))
        summary = run_train(tcfg, log=lambda m: self.log(f"round {r} train: {m}"),
                            progress_factory=self.progress(f"round {r} train", train=True) if self.progress else None)
        secs["train"] = round(time.monotonic() - t1, 1)
        t2 = time.monotonic()
        metrics = self.eval_test(d / "train", d / "eval", r)
        secs["eval"] = round(time.monotonic() - t2, 1)
        secs["total"] = round(time.monotonic() - t0, 1)
        info.update(status="ok", model=str(d / "train"), metrics=metrics, seconds=secs,
                    train={k: summary.get(k) for k in ("steps", "train_examples", "final_loss", "final_eval_loss",
                                                        "best_eval_loss", "tokens_per_s")})
        _write_json(d / "round.json", info)
        return info

    # ------------------------------------------------------------ the loop

    def stop_reason(self, done: list[dict]) -> str | None:
        """Why no further round should run, from the finished rounds alone (so a resume agrees)."""
        last = done[-1]
        if last["status"] == "no_passing":
            return last["message"]
        scored = [self._metric_of(d["metrics"]) for d in done if d.get("metrics")]
        p = self.cfg.plateau
        # min_delta: a later round counts as better only if it beats the best before it by > min_delta
        best, since = scored[0], 0
        for v in scored[1:]:
            if v > best + p.min_delta:
                best, since = v, 0
            else:
                since += 1
        if since >= p.patience:
            return (f"plateau: {self.cfg.metric} has not improved on {best:.4f} by more than {p.min_delta} "
                    f"in {p.patience} round(s)")
        return None

    def run(self, rounds: int, on_round: Callable[[dict], None] | None = None) -> dict:
        """Run (or resume) up to `rounds` rounds after round 0; returns the rounds.json summary."""
        if rounds < 1:
            raise IterateError("--rounds must be at least 1")
        self.check_settings()
        done = self.finished()
        for d in done:
            self.log(f"round {d['round']}: already done ({d['status']})")
        if not done:
            done.append(self.round_zero())
            on_round and on_round(done[-1])
        reason = None
        while True:
            reason = self.stop_reason(done)
            if reason or done[-1]["round"] >= rounds:
                break
            done.append(self.run_round(done[-1]["round"] + 1, done[-1]["model"]))
            on_round and on_round(done[-1])
            self.write_report(done, None)
        if reason:
            self.log(reason)
        return self.write_report(done, reason)

    def write_report(self, done: list[dict], reason: str | None) -> dict:
        scored = [(d["round"], self._metric_of(d["metrics"])) for d in done if d.get("metrics")]
        best = max(scored, key=lambda rv: (rv[1], -rv[0]))
        summary = {"metric": self.cfg.metric, "init": self.cfg.init, "keep": self.cfg.keep,
                   "rounds": [table_row(d, self.cfg.metric) for d in done], "stopped": reason,
                   "best": {"round": best[0], self.cfg.metric: best[1],
                            "model": next(d["model"] for d in done if d["round"] == best[0])}}
        _write_json(self.out / "rounds.json", summary)
        write_text_atomic(self.out / "rounds.md", rounds_markdown(summary))
        plot_rounds(summary, self.out / "rounds.png")
        return summary


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else k)
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r} then, {b!r} now"


COLUMNS = ("round", "init", "prompts", "samples", "passing", "sampled pass@1", "unique", "kept", "train_examples",
           "assemble_rate", "pass@1", "pass@k", "metric", "seconds", "status")


def table_row(d: dict, metric: str) -> dict:
    """One round as a flat row (the same row feeds the rich table, rounds.md and rounds.json).

    `sampled pass@1` is the pass rate of the round's samples on its training prompts, drawn from the
    previous round's model: the quantity the loop optimises, which can move while the eval split's
    pass@1 does not (for example when the eval prompts are all longer than anything the model passes).
    """
    c, m = d.get("counts") or {}, d.get("metrics") or {}
    k = next((key for key in m if key.startswith("pass@") and key != "pass@1"), None)
    return {"round": d["round"], "init": d.get("init", "-"), "prompts": c.get("prompts"),
            "samples": c.get("samples"), "passing": c.get("passing"),
            "sampled pass@1": (d.get("sampling_metrics") or {}).get("pass@1"), "unique": c.get("unique"),
            "kept": c.get("kept"), "train_examples": c.get("train_examples"),
            "assemble_rate": m.get("assemble_rate"), "pass@1": m.get("pass@1"),
            "pass@k": m.get(k) if k else None, "k": k, "metric": m.get(metric),
            "seconds": (d.get("seconds") or {}).get("total"), "status": d["status"], "model": d.get("model")}


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"  # rates (0.0312), learning rates (0.0003) and seconds (439.4) alike
    return str(v)


def rounds_markdown(summary: dict) -> str:
    rows = summary["rounds"]
    k = next((r["k"] for r in rows if r.get("k")), "pass@k")
    head = [c if c != "pass@k" else k for c in COLUMNS]
    head = [summary["metric"] + " (metric)" if c == "metric" else c for c in head]
    lines = [f"# iterate: {summary['metric']} per round", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in COLUMNS) + " |" for r in rows]
    b = summary["best"]
    lines += ["", f"Best: round {b['round']} ({summary['metric']} = {b[summary['metric']]:.4f}), model `{b['model']}`."]
    if summary["stopped"]:
        lines += ["", f"Stopped: {summary['stopped']}"]
    return "\n".join(lines) + "\n"


def plot_rounds(summary: dict, png: Path) -> None:
    """The metric and pass rates per round over the kept-sample counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rounds"]
    xs = [r["round"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for key, style in (("pass@1", "o-"), ("pass@k", "s--"), ("assemble_rate", "^:")):
        ys = [r[key] for r in rows]
        if any(y is not None for y in ys):
            label = next((r["k"] for r in rows if r.get("k")), key) if key == "pass@k" else key
            ax.plot(xs, [float("nan") if y is None else y for y in ys], style, label=label)
    ax.set_xlabel("round")
    ax.set_ylabel("rate on the eval split")
    ax.set_xticks(xs)
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ax2.bar(xs, [r["kept"] or 0 for r in rows], alpha=0.2, color="gray", label="kept samples")
    ax2.set_ylabel("kept samples")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"codehone iterate ({summary['metric']})")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)


def run_iterate(cfg: IterateConfig, base: TrainConfig, out: str | Path, rounds: int, *,
                log: Callable[[str], None] = print, progress: Callable | None = None,
                on_round: Callable[[dict], None] | None = None) -> dict:
    """Run or resume an iterate folder; returns the rounds.json summary. Raises IterateError/ConfigError."""
    try:
        return Iterate(cfg, base, out, log=log, progress=progress).run(rounds, on_round)
    except ConfigError as e:
        raise IterateError(str(e)) from None
