"""`codehone check`: judge candidates in parallel, with a content-addressed verdict cache.

Other stages (eval, iterate, dataset verification, the MCP `check` tool) call
`check(target, candidates, ...)`; the CLI verb is a thin shell around it.

* Parallelism: a process pool of `jobs` workers, one candidate per task (for
  a target with `batch_by_unit`, one unit's candidates per task: see `batches`). The judges spend
  their time in sandboxed compilers, and a process pool keeps `preexec_fn`
  (used by the sandbox) away from threads.
* Cache: key = sha256 over the candidate, the target, the toolchain version,
  the judge options, the unit (when there is one), the isolation level and
  JUDGE_VERSION (bumped when a judge's logic changes). One JSON file per
  verdict under `<cache>/<key[:2]>/<key>.json`, written atomically, so the
  folder is safe to delete at any time and concurrent runs never see half a
  file. Verdicts from a judge that crashed are not cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .executors import LocalPool, current, drop_shared_pool, shared_pool
from .records import Diagnostic, JsonlError, Verdict, read_jsonl, to_dict, write_text_atomic
from .targets import REGISTRY, TargetError, get
from .targets.verdict import rates as verdict_rates

JUDGE_VERSION = "4"  # 4: every judge fills the verdict schema (targets/verdict.py)


class CheckError(ValueError):
    """Bad input to `check`: a one-line message for the user, no traceback."""


@dataclass
class Item:
    """One candidate to judge, with what it came with (ids, unit) so the output can say which it was."""

    candidate: str
    unit: dict | None = None
    meta: dict | None = None


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    return Path(base) / "codehone" / "verdicts"


def toolchain_version(target: str) -> str:
    """The versions of everything that can change a verdict for `target`."""
    return get(target).toolchain_version()


def cache_key(
    target: str, candidate: str, unit: dict | None, options: dict, toolchain: str, isolation: str
) -> str:
    payload = json.dumps(
        {
            "v": JUDGE_VERSION,
            "target": target,
            "toolchain": toolchain,
            "isolation": isolation,
            "options": options,
            "unit": unit,
            "candidate": candidate,
        },
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def _cache_get(cache: Path | None, key: str) -> Verdict | None:
    if cache is None:
        return None
    p = cache / key[:2] / f"{key}.json"
    try:
        v = Verdict.from_dict(json.loads(p.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    v.cached = True
    return v


def _cache_put(cache: Path | None, key: str, v: Verdict) -> None:
    """Store a verdict; not when the judge or the sandbox itself failed (that is no fact about the code)."""
    if cache is None or v.stage == "internal":
        return
    d = to_dict(v)
    d["cached"] = False
    write_text_atomic(cache / key[:2] / f"{key}.json", json.dumps(d, sort_keys=True, ensure_ascii=False))


def _judge_one(target: str, candidate: str, unit: dict | None, options: dict) -> Verdict:
    """Run one judge; a crash of the judge itself becomes an `internal` verdict, never an exception."""
    t0 = time.monotonic()
    try:
        try:
            fn = get(target).judge
        except TargetError as e:
            raise CheckError(str(e)) from None
        v = fn(candidate, unit=unit, **options)
    except Exception as e:  # noqa: BLE001 - reported in the verdict, with the traceback's last line
        last = traceback.format_exc().strip().splitlines()[-1]
        v = Verdict(
            ok=False,
            stage="internal",
            diagnostics=[
                Diagnostic(f"judge crashed: {type(e).__name__}: {e}"[:1000], code="internal", level="error"),
                Diagnostic(last[:500], code="traceback", level="note"),
            ],
        )
    v.timings.setdefault("total", round(time.monotonic() - t0, 4))
    v.target = v.target or target
    return v


def _pool(jobs: int) -> LocalPool:
    """The shared worker pool (kept across calls, so eval's many small batches pay the start-up once);
    its fork server preloads the target packages, so workers start warm."""
    return shared_pool(jobs, preload=["codehone.check", *REGISTRY.values()])


def warm_pool(jobs: int, target: str) -> None:
    """Start the pool's workers now and load `target`'s judge in each (its `warm_worker`), so the
    first batch does not pay it. Benchmarks time from here."""
    _pool(jobs).on_every_worker(_warm_worker, target)


def _warm_worker(target: str) -> None:
    get(target).warm_worker()
    time.sleep(0.2)  # hold this worker so the next task starts another


def _worker(task: tuple[str, list[tuple[str, dict | None]], dict]) -> list[dict]:
    target, batch, options = task
    return [to_dict(_judge_one(target, cand, unit, options)) for cand, unit in batch]


def _unit_key(unit: dict | None) -> str:
    """Which unit a candidate is for: its id, else its module and name (a unit given inline)."""
    if not unit:
        return ""
    if unit.get("id"):
        return str(unit["id"])
    meta = unit.get("meta") or {}
    return f"{meta.get('module')}\0{unit.get('name')}"


def batches(todo: list[int], items: list[Item], jobs: int, by_unit: bool) -> list[list[int]]:
    """How the pool's tasks split the work: one candidate per task, or (`by_unit`) all the
    candidates of one unit in one task, largest first (most candidates, then the longest function:
    the pool hands them out in order, and the big ones last would leave a worker idle at the end).
    A serial run judges in that order too, so its per-process reference cache never thrashes on
    shuffled input.

    Why by unit: a worker may build the unit's reference and explore it (a second or more for differential execution) before
    its first verdict, then judges each further candidate in a fraction of that. Spread over the
    workers one by one, every worker would redo that for every unit. A unit's batch is halved while
    there are fewer batches than workers, so one unit with many candidates still uses every core.
    """
    if not by_unit:
        return [[i] for i in todo]
    groups: dict[str, list[int]] = {}
    for i in todo:
        groups.setdefault(_unit_key(items[i].unit), []).append(i)

    def cost(b: list[int]) -> tuple[int, int]:  # the unit's function size stands in for its cold cost
        return len(b), len((items[b[0]].unit or {}).get("artifact") or "")

    out = sorted(groups.values(), key=cost, reverse=True)
    while out and len(out) < jobs and len(out[0]) > 1:
        big = out.pop(0)
        out += [big[: len(big) // 2], big[len(big) // 2:]]
        out.sort(key=cost, reverse=True)
    return out


def check(
    target: str,
    candidates: Iterable[str | Item | dict],
    *,
    jobs: int = 1,
    cache_dir: Path | str | None | bool = None,
    options: dict | None = None,
    units: dict[str, dict] | None = None,
    progress: Callable[[int, int, Verdict], None] | None = None,
) -> list[Verdict]:
    """Judge every candidate for `target`; verdicts come back in input order.

    `candidates` are strings, `Item`s, or sample dicts (`candidate`, optional
    `unit` or `unit_id` resolved through `units`). `cache_dir=None` uses the
    default cache, `False` turns caching off. `options` go to the judge (e.g.
    `run_tests`, `timeout_s`, `modules_dir`) and are part of the key.
    """
    from .sandbox import best_isolation
    from .targets import available

    why = available(target)
    if why:
        raise CheckError(why)
    tgt = get(target)
    if tgt.runs_native:
        from .sandbox import IsolationError, require_isolation

        try:
            require_isolation()  # before any work: generated code never runs without a real sandbox by default
        except IsolationError as e:
            raise CheckError(str(e)) from None
    options = dict(options or {})
    if tgt.needs_modules and not options.get("modules_dir"):
        raise CheckError(
            f"{target} needs the reference modules: pass --units OUT/units.jsonl (its modules/ folder "
            "is used) or --modules DIR"
        )
    items = [_as_item(c, units, i) for i, c in enumerate(candidates)]
    if tgt.needs_unit:
        for i, it in enumerate(items):
            if it.unit is None:
                raise CheckError(
                    f"candidate {i}: a {target} candidate needs its unit (`unit`, or `unit_id` and --units)"
                )
    cache = (
        None
        if cache_dir is False
        else Path(cache_dir)
        if cache_dir not in (None, True)
        else default_cache_dir()
    )
    toolchain = toolchain_version(target)
    level = options.get("isolation") or best_isolation()
    opt_key = {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}
    keys = [cache_key(target, it.candidate, it.unit, opt_key, toolchain, level) for it in items]
    out: list[Verdict | None] = [None] * len(items)
    done = 0
    todo: list[int] = []
    for i, k in enumerate(keys):
        hit = _cache_get(cache, k)
        if hit is not None:
            out[i] = hit
            done += 1
            if progress:
                progress(done, len(items), hit)
        else:
            todo.append(i)

    def finish(i: int, v: Verdict) -> None:
        nonlocal done
        v.toolchain = v.toolchain or toolchain
        out[i] = v
        _cache_put(cache, keys[i], v)
        done += 1
        if progress:
            progress(done, len(items), v)

    if (jobs <= 1 and current() == "local") or len(todo) <= 1:
        for b in batches(todo, items, 1, by_unit=tgt.batch_by_unit):  # a unit's candidates in a row: see batches
            for i in b:
                finish(i, _judge_one(target, items[i].candidate, items[i].unit, options))
    else:
        plan = batches(todo, items, jobs, by_unit=tgt.batch_by_unit)
        tasks = [(target, [(items[i].candidate, items[i].unit) for i in b], options) for b in plan]
        # Every batch is submitted at once: the pool hands them out in the planned order (largest first).
        for n, res, err in _pool(jobs).imap_unordered(_worker, tasks, window=len(tasks)):
            batch = plan[n]
            if err is None:
                got = [Verdict.from_dict(d) for d in res]
            else:  # a dead worker: an internal verdict for each of its batch
                drop_shared_pool()
                got = [
                    Verdict(
                        ok=False,
                        stage="internal",
                        diagnostics=[Diagnostic(f"worker failed: {type(err).__name__}: {err}", code="internal")],
                    )
                    for _ in batch
                ]
            for i, v in zip(batch, got, strict=True):
                finish(i, v)
    return [v for v in out if v is not None]


def _as_item(c: str | Item | dict, units: dict[str, dict] | None, index: int) -> Item:
    if isinstance(c, Item):
        return c
    if isinstance(c, str):
        return Item(candidate=c)
    return sample_to_item(c, units, f"candidate {index}")


def sample_to_item(d: dict, units: dict[str, dict] | None, where: str) -> Item:
    """A sample line → Item: `candidate` (or `code`), and its unit inline or by `unit_id`."""
    cand = d.get("candidate", d.get("code"))
    if not isinstance(cand, str):
        raise CheckError(f'{where}: no "candidate" string in the sample')
    unit = d.get("unit")
    if unit is None and d.get("unit_id") is not None:
        if units is None:
            raise CheckError(f"{where}: unit_id {d['unit_id']!r} given but no --units file to resolve it")
        unit = units.get(d["unit_id"])
        if unit is None:
            raise CheckError(f"{where}: unit_id {d['unit_id']!r} is not in the units file")
    meta = {k: d[k] for k in ("id", "example_id", "k", "unit_id") if k in d}
    return Item(candidate=cand, unit=unit, meta=meta)


def load_units(path: Path) -> dict[str, dict]:
    try:
        return {u["id"]: u for u in read_jsonl(path) if "id" in u}
    except JsonlError as e:
        raise CheckError(str(e)) from None
    except OSError as e:
        raise CheckError(f"cannot read units file {path}: {e.strerror or e}") from None


def load_candidates(path: Path, units: dict[str, dict] | None) -> list[Item]:
    """A `.jsonl` file is a batch of samples (one per line); any other file is one candidate."""
    if not path.exists():
        raise CheckError(f"no such file: {path}")
    if path.is_dir():
        raise CheckError(f"{path} is a folder; give a source file or a SAMPLES.jsonl")
    if path.suffix != ".jsonl":
        try:
            return [Item(candidate=path.read_text(encoding="utf-8"), meta={"path": str(path)})]
        except (OSError, UnicodeDecodeError) as e:
            raise CheckError(f"cannot read {path}: {e}") from None
    items = []
    try:
        for n, d in enumerate(read_jsonl(path), 1):
            items.append(sample_to_item(d, units, f"{path}: sample {n}"))
    except JsonlError as e:
        raise CheckError(str(e)) from None
    return items


def summarize(verdicts: Sequence[Verdict], seconds: float) -> dict[str, Any]:
    """Aggregate figures for the summary table (and eval): rates, stage histogram, mean metrics."""
    n = len(verdicts)
    stages: dict[str, int] = {}
    for v in verdicts:
        key = f"{v.stage}:{'ok' if v.ok else 'fail'}"
        stages[key] = stages.get(key, 0) + 1
    s: dict[str, Any] = {
        "candidates": n,
        "ok": sum(v.ok for v in verdicts),
        "cached": sum(v.cached for v in verdicts),
        "stages": dict(sorted(stages.items())),
        "isolation": sorted({v.isolation for v in verdicts if v.isolation}),
        "seconds": round(seconds, 3),
        "verdicts_per_s": round(n / seconds, 2) if seconds > 0 else None,
    }
    s.update(verdict_rates(verdicts))  # compile_rate, pass_rate (verified passes), lint averages...
    for k in ("tests_passed", "tests_failed"):
        vals = [v.counts[k] for v in verdicts if isinstance(v.counts.get(k), int)]
        if vals:
            s[k] = sum(vals)
    for k in ("idiomatic_score", "doc_rate"):
        vals = [v.scores[k] for v in verdicts if k in v.scores]
        if vals:
            s[f"avg_{k}"] = round(sum(vals) / len(vals), 4)
    return s
