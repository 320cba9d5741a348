"""The dataset card: README.md with the build's figures, the templates, and length histograms.

Why: the systems this replaces could not say what their data contained. The
card states every count the build made (units in, each drop reason, per split,
per repository and license), the prompt templates used, and how long prompts
and completions are, so a reader can judge the data without rerunning code.

The README starts with Hugging Face `configs:` front matter, so
`datasets.load_dataset(DATASET_DIR)` finds the splits of every format. PNGs
are drawn with matplotlib's Agg backend and saved without the Software
metadata, so a rebuild gives byte-identical files.
"""

from __future__ import annotations

import io
import statistics
from pathlib import Path
from typing import Any

from . import templates
from .config import BuildConfig
from .records import write_text_atomic


def _summary(xs: list[int]) -> dict[str, Any]:
    if not xs:
        return {"n": 0}
    s = sorted(xs)
    return {
        "n": len(s),
        "min": s[0],
        "median": statistics.median_low(s),
        "p95": s[min(len(s) - 1, int(0.95 * len(s)))],
        "max": s[-1],
        "mean": round(sum(s) / len(s), 1),
    }


def length_summary(lengths: dict[str, dict[str, list[int]]]) -> dict[str, Any]:
    allp = [x for v in lengths.values() for x in v["prompt"]]
    allc = [x for v in lengths.values() for x in v["completion"]]
    return {"prompt": _summary(allp), "completion": _summary(allc)}


def _histogram(
    path: Path, lengths: dict[str, dict[str, list[int]]], key: str, xlabel: str, limit: int | None, title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    data = [(s, v[key]) for s, v in lengths.items() if v[key]]
    if data:
        hi = max(max(xs) for _s, xs in data)
        bins = list(range(0, hi + max(1, hi // 40) + 1, max(1, hi // 40)))
        ax.hist(
            [xs for _s, xs in data], bins=bins, label=[f"{s} ({len(xs)})" for s, xs in data], stacked=True
        )
        if limit is not None:
            ax.axvline(limit, color="black", linestyle="--", linewidth=1, label=f"limit {limit}")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no examples", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("examples")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    write_text_atomic(path, buf.getvalue())


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _front_matter(cfg: BuildConfig, stats: dict[str, Any]) -> str:
    lines = ["---", "configs:"]
    present = [s for s, n in stats["split"]["examples"].items() if n > 0]
    for i, fmt in enumerate(cfg.output.formats):
        sub = "" if i == 0 else f"{fmt}/"
        lines.append(f"- config_name: {'default' if i == 0 else fmt}")
        lines.append("  data_files:")
        for s in present:
            lines.append(f"  - split: {s}")
            lines.append(f"    path: {sub}{s}.jsonl")
    lines.append("---")
    return "\n".join(lines) if present else ""


def write_card(
    out: Path,
    stats: dict[str, Any],
    lengths: dict[str, dict[str, list[int]]],
    cfg: BuildConfig,
    samples: dict[str, templates.Parts] | None = None,
) -> list[str]:
    """Write README.md (and plots/*.png); returns the files written, relative to `out`.

    `samples` (mode → rendered parts) are shown verbatim so a reader sees exactly what the model reads.
    """
    files: list[str] = []
    if cfg.output.plots:
        how = f"kept examples; {stats['lengths']['tokenizer']}"
        lim = cfg.filters
        _histogram(
            out / "plots" / "prompt_tokens.png",
            lengths,
            "prompt",
            "prompt tokens",
            lim.max_prompt_tokens,
            how,
        )
        _histogram(
            out / "plots" / "completion_tokens.png",
            lengths,
            "completion",
            "completion tokens",
            lim.max_completion_tokens,
            how,
        )
        files += ["plots/prompt_tokens.png", "plots/completion_tokens.png"]

    d, sp = stats["dedup"], stats["split"]
    t = templates.describe(cfg.target)
    parts = []
    fm = _front_matter(cfg, stats)
    if fm:
        parts.append(fm)
    parts.append(f"# codehone dataset: {cfg.target}\n")
    parts.append(
        f"Built by `codehone build` from {len(stats['inputs']['files'])} units file(s): "
        + ", ".join(f"`{f}`" for f in stats["inputs"]["files"])
        + ".\n"
    )
    parts.append("## Summary\n")
    filt_total = sum(stats["filtered"].values())
    rows = [
        ["units in", stats["units_in"]],
        ["malformed input lines (skipped)", stats["inputs"]["malformed"]],
        ["repeated unit ids (same unit read twice)", stats["inputs"]["repeated_ids"]],
        ["filtered (all reasons)", filt_total],
        ["exact duplicates", d["exact_duplicates"]],
        ["near-duplicates", d["near_duplicates"]],
        ["decontaminated (train)", stats["decontam"]["dropped"]],
        ["units left with no example (every mode too long)", stats["units_without_examples"]],
        ["units out", stats["units_out"]],
        ["examples out", sum(sp["examples"].values())],
        ["examples dropped for length", sum(stats["examples_filtered"].values())],
    ]
    parts.append(_table(["", "count"], rows) + "\n")

    parts.append("## Splits\n")
    parts.append(
        f"Grouped by **{sp['group_by']}** (no group is in two splits); a group's split is a hash of its key, "
        f"so adding data never moves an existing unit. Ratios: "
        + ", ".join(f"{s} {r:g}" for s, r in cfg.split.ratios.items())
        + ".\n"
    )
    parts.append(
        _table(
            ["split", "groups", "units", "examples", "by mode"],
            [
                [
                    s,
                    sp["groups"][s],
                    sp["units"][s],
                    sp["examples"][s],
                    ", ".join(f"{m} {n}" for m, n in sp["examples_by_mode"].get(s, {}).items()) or "-",
                ]
                for s in sp["units"]
            ],
        )
        + "\n"
    )

    parts.append("## Filtered, by reason\n")
    unit_rows = [[r, stats["filtered"].get(r, 0)] for r in _reasons(stats["filtered"], "unit")]
    parts.append("Units (before deduplication):\n\n" + _table(["reason", "units"], unit_rows) + "\n")
    ex_rows = [
        [r, stats["examples_filtered"].get(r, 0)] for r in _reasons(stats["examples_filtered"], "example")
    ]
    lim = cfg.filters
    parts.append(
        f"Examples (after rendering; limits: prompt {lim.max_prompt_tokens}, completion {lim.max_completion_tokens}, "
        f"total {lim.max_total_tokens} tokens; nothing is truncated):\n\n"
        + _table(["reason", "examples"], ex_rows)
        + "\n"
    )
    if stats["inputs"]["problems"]:
        parts.append(
            "Malformed input lines (first 20):\n\n"
            + "\n".join(f"- `{p}`" for p in stats["inputs"]["problems"])
            + "\n"
        )

    parts.append("## Deduplication\n")
    nd = cfg.dedup.near
    parts.append(
        f"Exact: normalised code (comments dropped, whitespace collapsed). Near: MinHash LSH (datasketch), "
        f"{nd.shingle}-token shingles of code-aware tokens (split on non-word characters, variables renamed "
        f"canonically), {nd.num_perm} permutations, Jaccard threshold {nd.threshold}"
        + (", candidates confirmed by their MinHash estimate" if nd.verify else "")
        + ". "
        "Kept per cluster: documented over undocumented, permissive over other over unknown license, "
        "then the smallest id.\n"
    )
    parts.append(
        _table(
            ["", "count"],
            [
                ["exact duplicates dropped", d["exact_duplicates"]],
                ["exact groups, by size", _sizes(d["exact_groups"])],
                ["near-duplicates dropped", d["near_duplicates"]],
                ["near clusters, by size", _sizes(d["near_clusters"])],
                [
                    "LSH candidate pairs / confirmed",
                    f"{d['near_candidate_pairs']} / {d['near_confirmed_pairs']}",
                ],
                [
                    f"short units (< {cfg.dedup.near.min_tokens} tokens) equal up to renaming",
                    d["near_short_copies"],
                ],
            ],
        )
        + "\n"
    )
    if d["largest_clusters"]:
        parts.append(
            "Largest near-duplicate clusters:\n\n"
            + _table(
                ["size", "kept", "member names"],
                [
                    [
                        c["size"],
                        f"`{c['kept']}`",
                        ", ".join(c["members"][:8]) + (" ..." if len(c["members"]) > 8 else ""),
                    ]
                    for c in d["largest_clusters"]
                ],
            )
            + "\n"
        )

    parts.append("## Decontamination\n")
    dc = cfg.decontam
    parts.append(
        f"Training units dropped when >= {dc.overlap:g} of their {dc.ngram}-grams of normalised code tokens occur "
        f"in eval code (shorter units: an exact normalised match). Eval code: "
        + ", ".join(
            (["this build's val/test"] if dc.against_own_eval_splits else [])
            + [f"`{f}`" for f in dc.eval_units + dc.benchmarks]
        )
        + ".\n"
    )
    parts.append(
        _table(
            ["source", "train units dropped"],
            [[k, v] for k, v in stats["decontam"]["by_source"].items()] or [["(none)", 0]],
        )
        + "\n"
    )

    parts.append("## Repositories\n")
    splits = list(sp["units"])
    parts.append(
        _table(
            ["repository", "units in", *splits],
            [[r, v["in"], *(v[s] for s in splits)] for r, v in stats["repos"].items()],
        )
        + "\n"
    )
    parts.append("## Licenses (units out)\n")
    parts.append(_table(["license", "units"], [[k, v] for k, v in stats["licenses"].items()]) + "\n")

    parts.append("## Lengths\n")
    ln = stats["lengths"]
    note = (
        " For chat, the prompt is the system and user message contents; the model's chat template adds a few"
        " tokens per message."
        if cfg.output.formats[0] == "chat"
        else ""
    )
    est = (
        " The estimate counts each punctuation character and newline as one token and each word as one token"
        " per 4 characters; it leans high for byte-level BPE tokenizers. Give `filters.tokenizer` for exact counts."
        if ln["estimated"]
        else ""
    )
    parts.append(f"Measured with the {ln['tokenizer']}, on the {ln['measured_on']}.{note}{est}\n")
    parts.append(
        _table(
            ["", "n", "min", "median", "p95", "max", "mean"],
            [
                [k, *(ln[k].get(c, "-") for c in ("n", "min", "median", "p95", "max", "mean"))]
                for k in ("prompt", "completion")
            ],
        )
        + "\n"
    )
    if cfg.output.plots:
        parts.append(
            "![prompt tokens](plots/prompt_tokens.png)\n\n![completion tokens](plots/completion_tokens.png)\n"
        )

    parts.append("## Templates\n")
    parts.append(
        f"One source of truth: `codehone.templates` (target `{cfg.target}`), shared by train, eval and serve.\n"
    )
    parts.append(f"System prompt:\n\n```text\n{t['system']}\n```\n")
    parts.append(
        _table(
            ["mode", "prompt", "response"],
            [[m, desc, t["response"]] for m, desc in t["modes"].items()],
        )
        + "\n"
    )
    parts.append(
        f"Role-less formats (prompt/completion, text) lay the parts out as:\n\n```text\n{t['plain_layout']}```\n"
    )
    for mode, p in sorted((samples or {}).items()):
        parts.append(
            f"Example ({mode}, the shortest in train):\n\n~~~~text\n[user]\n{p.user}\n\n[assistant]\n{p.assistant}\n~~~~\n"
        )
    parts.append("## Files\n")
    fmts = cfg.output.formats
    parts.append(
        "- `{split}.jsonl`"
        + (" / `.parquet`" if cfg.output.parquet else "")
        + f": the `{fmts[0]}` format"
        + "".join(
            f"\n- `{f}/{{split}}.jsonl`"
            + (" / `.parquet`" if cfg.output.parquet else "")
            + f": the `{f}` format"
            for f in fmts[1:]
        )
        + "\n- every example has `id`, `unit_id`, `split`, `mode`"
        + "\n- `units.jsonl`: the units behind the examples, with their split (for the judge)"
        + "\n- `dropped.jsonl`: every dropped unit or example, with its stage and reason"
        + "\n- `stats.json`: every figure of this card, and the full build config\n"
    )
    write_text_atomic(out / "README.md", "\n".join(parts))
    return files + ["README.md"]


def _reasons(counts: dict[str, int], kind: str) -> list[str]:
    from . import filters

    known = filters.UNIT_REASONS if kind == "unit" else filters.EXAMPLE_REASONS
    return list(known) + sorted(set(counts) - set(known))


def _sizes(groups: dict[str, int]) -> str:
    return ", ".join(f"{n}×{k}" for k, n in groups.items()) or "-"
