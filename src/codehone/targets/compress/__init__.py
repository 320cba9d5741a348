"""The `compress` target: code → a compact notation that expands back to the same program.

Everything about it lives in this package:
  notation.py        the format (a symbol map line, then the code) and its parser
  aliases.py         fresh short aliases, and which identifiers are worth one
  python_code.py     Python ⇄ notation with `ast` (equality: `ast.dump` without positions)
  c_code.py          C ⇄ notation with tree-sitter (equality: the tree without trivia)
  tokens.py          token counts in a named offline tokenizer (cl100k_base, from bpe-openai)
  mine.py            one unit per function, its reference notation verified before it is kept
  templates.py       the compress prompt
  judge.py           expand → parse → compare with the unit's source; tokens before/after

The reference compressor is deterministic and lossless, so every training pair is verified and
no teacher is needed; a model (or `codehone distill`'s teacher) may beat it, and `iterate` with
`keep: best_of_k` keeps the answer with the fewest tokens that still round-trips.
"""

from __future__ import annotations

import statistics

from .. import Miner, Target
from .templates import COMPRESS

NAME = "compress"


def _judge(candidate: str, *, unit: dict | None = None, **kw):
    from .judge import judge

    return judge(candidate, unit=unit, **kw)


def toolchain_version() -> str:
    import sys
    from importlib.metadata import PackageNotFoundError, version

    def v(p: str) -> str:
        try:
            return version(p)
        except PackageNotFoundError:  # pragma: no cover
            return "?"

    return (f"compress-notation 1 + python {sys.version_info[0]}.{sys.version_info[1]} ast + "
            f"tree-sitter-c {v('tree-sitter-c')} + bpe-openai {v('bpe-openai')}")


def _quantile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    if len(xs) == 1:
        return round(xs[0], 4)
    return round(statistics.quantiles(xs, n=100, method="inclusive")[int(q * 100) - 1], 4)


def ratio_figures(rows: list[tuple[int, int]], prefix: str = "") -> dict:
    """median, p10 (the worst tenth) and total ratio of (tokens_before, tokens_after) pairs."""
    if not rows:
        return {}
    ratios = sorted(b / max(a, 1) for b, a in rows)
    return {f"{prefix}ratio_median": round(statistics.median(ratios), 4), f"{prefix}ratio_p10": _quantile(ratios, 0.10),
            f"{prefix}ratio_total": round(sum(b for b, _ in rows) / max(1, sum(a for _, a in rows)), 4)}


def metric_extras(samples: list, _built: list) -> dict:
    """Round trips, and token ratios (cl100k_base) over the passing samples: a ratio of a wrong answer
    means nothing. `round_trip_rate` counts equal trees whatever the length (a copy of the input is one)."""
    from .. import verdict as schema
    from . import tokens

    ok = [s["verdict"]["counts"] for s in samples if schema.verified(s["verdict"])]
    trips = sum(bool((s["verdict"].get("counts") or {}).get("round_trip")) for s in samples)
    rows = [(c["tokens_before"], c["tokens_after"]) for c in ok if "tokens_before" in c]
    return {"round_trip_rate": round(trips / len(samples), 4) if samples else 0.0, "tokenizer": tokens.label(),
            **ratio_figures(rows)}


def tokenizer_extras(samples: list, tokenizer, units: dict | None = None) -> dict:
    """The same ratios in the model's own tokenizer (what the model pays to read and write)."""
    from .. import verdict as schema

    def n(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    rows = []
    for s in samples:
        unit = (units or {}).get(s.get("unit_id")) or {}
        if schema.verified(s["verdict"]) and unit.get("source"):
            rows.append((n(unit["source"]), n(s.get("code") or "")))
    return ratio_figures(rows, prefix="model_tokenizer_")


def answer_cost(code: str) -> float:
    """iterate's best_of_k keeps the passing answer with the fewest tokens, not characters."""
    from . import tokens

    return tokens.count(code)


# ---------------------------------------------------------------- mine


def _options(min_chars: int = 80, max_chars: int = 2400, **_ignored):
    from .mine import MineOptions

    return MineOptions(min_chars=min_chars, max_chars=max_chars)


def _options_key(opts) -> list[str]:
    return [str(opts.min_chars), str(opts.max_chars), opts.tokenizer]


def _mine_file(path, src, opts, _state):
    from .mine import mine_file

    return mine_file(path, src, opts)


def _default_corpus():
    from .mine import default_corpus

    return default_corpus()


def _warm(_opts) -> str | None:
    from .tokens import TokenizerUnavailable, encoding

    try:
        encoding()
    except TokenizerUnavailable as e:
        return str(e)
    return None


TARGET = Target(
    name=NAME,
    answer_lang="notation",
    answer_name="compressed code (codehone notation)",
    judge=_judge,
    toolchain_version=toolchain_version,
    miner=Miner(
        options=_options,
        options_key=_options_key,
        default_corpus=_default_corpus,
        corpus_description="the Python standard library",
        new_state=lambda _src: {},
        mine_file=_mine_file,
        warm=_warm,
        warm_message="loading the cl100k_base tokenizer",
        extensions=(".py", ".c", ".h"),
    ),
    templates=COMPRESS,
    regenerate_mode="compress",
    needs_unit=True,
    runs_tests=False,
    runs_native=False,  # nothing is executed: the answer is parsed and compared
    compile_metric="expand_rate",
    compile_label="expand rate",
    metric_extras=metric_extras,
    tokenizer_extras=tokenizer_extras,
    answer_cost=answer_cost,
    quickstart_recipe="compress-tiny-scratch.yaml",
    metric_notes="expands = the notation parses and its body parses in the unit's language; pass@1 = it expands "
                 "to the same syntax tree as the unit's source (round trip) with fewer cl100k_base tokens than the "
                 "source; round_trip_rate = equal trees whatever the length. Ratios: source tokens / answer tokens "
                 "(map included) over passing answers, in cl100k_base and in the model's tokenizer.",
    description="code → a compact notation that expands back to the same program (Python, C)",
)
