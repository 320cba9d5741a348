"""`codehone eval`: sample a model on a dataset split, judge every sample by execution, report pass@k.

Three separable steps, so `iterate` and the tests can run any one alone:
  generate_samples  prompts → n completions each (sampling.sample), appended to
                    OUT/generations.jsonl batch by batch: a killed run resumes
                    where it stopped, and a rerun with the same model and
                    settings generates nothing again.
  judge_samples     completions → extracted code → `check` (parallel, cached),
                    one verdict per distinct (code, unit).
  summarize_samples counts over the judged rows (passk.py) → metrics.json.

OUT (default MODEL_DIR/eval/<split>-seed<seed>-n<n>) holds samples.jsonl, one
row per sample (prompt messages, raw completion, code, verdict), and
metrics.json. Verdicts in samples.jsonl leave out timings and the cache flag,
so the same model and seed give the same bytes. MODEL_DIR/history.jsonl gets
one line per run and history.png plots them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .passk import pass_at_k, summarize_samples
from .records import JsonlAppender, JsonlError, read_jsonl, to_dict, write_jsonl_atomic, write_text_atomic
from .targets import TargetError, get
from .targets.verdict import verified

__all__ = ["EvalError", "EvalSet", "load_eval_set", "generate_samples", "judge_samples", "run_eval", "pass_at_k"]

# Bumped when sampling.py would draw different completions for the same inputs (invalidates generations.jsonl).
SAMPLER_VERSION = 3

Progress = Callable[[str, int, int], None]  # (phase "generate" | "judge", done, total)


class EvalError(ValueError):
    """Bad input to eval (dataset, split, modules, settings), as one line."""


@dataclass
class EvalSet:
    """The prompts of one split and what judging them needs."""

    dataset: Path
    split: str
    rows: list[dict]
    units: dict[str, dict]
    target: str
    modules_dir: Path | None


def _read(path: Path) -> list[dict]:
    try:
        return list(read_jsonl(path))
    except JsonlError as e:
        raise EvalError(str(e)) from None
    except OSError as e:
        raise EvalError(f"cannot read {path}: {e.strerror or e}") from None


def find_modules(dataset: Path, stats: dict) -> Path | None:
    """The reference modules folder of a dataset: modules/ beside the units it was built from.

    `codehone build` records its inputs (mine folders or units.jsonl files) in stats.json.
    """
    for f in (stats.get("inputs") or {}).get("files") or []:
        p = Path(f)
        for base in ([p] if p.is_absolute() else [p, dataset / p]):
            cand = base / "modules" if base.is_dir() else base.parent / "modules"
            if cand.is_dir():
                return cand
    return None


def load_eval_set(dataset: str | Path, split: str = "test", limit: int | None = None,
                  modules: str | Path | None = None) -> EvalSet:
    """The split's chat rows (the first `limit`), the dataset's units, its target and modules folder."""
    d = Path(dataset)
    if not d.is_dir():
        raise EvalError(f"{d}: no such dataset folder (give a `codehone build` output folder)")
    path = next((p for p in (d / f"{split}.jsonl", d / "chat" / f"{split}.jsonl") if p.is_file()), None)
    if path is None:
        have = sorted(p.stem for p in d.glob("*.jsonl") if p.stem not in ("units", "dropped"))
        raise EvalError(f"{d}: no {split}.jsonl (splits here: {', '.join(have) or 'none'})")
    if limit is not None and limit < 1:
        raise EvalError(f"--limit must be at least 1, not {limit}")
    rows = []
    for i, r in enumerate(_read(path), 1):
        msgs = r.get("messages")
        if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) for m in msgs):
            raise EvalError(f"{path}:{i}: no chat `messages` (build with output.formats listing chat first)")
        rows.append(r)
        if limit and len(rows) >= limit:
            break
    if not rows:
        raise EvalError(f"{path}: the {split} split is empty")
    stats: dict = {}
    if (d / "stats.json").is_file():
        try:
            stats = json.loads((d / "stats.json").read_text())
        except ValueError as e:
            raise EvalError(f"{d}/stats.json: not JSON ({e})") from None
    units = {u["id"]: u for u in _read(d / "units.jsonl") if "id" in u} if (d / "units.jsonl").is_file() else {}
    target = stats.get("target") or next((u.get("target") for u in units.values() if u.get("target")), None)
    if target is None:
        raise EvalError(f"{d}: cannot tell the target (no stats.json `target` and no units.jsonl)")
    mdir: Path | None = None
    try:
        tgt = get(target)
    except TargetError as e:
        raise EvalError(f"{d}: {e}") from None
    if tgt.needs_unit:
        missing = [r.get("unit_id") for r in rows if r.get("unit_id") not in units]
        if missing:
            raise EvalError(f"{d}: {len(missing)} {split} rows name a unit that is not in units.jsonl "
                            f"(first: {missing[0]!r})")
    if tgt.needs_modules:
        mdir = Path(modules) if modules else find_modules(d, stats)
        if mdir is None:
            raise EvalError(f"{d}: cannot find the reference modules (a `codehone mine` folder's modules/, found "
                            "through stats.json inputs); pass --modules DIR")
        if not mdir.is_dir():
            raise EvalError(f"reference modules folder not found: {mdir}")
    return EvalSet(d, split, rows, units, target, mdir)


def prompt_messages(row: dict) -> list[dict]:
    """The prompt of a chat row: its messages without the reference answer."""
    msgs = row["messages"]
    return msgs[:-1] if msgs and msgs[-1].get("role") == "assistant" else list(msgs)


def _weights_signature(folder: Path) -> list:
    """Name, size and mtime of the files that define a model (not eval/ or history.*), and of an adapter's base."""
    sig = sorted([str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in folder.iterdir()
                 if p.is_file() and p.suffix in (".safetensors", ".bin", ".json", ".jinja", ".model")
                 and not p.name.startswith("history"))
    acfg = folder / "adapter_config.json"
    if acfg.is_file():
        base = json.loads(acfg.read_text()).get("base_model_name_or_path")
        if base and Path(base).is_dir():
            sig += _weights_signature(Path(base))
    return sig


def generate_samples(model, tok, evalset: EvalSet, *, n: int, temperature: float, top_p: float,
                     max_new_tokens: int, seed: int, batch_size: int, cache: Path | None = None,
                     fingerprint: dict | None = None, progress: Progress | None = None,
                     log: Callable[[str], None] = print, constrained: bool = False) -> tuple[list[dict], dict]:
    """n completions per row → sample dicts (no verdicts yet), in row order then sample index.

    `constrained`: each row's samples are held to the target's answer grammar (its `grammar(unit)`),
    so every sample is well-formed; a target without a grammar is an error.

    With `cache` (a generations.jsonl) and a `fingerprint` of the model and settings, completions
    already there are reused and new ones appended per batch. Returns (samples, generation stats).
    """
    from .sampling import sample

    have: dict[tuple[str, int], dict] = {}
    if cache is not None:
        meta = cache.with_suffix(".meta.json")
        try:
            same = meta.is_file() and fingerprint is not None and json.loads(meta.read_text()) == fingerprint
        except ValueError:  # a damaged meta file: generate afresh
            same = False
        if same and cache.is_file():
            for g in read_jsonl(cache, errors=[]):
                have[(g["example_id"], g["k"])] = g
        else:
            cache.unlink(missing_ok=True)
            if fingerprint is not None:
                write_text_atomic(meta, json.dumps(fingerprint, sort_keys=True))
    ids = [str(r.get("id", i)) for i, r in enumerate(evalset.rows)]
    skip = {(p, j) for p, e in enumerate(ids) for j in range(n) if (e, j) in have}
    if skip:
        log(f"reusing {len(skip)} of {len(ids) * n} completions from {cache}")
    appender = JsonlAppender(cache) if cache is not None and fingerprint is not None else None
    stats = {"new_tokens": 0, "generated": 0, "reused": len(skip)}

    def on_batch(done: list) -> None:
        rows = [{"example_id": ids[p], "k": j, "completion": c.text, "stopped_at_eos": c.stopped_at_eos,
                 "new_tokens": c.new_tokens} for p, j, c in done]
        for r in rows:
            have[(r["example_id"], r["k"])] = r
        stats["generated"] += len(rows)
        stats["new_tokens"] += sum(r["new_tokens"] for r in rows if r["k"] == 0 or temperature > 0)
        if appender:
            appender.write_many(rows)

    grammars = None
    if constrained:
        tgt = get(evalset.target)
        if tgt.grammar is None:
            raise EvalError(f"target {evalset.target} has no answer grammar: run without --constrained")
        grammars = [tgt.grammar(evalset.units.get(r.get("unit_id"))) for r in evalset.rows]
    t0 = time.monotonic()
    try:
        sample(model, tok, [prompt_messages(r) for r in evalset.rows], n=n, temperature=temperature,
               top_p=top_p, max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size, keys=ids,
               skip=skip, on_batch=on_batch, grammars=grammars,
               progress=(lambda d, t: progress("generate", d, t)) if progress else None)
    finally:
        if appender:
            appender.close()
    stats["seconds"] = round(time.monotonic() - t0, 3)
    stats["tokens_per_s"] = (round(stats["new_tokens"] / stats["seconds"], 1)
                             if stats["seconds"] > 0 and stats["new_tokens"] else None)
    out = []
    for e, r in zip(ids, evalset.rows, strict=True):
        for j in range(n):
            g = have[(e, j)]
            out.append({"example_id": e, "unit_id": r.get("unit_id"), "mode": r.get("mode"), "k": j,
                        "messages": prompt_messages(r), "completion": g["completion"],
                        "stopped_at_eos": g["stopped_at_eos"], "new_tokens": g["new_tokens"]})
    return out, stats


def judge_samples(target: str, samples: list[dict], *, units: dict[str, dict] | None = None,
                  modules_dir: Path | None = None, jobs: int = 1, options: dict | None = None,
                  cache_dir: Path | str | None | bool = None, progress: Progress | None = None) -> dict:
    """Extract the code of each sample (a `completion`) and judge it; fills code, verdict, ok in place.

    Identical (code, unit) pairs are judged once. Verdicts keep no timings or cache flag (they would
    make samples.jsonl differ between identical runs). Each unit's own artifact (the reference answer)
    is judged too: `reference_verified` says whether the judge could exercise it at all (ran a test or
    input); a prompt whose reference runs nothing is left out of pass@k. Returns {"seconds", "judged",
    "cached", "references", "references_unverified"}.
    """
    from .check import CheckError, Item, check
    from .extract import extract_code

    opts = dict(options or {})
    if modules_dir is not None:
        opts.setdefault("modules_dir", str(modules_dir))
    for s in samples:
        s["code"] = extract_code(s["completion"]) if "completion" in s else s["code"]
    keys: dict[tuple[str, str | None], int] = {}
    items: list[Item] = []
    for s in samples:
        key = (s["code"], s.get("unit_id"))
        if key not in keys:
            unit = (units or {}).get(s.get("unit_id")) if s.get("unit_id") is not None else None
            if unit is None and get(target).needs_unit:
                raise EvalError(f"sample {s.get('example_id')}: unit {s.get('unit_id')!r} is not in the units")
            keys[key] = len(items)
            items.append(Item(candidate=s["code"], unit=unit))
    distinct = len(items)
    refs: dict[str, int] = {}
    for s in samples:
        uid = s.get("unit_id")
        unit = (units or {}).get(uid) if uid is not None else None
        if unit is not None and uid not in refs and isinstance(unit.get("artifact"), str):
            same = keys.get((unit["artifact"], uid), keys.get((unit["artifact"].strip(), uid)))
            if same is not None:  # a sample that is the reference answer: one verdict serves both
                refs[uid] = same
                continue
            refs[uid] = len(items)
            items.append(Item(candidate=unit["artifact"], unit=unit))
    t0 = time.monotonic()
    try:
        verdicts = check(target, items, jobs=max(1, jobs), cache_dir=cache_dir, options=opts,
                         progress=(lambda d, t, _v: progress("judge", d, t)) if progress else None)
    except CheckError as e:
        raise EvalError(str(e)) from None
    seconds = time.monotonic() - t0
    for s in samples:
        v = to_dict(verdicts[keys[(s["code"], s.get("unit_id"))]])
        v.pop("timings", None)
        v.pop("cached", None)
        s["verdict"], s["ok"] = v, bool(v["ok"])
        if s.get("unit_id") in refs:
            s["reference_verified"] = verified(verdicts[refs[s["unit_id"]]])
    return {"seconds": round(seconds, 3), "judged": distinct, "cached": sum(v.cached for v in verdicts),
            "references": len(refs), "references_unverified": sum(not verified(verdicts[i]) for i in refs.values())}


SAMPLE_KEYS = ("example_id", "unit_id", "mode", "k", "messages", "completion", "code", "verdict", "ok",
               "stopped_at_eos", "new_tokens", "reference_verified")


def _model_label(model) -> str:
    return str(model) if isinstance(model, str | Path) else type(model[0]).__name__


def run_eval(model, dataset, *, split: str = "test", k: int = 1, n: int | None = None, limit: int | None = None,
             seed: int = 0, temperature: float | None = None, top_p: float = 0.95, max_new_tokens: int = 512,
             batch_size: int = 8, jobs: int = 1, modules: Path | None = None, out: Path | None = None,
             history: bool = True, log: Callable[[str], None] = print, progress: Progress | None = None,
             model_dir: Path | None = None, judge_options: dict | None = None,
             cache_dir: Path | str | None | bool = None, constrained: bool = False) -> dict:
    """Evaluate `model` (a model/adapter/train-run folder, or a loaded (model, tokenizer) pair) on a split.

    n samples per prompt (default k); temperature None means greedy for n == 1 and 0.8 otherwise.
    A loaded pair has no folder: give `model_dir` (where eval/ and history go) or `out`.
    `constrained` holds every sample to the target's answer grammar (constrained decoding).
    Returns the metrics (also in OUT/metrics.json).
    """
    n = k if n is None else n
    if k < 1 or n < k:
        raise EvalError(f"need k >= 1 and n >= k (got k={k}, n={n})")
    if not 0 < top_p <= 1 or max_new_tokens < 1 or batch_size < 1 or jobs < 1:
        raise EvalError("need 0 < top_p <= 1, max_new_tokens >= 1, batch_size >= 1 and jobs >= 1")
    temperature = (0.0 if n == 1 else 0.8) if temperature is None else temperature
    if temperature < 0:
        raise EvalError(f"temperature must be >= 0, not {temperature}")
    evalset = load_eval_set(dataset, split, limit, modules)
    from .sampling import SamplingError, load_model, resolve_model_dir

    fingerprint = None
    try:
        if isinstance(model, str | Path):
            folder, _kind = resolve_model_dir(model)
            mdl, tok = load_model(folder)
            model_dir = model_dir or folder
            fingerprint = {"sampler": SAMPLER_VERSION, "model": str(folder.resolve()), "files": _weights_signature(folder), "seed": seed,
                           "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens,
                           "split": split, "dataset": str(evalset.dataset.resolve()),
                           **({"constrained": True} if constrained else {})}
        else:
            mdl, tok = model
    except SamplingError as e:
        raise EvalError(str(e)) from None
    if model_dir is None and out is None:
        raise EvalError("a loaded model needs model_dir or out (where to write)")
    out = Path(out) if out is not None else Path(model_dir) / "eval" / f"{split}-seed{seed}-n{n}"
    out.mkdir(parents=True, exist_ok=True)
    if temperature == 0 and n > 1:
        log(f"note: temperature 0 is greedy, so the {n} samples of a prompt are one sample repeated")
    samples, gen = generate_samples(mdl, tok, evalset, n=n, temperature=temperature, top_p=top_p,
                                    max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size,
                                    cache=out / "generations.jsonl" if fingerprint else None,
                                    fingerprint=fingerprint, progress=progress, log=log, constrained=constrained)
    judged = judge_samples(evalset.target, samples, units=evalset.units, modules_dir=evalset.modules_dir,
                           jobs=jobs, options=judge_options, cache_dir=cache_dir, progress=progress)
    write_jsonl_atomic(out / "samples.jsonl", ({key: s.get(key) for key in SAMPLE_KEYS} for s in samples))
    metrics: dict[str, Any] = {
        "model": _model_label(model), "dataset": str(evalset.dataset), "split": split, "target": evalset.target,
        "seed": seed, "n": n, "k": k, "temperature": temperature, "top_p": top_p,
        "max_new_tokens": max_new_tokens, "limit": limit, "constrained": constrained,
        **summarize_samples(samples, evalset.target, k),
        **get(evalset.target).tokenizer_extras(samples, tok, units=evalset.units),
        "generation": {"tokens": gen["new_tokens"], "samples_generated": gen["generated"],
                       "samples_reused": gen["reused"],
                       "tokens_per_s": gen["tokens_per_s"]},
        "judge": {"distinct": judged["judged"], "cached": judged["cached"], "references": judged["references"],
                  "references_unverified": judged["references_unverified"]},
        "seconds": {"gen": gen["seconds"], "judge": judged["seconds"]},
        "out": str(out),
    }
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True))
    if history:
        hdir = Path(model_dir) if model_dir is not None else out.parent
        append_history(hdir, metrics, log=log)
    return metrics


HISTORY_KEYS = ("pass@1", "assemble_rate", "compile_rate", "stopped_at_eos_rate")


def append_history(model_dir: Path, metrics: dict, log: Callable[[str], None] = print) -> None:
    """One line per eval run in MODEL_DIR/history.jsonl, and history.png redrawn from all of them."""
    row = {"time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
           **{key: v for key, v in metrics.items() if key != "by_mode"}}
    with JsonlAppender(model_dir / "history.jsonl") as f:
        f.write_many([row])
    try:
        plot_history(model_dir / "history.jsonl", model_dir / "history.png")
    except (ImportError, OSError, ValueError) as e:  # a plot is a view; the JSONL is the record
        log(f"note: history.png not drawn ({e})")


def _compile_metric(target: str | None) -> str:
    try:
        return get(target).compile_metric if target else "compile_rate"
    except TargetError:
        return "compile_rate"


def plot_history(history: Path, png: Path) -> None:
    """pass@1, pass@k, the assemble/compile rate and the EOS rate of every run, in run order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(read_jsonl(history, errors=[]))
    keys = [key for key in ("pass@1",) if any(key in r for r in rows)]
    keys += sorted({key for r in rows for key in r if key.startswith("pass@") and key != "pass@1"},
                   key=lambda s: int(s[5:]) if s[5:].isdigit() else 0)
    named = {_compile_metric(r.get("target")) for r in rows} - {"compile_rate"}
    keys += [key for key in (next(iter(named)) if len(named) == 1 else "compile_rate", "stopped_at_eos_rate")]
    fig, ax = plt.subplots(figsize=(7, 4))
    x = list(range(1, len(rows) + 1))
    for key in keys:
        pts = [(i, r[key]) for i, r in zip(x, rows, strict=True) if isinstance(r.get(key), int | float)]
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-", label=key)
    ax.set_xticks(x, [f"{i}\n{r.get('split', '')}" for i, r in zip(x, rows, strict=True)], fontsize=7)
    ax.set_xlabel("eval run (split)")
    ax.set_ylabel("rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{history.parent.name}: eval history")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(png.name + f".{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png)
