"""Deterministic, grouped, stable train/val/test split.

Why: the systems this replaces split at random, so functions of one file sat
in both train and validation, and the validation score rewarded memory.

  * Grouped: every unit of a group (a repository, or a file) goes to the same
    split, so no group ever appears in two splits.
  * Stable: a group's split is a pure function of its key, the ratios and a
    salt (sha256 of salt + key, read as a number in [0, 1), placed on the
    cumulative ratios). Adding repositories never moves an existing unit; a
    changed ratio moves only the groups whose number crosses a boundary.
  * Repository or file: grouping by repository is the stronger guarantee, but
    with few repositories a hash split is lumpy (3 repositories cannot make
    70/15/15). `group_by: auto` groups by repository only when the smallest
    split can expect `min_groups_per_split` repositories
    (repos x smallest ratio >= min), and otherwise by file (repo + path).
    Auto can switch to repository grouping when the corpus grows past that
    size, which reshuffles; pin `group_by` in a recipe for a long-lived dataset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from .config import SplitConfig


def group_key(unit: dict[str, Any], group_by: str) -> str:
    if group_by == "repo":
        return unit["repo"]
    return f"{unit['repo']}/{unit['path']}"


def choose_group_by(units: Iterable[dict[str, Any]], cfg: SplitConfig) -> str:
    """The grouping `auto` resolves to for these units (see the module doc)."""
    if cfg.group_by != "auto":
        return cfg.group_by
    repos = {u["repo"] for u in units}
    smallest = min((r for r in cfg.ratios.values() if r > 0), default=1.0)
    return "repo" if len(repos) * smallest >= cfg.min_groups_per_split else "file"


def bucket(key: str, salt: str) -> float:
    """A uniform number in [0, 1) that depends only on (salt, key)."""
    h = hashlib.sha256(f"{salt}\0{key}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def assign(key: str, ratios: dict[str, float], salt: str) -> str:
    x = bucket(key, salt)
    acc = 0.0
    last = ""
    for name, r in ratios.items():
        if r <= 0:
            continue
        acc += r
        last = name
        if x < acc:
            return name
    return last  # float rounding at the very top


def split_units(units: list[dict[str, Any]], cfg: SplitConfig) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    """(group_by used, {split: units sorted by id}); every split of the ratios is present, maybe empty."""
    by = choose_group_by(units, cfg)
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in cfg.ratios}
    cache: dict[str, str] = {}
    for u in units:
        k = group_key(u, by)
        s = cache.get(k)
        if s is None:
            s = cache[k] = assign(k, cfg.ratios, cfg.salt)
        out[s].append(u)
    for v in out.values():
        v.sort(key=lambda u: u["id"])
    return by, out
