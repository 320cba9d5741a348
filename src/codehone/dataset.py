"""`codehone build`: units → a deduplicated, filtered, decontaminated, grouped split in several formats.

The steps, in order (each one counts what it drops, under a reason):
  1. read     every units.jsonl given; malformed lines and records lacking a
              field are reported with file and line number and skipped.
              Units are sorted by id, so the input order never matters.
  2. filter   unit reasons (other target, no artifact, license, generated,
              macro-only), before dedup so a bad unit never wins a cluster.
  3. dedup    exact (normalised code), then near (MinHash LSH); one unit kept
              per group/cluster by the rule in dedup.py.
  4. split    grouped by repository or file, by hashing the group key.
  5. decontam training units that overlap eval code (this build's val/test,
              eval unit files, benchmark files) are dropped.
  6. render   every unit in every mode with templates.py; examples whose
              prompt or completion exceed the token limits are dropped whole.
  7. write    per format and split, JSONL and Parquet; units.jsonl (the kept
              units with their split, for the judge), dropped.jsonl (every
              dropped unit and example with its reason), stats.json, the card.

Why these outputs: eval needs each example's unit (the reference module and
the function's name) to judge a completion, so units.jsonl travels with the
examples; dropped.jsonl makes every count in the card checkable. Outputs are
sorted and carry no timestamps, so the same inputs and recipe give the same
bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import card, dedup, filters, templates
from .config import BuildConfig
from .decontam import benchmark_texts, decontaminate
from .records import content_hash, write_jsonl_atomic, write_text_atomic
from .split import split_units


class BuildError(ValueError):
    """A build that cannot go on (no input, unreadable file, bad tokenizer): one line for the user."""


REQUIRED = {
    "id": str,
    "target": str,
    "repo": str,
    "path": str,
    "name": str,
    "signature": str,
    "source": str,
    "artifact": str,
}
OPTIONAL = {
    "language": (str, type(None)),
    "license": (str, type(None)),
    "doc": (str, type(None)),
    "meta": (dict, type(None)),
    "line": (int, type(None)),
    "commit": (str, type(None)),
    "repo_url": (str, type(None)),
}


def resolve_input(path: str | Path) -> Path:
    """A units file, or a `mine` output folder holding units.jsonl."""
    p = Path(path)
    if p.is_dir():
        p = p / "units.jsonl"
    if not p.is_file():
        raise BuildError(
            f"{path}: no such units file (give a units.jsonl or a `codehone mine` output folder)"
        )
    return p


def read_units(paths: list[str | Path], problems: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """All valid units of all inputs, sorted by id; problems get one `file:line: why` entry each."""
    units: dict[str, dict[str, Any]] = {}
    stats = {"files": [], "lines": 0, "malformed": 0, "repeated_ids": 0}
    for raw in paths:
        p = resolve_input(raw)
        stats["files"].append(str(raw))
        with p.open("r", encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                stats["lines"] += 1
                why = None
                try:
                    obj = json.loads(line)
                except ValueError as e:
                    why, obj = f"malformed JSON ({e})", None
                if why is None:
                    why = _unit_problem(obj)
                if why is not None:
                    stats["malformed"] += 1
                    problems.append(f"{p}:{lineno}: {why}")
                    continue
                old = units.get(obj["id"])
                if old is not None:
                    stats["repeated_ids"] += 1
                    # Same id twice (a unit mined twice): keep the same one whatever the input order.
                    if json.dumps(obj, sort_keys=True) >= json.dumps(old, sort_keys=True):
                        continue
                units[obj["id"]] = obj
    return [units[k] for k in sorted(units)], stats


def _unit_problem(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return f"not a JSON object but {type(obj).__name__}"
    for k, t in REQUIRED.items():
        if k not in obj:
            return f"unit lacks field {k!r}"
        if not isinstance(obj[k], t):
            return f"unit field {k!r} is {type(obj[k]).__name__}, not {t.__name__}"
    for k, ts in OPTIONAL.items():
        if k in obj and not isinstance(obj[k], ts):
            return f"unit field {k!r} has type {type(obj[k]).__name__}"
    return None


def _drop_record(u: dict[str, Any], stage: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {
        "unit_id": u["id"],
        "repo": u["repo"],
        "path": u["path"],
        "name": u["name"],
        "stage": stage,
        "reason": reason,
        **extra,
    }


def run_build(
    inputs: list[str | Path],
    out: str | Path,
    cfg: BuildConfig,
    log: Callable[[str], None] = lambda _m: None,
    timings: dict[str, float] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Build the dataset into `out`; returns the statistics (also written to out/stats.json).

    A rerun whose inputs, recipe and build code are unchanged (same `fingerprint`) and whose
    files are all present does nothing and returns the previous statistics, with
    `up_to_date: True`; `force` rebuilds anyway. `timings`, when given, receives seconds per
    step; they never enter the outputs, which must stay byte-identical between runs.
    """
    timings = {} if timings is None else timings
    clock = [time.perf_counter()]

    def lap(step: str) -> None:
        now = time.perf_counter()
        timings[step] = timings.get(step, 0.0) + now - clock[0]
        clock[0] = now

    out = Path(out)
    if not inputs:
        raise BuildError("no inputs: give one or more units.jsonl files or `codehone mine` output folders")
    fp = fingerprint(inputs, cfg)
    if not force:
        previous = _up_to_date(out, fp)
        if previous is not None:
            log(f"{out} is up to date (same inputs, recipe and code); --force rebuilds it")
            return {**previous, "up_to_date": True}
    try:
        counter = filters.TokenCounter(cfg.filters.tokenizer)
    except (OSError, ValueError) as e:
        raise BuildError(str(e)) from None

    problems: list[str] = []
    units, input_stats = read_units(inputs, problems)
    input_stats["problems"] = problems[:20]
    for msg in problems[:20]:
        log(f"skipped {msg}")
    if len(problems) > 20:
        log(f"... and {len(problems) - 20} more malformed lines")
    if not units:
        raise BuildError(
            f"no valid units in {', '.join(map(str, inputs))}"
            + (f" ({len(problems)} malformed lines)" if problems else " (empty input)")
        )
    units_in = len(units)
    repos_in = Counter(u["repo"] for u in units)
    dropped: list[dict[str, Any]] = []

    lap("read")

    # 2. unit filters
    unit_reasons: Counter = Counter()
    kept = []
    for u in units:
        r = filters.unit_reason(u, cfg.target, cfg.filters)
        if r is None:
            kept.append(u)
        else:
            unit_reasons[r] += 1
            dropped.append(_drop_record(u, "filter", r))
    units = kept
    if not units:
        log(f"every unit was filtered out ({', '.join(f'{k}={v}' for k, v in sorted(unit_reasons.items()))})")

    lap("filter")

    # 3. dedup
    dstats = dedup.DedupStats()
    n_exact = n_near = 0
    if cfg.dedup.exact.enabled:
        units, gone = dedup.exact_dedup(units, dstats)
        n_exact = len(gone)
        dropped.extend(_drop_record(d.unit, "dedup", d.reason, kept_id=d.kept_id) for d in gone)
    if cfg.dedup.near.enabled and units:
        nd = cfg.dedup.near
        units, gone = dedup.near_dedup(
            units,
            dstats,
            shingle=nd.shingle,
            num_perm=nd.num_perm,
            threshold=nd.threshold,
            verify=nd.verify,
            min_tokens=nd.min_tokens,
            seed=nd.seed,
        )
        n_near = len(gone)
        dropped.extend(_drop_record(d.unit, "dedup", d.reason, kept_id=d.kept_id) for d in gone)

    lap("dedup")

    # 4. split
    group_by, splits = split_units(units, cfg.split)
    groups = {
        s: len({(u["repo"], u["path"]) if group_by == "file" else u["repo"] for u in us})
        for s, us in splits.items()
    }

    lap("split")

    # 5. decontamination (training units only)
    decon: dict[str, Any] = {"dropped": 0, "by_source": {}}
    if cfg.decontam.enabled:
        eval_code: list[tuple[str, str]] = []
        if cfg.decontam.against_own_eval_splits:
            eval_code += [(u["source"], f"split:{s}") for s, us in splits.items() if s != "train" for u in us]
        for f in cfg.decontam.eval_units:
            eval_problems: list[str] = []
            eval_units, _ = read_units([f], eval_problems)
            for msg in eval_problems[:20]:
                log(f"skipped eval unit: {msg}")
            eval_code += [(u["source"], f"eval_units:{f}") for u in eval_units]
        for f in cfg.decontam.benchmarks:
            try:
                eval_code += [(t, f"benchmark:{f}") for t in benchmark_texts(f)]
            except OSError as e:
                raise BuildError(f"{f}: cannot read benchmark file ({e.strerror or e})") from None
        if eval_code and splits.get("train"):
            train, gone = decontaminate(splits["train"], eval_code, cfg.decontam.ngram, cfg.decontam.overlap)
            splits["train"] = train
            by_src = Counter(label.split(":", 1)[0] for _u, label in gone)
            decon = {"dropped": len(gone), "by_source": dict(sorted(by_src.items()))}
            dropped.extend(_drop_record(u, "decontam", "contaminated", overlaps=label) for u, label in gone)

    lap("decontam")

    # 6. render examples, measure, drop what does not fit
    t = templates.templates_for(cfg.target)
    modes = cfg.output.modes or list(t.modes)
    primary = cfg.output.formats[0]
    examples: dict[str, list[dict[str, Any]]] = {}
    lengths: dict[str, dict[str, list[int]]] = {}
    ex_reasons: Counter = Counter()
    ex_counts: dict[str, dict[str, int]] = {}
    for s, us in splits.items():
        rendered = [(u, m, templates.render_parts(cfg.target, m, u)) for u in us for m in modes]
        pcs = [templates.prompt_and_completion(primary, p) for _u, _m, p in rendered]
        ptoks = counter.count([p for p, _c in pcs])
        # Every mode of a unit has the same completion: count it once per unit.
        per_unit = dict(zip((u["id"] for u in us), counter.count([t.response(u) for u in us]), strict=True))
        ctoks = [per_unit[u["id"]] for u, _m, _p in rendered]
        keep, lp, lc = [], [], []
        for (u, m, parts), pt, ct in zip(rendered, ptoks, ctoks, strict=True):
            r = filters.example_reason(pt, ct, cfg.filters)
            if r is not None:
                ex_reasons[r] += 1
                dropped.append(_drop_record(u, "length", r, mode=m, prompt_tokens=pt, completion_tokens=ct))
                continue
            keep.append(
                {"id": content_hash(u["id"], m), "unit_id": u["id"], "split": s, "mode": m, "parts": parts}
            )
            lp.append(pt)
            lc.append(ct)
        order = sorted(range(len(keep)), key=lambda i: keep[i]["id"])
        examples[s] = [keep[i] for i in order]
        lengths[s] = {"prompt": [lp[i] for i in order], "completion": [lc[i] for i in order]}
        ex_counts[s] = dict(sorted(Counter(e["mode"] for e in keep).items()))

    # Units without any surviving example are not in the dataset.
    used = {e["unit_id"] for es in examples.values() for e in es}
    no_example = sum(1 for us in splits.values() for u in us if u["id"] not in used)
    for s in splits:
        splits[s] = [u for u in splits[s] if u["id"] in used]

    lap("render_and_measure")

    # 7. write
    written = _write_outputs(out, cfg, splits, examples, dropped)
    stats = {
        "target": cfg.target,
        "inputs": input_stats,
        "units_in": units_in,
        "filtered": dict(sorted(unit_reasons.items())),
        "dedup": {
            "exact_duplicates": n_exact,
            "exact_groups": {str(k): v for k, v in sorted(dstats.exact_groups.items())},
            "near_duplicates": n_near,
            "near_clusters": {str(k): v for k, v in sorted(dstats.near_clusters.items())},
            "near_candidate_pairs": dstats.near_candidate_pairs,
            "near_confirmed_pairs": dstats.near_confirmed_pairs,
            "near_short_copies": dstats.near_short_copies,
            "largest_clusters": dstats.largest_clusters,
        },
        "decontam": decon,
        "split": {
            "group_by": group_by,
            "groups": groups,
            "units": {s: len(us) for s, us in splits.items()},
            "examples": {s: len(es) for s, es in examples.items()},
            "examples_by_mode": ex_counts,
        },
        "examples_filtered": dict(sorted(ex_reasons.items())),
        "units_without_examples": no_example,
        "units_out": sum(len(us) for us in splits.values()),
        "repos": _repo_table(repos_in, splits),
        "licenses": dict(
            sorted(Counter(u.get("license") or "unknown" for us in splits.values() for u in us).items())
        ),
        "lengths": {
            "tokenizer": counter.name,
            "estimated": counter.estimated,
            "measured_on": f"{primary} format",
            **card.length_summary(lengths),
        },
        "config": cfg.model_dump(mode="json"),
        "fingerprint": fp,
        "files": written,
    }
    lap("write")
    samples = {}
    for e in examples.get("train", []):
        size = len(e["parts"].user) + len(e["parts"].assistant or "")
        if e["mode"] not in samples or size < samples[e["mode"]][0]:
            samples[e["mode"]] = (size, e["parts"])
    written += card.write_card(out, stats, lengths, cfg, {m: p for m, (_n, p) in samples.items()})
    stats["files"] = sorted(written + ["stats.json"])
    write_text_atomic(
        out / "stats.json", json.dumps(stats, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    )
    lap("card")
    return stats


def fingerprint(inputs: list[str | Path], cfg: BuildConfig) -> str:
    """A content hash of everything a build depends on: input and eval files, the recipe, the build code."""
    h = hashlib.sha256()

    def add_file(p: Path) -> None:
        h.update(str(p).encode() + b"\0")
        try:
            with p.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except OSError:
            h.update(b"<missing>")

    for p in inputs:
        add_file(resolve_input(p))
    for p in [*cfg.decontam.eval_units, *cfg.decontam.benchmarks]:
        add_file(Path(p))
    if cfg.filters.tokenizer:
        t = Path(cfg.filters.tokenizer)
        add_file(t / "tokenizer.json" if t.is_dir() else t)
    h.update(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode())
    here = Path(__file__).resolve().parent
    for name in _BUILD_CODE:
        add_file(here / name)
    # The target's own package (its prompt templates live there): a changed prompt is a new build.
    for p in _target_code(cfg.target):
        add_file(p)
    return h.hexdigest()[:32]


def _target_code(target: str) -> list[Path]:
    import importlib

    from .targets import REGISTRY

    mod = importlib.import_module(REGISTRY[target])
    return sorted(Path(mod.__file__).resolve().parent.glob("*.py"))


# The modules whose code shapes the output: a change to any of them makes a rebuild necessary.
_BUILD_CODE = (
    "dataset.py",
    "dedup.py",
    "filters.py",
    "decontam.py",
    "split.py",
    "card.py",
    "templates.py",
    "licenses.py",
    "config.py",
    "records.py",
)


def _up_to_date(out: Path, fp: str) -> dict[str, Any] | None:
    try:
        stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stats, dict) or stats.get("fingerprint") != fp:
        return None
    files = stats.get("files") or []
    if not all(isinstance(f, str) and (out / f).is_file() for f in files):
        return None
    return stats


def _repo_table(repos_in: Counter, splits: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {r: {"in": n, **{s: 0 for s in splits}} for r, n in repos_in.items()}
    for s, us in splits.items():
        for u in us:
            table[u["repo"]][s] += 1
    return dict(sorted(table.items()))


# ---------------------------------------------------------------- writing


def _write_outputs(
    out: Path,
    cfg: BuildConfig,
    splits: dict[str, list[dict[str, Any]]],
    examples: dict[str, list[dict[str, Any]]],
    dropped: list[dict[str, Any]],
) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    written: list[str] = []
    for i, fmt in enumerate(cfg.output.formats):
        sub = "" if i == 0 else f"{fmt}/"
        for s, es in examples.items():
            rows = [
                {
                    "id": e["id"],
                    "unit_id": e["unit_id"],
                    "split": e["split"],
                    "mode": e["mode"],
                    **templates.as_format(fmt, e["parts"]),
                }
                for e in es
            ]
            write_jsonl_atomic(out / f"{sub}{s}.jsonl", rows)
            written.append(f"{sub}{s}.jsonl")
            if cfg.output.parquet:
                write_parquet(out / f"{sub}{s}.parquet", rows, fmt)
                written.append(f"{sub}{s}.parquet")
    write_jsonl_atomic(
        out / "units.jsonl",
        sorted(({**u, "split": s} for s, us in splits.items() for u in us), key=lambda u: u["id"]),
    )
    write_jsonl_atomic(
        out / "dropped.jsonl", sorted(dropped, key=lambda d: (d["stage"], d["unit_id"], d.get("mode", "")))
    )
    return written + ["units.jsonl", "dropped.jsonl"]


def _remove_stale(out: Path) -> None:
    """Remove the files a previous build listed in stats.json, so a changed recipe leaves no orphans."""
    try:
        old = json.loads((out / "stats.json").read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return
    for rel in old:
        p = (out / rel).resolve()
        if isinstance(rel, str) and p.is_relative_to(out.resolve()) and p.is_file():
            p.unlink()


def parquet_schema(fmt: str):
    import pyarrow as pa

    common = [("id", pa.string()), ("unit_id", pa.string()), ("split", pa.string()), ("mode", pa.string())]
    fields = {
        "chat": [("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])))],
        "prompt_completion": [("prompt", pa.string()), ("completion", pa.string())],
        "alpaca": [
            ("system", pa.string()),
            ("instruction", pa.string()),
            ("input", pa.string()),
            ("output", pa.string()),
        ],
        "text": [("text", pa.string())],
    }[fmt]
    return pa.schema(common + fields)


def write_parquet(path: Path, rows: list[dict[str, Any]], fmt: str) -> None:
    """Parquet with an explicit schema (so an empty split still has its columns), written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=parquet_schema(fmt))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
