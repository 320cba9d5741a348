"""Decontamination: drop training units whose code overlaps evaluation code.

Why: a score on a test set the model trained on measures memory, not skill.
Deduplication already removes near-copies inside one build; this step also
guards against code held out elsewhere: eval unit files, user-given benchmark
files, and (by default) this build's own val/test splits.

The measure is n-gram overlap on normalised code tokens (comments dropped,
split on non-word characters, identifiers kept): a training unit is dropped
when at least `overlap` of its distinct n-grams occur in the eval code. A unit
shorter than n tokens is dropped only on an exact normalised match (its whole
token sequence occurs in the eval code), so short idioms such as
`return x;` do not condemn every short function.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dedup import code_tokens


def ngrams(tokens: list[str], n: int) -> set[str]:
    return {" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def benchmark_texts(path: str | Path) -> list[str]:
    """The code of a benchmark file: every string value of a JSON/JSONL record, or the whole text otherwise."""
    p = Path(path)
    text = p.read_text(encoding="utf-8", errors="replace")
    if p.suffix in (".jsonl", ".json"):
        out: list[str] = []
        objs: list[Any] = []
        try:
            objs = (
                [json.loads(text)]
                if p.suffix == ".json"
                else [json.loads(ln) for ln in text.splitlines() if ln.strip()]
            )
        except ValueError:
            return [text]
        stack = objs
        while stack:
            o = stack.pop()
            if isinstance(o, str):
                out.append(o)
            elif isinstance(o, dict):
                stack.extend(o.values())
            elif isinstance(o, list):
                stack.extend(o)
        return out
    return [text]


@dataclass
class EvalIndex:
    """The n-grams and token streams of evaluation code, with where each came from."""

    n: int
    grams: dict[str, str] = field(default_factory=dict)  # n-gram → source label
    _parts: list[str] = field(default_factory=list)  # " tok tok ... " per eval document
    _labels: list[str] = field(default_factory=list)
    _starts: list[int] = field(default_factory=list)
    _size: int = 0
    _joined: str | None = None

    def add(self, code: str, label: str) -> None:
        toks = code_tokens(code)
        if not toks:
            return
        for g in ngrams(toks, self.n):
            self.grams.setdefault(g, label)
        part = " " + " ".join(toks) + " "
        self._starts.append(self._size)
        self._parts.append(part)
        self._size += len(part) + 1  # + the NUL separator
        self._labels.append(label)
        self._joined = None

    def match(self, code: str, overlap: float) -> str | None:
        """The label of the eval code this code overlaps, or None."""
        toks = code_tokens(code)
        if not toks:
            return None
        if len(toks) < self.n:
            # One search over all eval documents joined by NUL (which no token contains).
            if self._joined is None:
                self._joined = "\0".join(self._parts)
            at = self._joined.find(" " + " ".join(toks) + " ")
            return None if at < 0 else self._labels[bisect.bisect_right(self._starts, at) - 1]
        grams = ngrams(toks, self.n)
        hits = [self.grams[g] for g in grams if g in self.grams]
        if hits and len(hits) / len(grams) >= overlap:
            return min(hits)
        return None


def decontaminate(
    train: list[dict[str, Any]],
    eval_code: Iterable[tuple[str, str]],
    n: int,
    overlap: float,
) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str]]]:
    """(kept, [(dropped unit, label of the eval code it overlaps)]); eval_code is (code, label) pairs."""
    index = EvalIndex(n)
    for code, label in eval_code:
        index.add(code, label)
    kept, dropped = [], []
    for u in train:
        hit = index.match(u["source"], overlap)
        if hit is None:
            kept.append(u)
        else:
            dropped.append((u, hit))
    return kept, dropped
