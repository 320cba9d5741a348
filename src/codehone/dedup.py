"""Exact and near-duplicate removal: one unit kept per cluster, by a documented rule.

Why both: an earlier C-to-assembly system deduplicated by an MD5 of the text, so a function
copied between repositories with its identifiers renamed stayed twice, and
often landed once in train and once in test. Here:

  1. Exact: units whose normalised code (comments dropped, whitespace collapsed)
     is identical form a group.
  2. Near: MinHash LSH (datasketch) over code-aware shingles. The code is split
     on non-word characters (so `buf_len` is one token and punctuation is
     ignored), variables are renamed canonically (see `canonical_tokens`), and
     consecutive `shingle` tokens form a shingle. The defaults are The Stack's:
     5-gram shingles, 256 permutations, Jaccard 0.7. LSH candidates are
     (optionally) confirmed by the MinHash estimate of their Jaccard
     similarity; confirmed pairs are joined into clusters (connected
     components, as The Stack does). Very short units cluster only with copies
     equal up to renaming (`min_tokens`).

The keep rule, applied to every group and cluster alike: a documented unit
beats an undocumented one (it yields the better `implement` example), a
permissive license beats a known non-permissive one, which beats an unknown
one, and then the smallest id wins. Ids are content hashes, so the choice is
the same on every run and in every input order.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from datasketch import LeanMinHash, MinHash, MinHashLSH

from . import licenses

_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_LINE_COMMENT = re.compile(r"//[^\n]*")
_WORD = re.compile(r"\w+")
# Literals, identifiers, numbers, `->`, and any other single character.
LEX = re.compile(r"""'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"|[A-Za-z_]\w*|\d[\w.]*|->|\S""")
# One regex pass yields only what canonical_tokens needs: (literal, ./->, word, "(" after it, number).
_CANON = re.compile(
    r"""('(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")|(->|\.(?!\d))|([A-Za-z_]\w*)(\s*\()?|(\d[\w.]*)"""
)
# A declaration: a type word, stars/qualifiers, then the declared name before = ; , ) or [.
_DECL = re.compile(
    r"\b([A-Za-z_]\w*)[\s*]+(?:(?:const|volatile|restrict)\b[\s*]*)*([A-Za-z_]\w*)\s*(?=[=;,)\[])"
)
_NOT_A_TYPE = frozenset({"return", "case", "goto", "sizeof", "else", "do", "typedef", "break", "continue"})
_TAG_OR_FIELD = frozenset({".", "->", "struct", "union", "enum", "goto"})
_KEYWORDS = frozenset(
    [
        "auto",
        "break",
        "case",
        "char",
        "const",
        "continue",
        "default",
        "do",
        "double",
        "else",
        "enum",
        "extern",
        "float",
        "for",
        "goto",
        "if",
        "inline",
        "int",
        "long",
        "register",
        "restrict",
        "return",
        "short",
        "signed",
        "sizeof",
        "static",
        "struct",
        "switch",
        "typedef",
        "union",
        "unsigned",
        "void",
        "volatile",
        "while",
        "_Bool",
        "_Complex",
        "_Static_assert",
        "_Alignof",
        "_Atomic",
        "_Noreturn",
        "_Thread_local",
        "bool",
        "true",
        "false",
        "asm",
        "__asm__",
        "__attribute__",
        "__inline",
        "__inline__",
        "__restrict",
        "__restrict__",
        "__typeof__",
        "typeof",
    ]
)


def normalize_code(src: str) -> str:
    """C-family code without comments and with whitespace collapsed (also right for Rust and Zig)."""
    s = _BLOCK_COMMENT.sub(" ", src)
    s = _LINE_COMMENT.sub(" ", s)
    return " ".join(s.split())


def code_tokens(src: str) -> list[str]:
    """Code-aware tokens: the runs of word characters of the normalised code (split on non-word chars)."""
    return _WORD.findall(normalize_code(src))


def canonical_tokens(src: str) -> list[str]:
    """Code-aware tokens that survive consistent renaming of variables.

    The code is split on non-word characters (punctuation is dropped; string and
    character literals stay whole). The names the function declares (its
    parameters and locals: a word after a type word, stars and qualifiers,
    before `= ; , ) [`), and the function's own name, are replaced by
    `v0, v1, ...` in order of first use; fields after `.`/`->`, called
    functions, globals, constants and types keep their names. Why: a copy
    with its locals renamed is the commonest near-duplicate, and with raw
    tokens each renamed use changes `shingle` shingles, so a 100-token copy
    with two renamed locals falls far below Jaccard 0.7. Because everything else keeps its name, functions of the same
    shape that call, read or compare different things stay apart.
    """
    code = normalize_code(src)
    declared = {m.group(2) for m in _DECL.finditer(code) if m.group(1) not in _NOT_A_TYPE}
    out: list[str] = []
    names: dict[str, str] = {}
    prev = ""
    own_name_seen = False  # the defined function's own name (first called-looking word) is a label
    for lit, dot, word, paren, num in _CANON.findall(code):
        if word:
            if word in _KEYWORDS or prev in _TAG_OR_FIELD:
                out.append(word)
            elif paren and not own_name_seen and not word.isupper():
                own_name_seen = True
                out.append(names.setdefault(word, f"v{len(names)}"))
            elif word in declared and not paren:
                out.append(names.setdefault(word, f"v{len(names)}"))
            else:
                out.append(word)
            prev = word
        elif dot:
            prev = dot
        else:
            out.append(lit or num)
            prev = ""
    return out


def shingles(tokens: list[str], k: int) -> list[bytes]:
    """The distinct k-token shingles (the whole sequence when shorter than k), in first-seen order."""
    if not tokens:
        return []
    if len(tokens) <= k:
        return [" ".join(tokens).encode()]
    return list(dict.fromkeys(" ".join(tokens[i : i + k]).encode() for i in range(len(tokens) - k + 1)))


def keep_key(unit: dict[str, Any]) -> tuple[int, int, str]:
    """Lower sorts first = kept: documented, then permissive > known > unknown license, then smallest id."""
    return (0 if (unit.get("doc") or "").strip() else 1, licenses.rank(unit.get("license")), unit["id"])


@dataclass
class Dropped:
    unit: dict[str, Any]
    reason: str  # "exact_duplicate" | "near_duplicate"
    kept_id: str


@dataclass
class DedupStats:
    exact_groups: Counter = field(default_factory=Counter)  # group size → groups (size >= 2)
    near_clusters: Counter = field(default_factory=Counter)  # cluster size → clusters (size >= 2)
    near_candidate_pairs: int = 0
    near_confirmed_pairs: int = 0
    near_short_copies: int = 0  # short units equal up to renaming to an earlier one
    largest_clusters: list[dict[str, Any]] = field(default_factory=list)


def exact_dedup(units: list[dict[str, Any]], stats: DedupStats) -> tuple[list[dict[str, Any]], list[Dropped]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for u in units:
        groups.setdefault(normalize_code(u["source"]), []).append(u)
    kept, dropped = [], []
    for members in groups.values():
        members.sort(key=keep_key)
        kept.append(members[0])
        if len(members) > 1:
            stats.exact_groups[len(members)] += 1
            dropped.extend(Dropped(m, "exact_duplicate", members[0]["id"]) for m in members[1:])
    kept.sort(key=lambda u: u["id"])
    return kept, dropped


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def minhashes(
    token_lists: Iterable[list[str]], shingle: int, num_perm: int, seed: int = 1
) -> list[LeanMinHash | None]:
    """One LeanMinHash per token list (None when empty), computed in bulk (MinHash.generator) for speed."""
    sets = [shingles(t, shingle) for t in token_lists]
    idx = [i for i, s in enumerate(sets) if s]
    out: list[LeanMinHash | None] = [None] * len(sets)
    for i, m in zip(
        idx, MinHash.generator((sets[i] for i in idx), num_perm=num_perm, seed=seed), strict=True
    ):
        out[i] = LeanMinHash(m)
    return out


def near_dedup(
    units: list[dict[str, Any]],
    stats: DedupStats,
    *,
    shingle: int = 5,
    num_perm: int = 256,
    threshold: float = 0.7,
    verify: bool = True,
    min_tokens: int = 20,
    seed: int = 1,
    top: int = 10,
) -> tuple[list[dict[str, Any]], list[Dropped]]:
    """Cluster units whose code is ~`threshold` Jaccard-similar; keep one per cluster (see module doc).

    Units with fewer than `min_tokens` canonical tokens are clustered only when
    their canonical token sequences are equal (copies up to renaming): in a
    ten-token getter one changed field changes most shingles, so Jaccard cannot
    tell `p->x` from `p->y` apart from a renamed copy.
    """
    units = sorted(units, key=lambda u: u["id"])
    toks = [canonical_tokens(u["source"]) for u in units]
    long_idx = [i for i, t in enumerate(toks) if len(t) >= min_tokens]
    uf = _UnionFind(len(units))
    short_seen: dict[str, int] = {}
    for i, t in enumerate(toks):
        if 0 < len(t) < min_tokens:
            j = short_seen.setdefault(" ".join(t), i)
            if j != i:
                stats.near_short_copies += 1
                uf.union(j, i)
    mhs = minhashes((toks[i] for i in long_idx), shingle, num_perm, seed)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    with lsh.insertion_session() as session:
        for k, m in enumerate(mhs):
            if m is not None:
                session.insert(k, m, check_duplication=False)
    for k, m in enumerate(mhs):
        if m is None:
            continue
        for j in lsh.query(m):
            if j <= k:
                continue
            stats.near_candidate_pairs += 1
            if verify and m.jaccard(mhs[j]) < threshold:
                continue
            stats.near_confirmed_pairs += 1
            uf.union(long_idx[k], long_idx[j])
    clusters: dict[int, list[int]] = {}
    for i in range(len(units)):
        clusters.setdefault(uf.find(i), []).append(i)
    kept, dropped, big = [], [], []
    for members in clusters.values():
        ms = sorted((units[i] for i in members), key=keep_key)
        kept.append(ms[0])
        if len(ms) > 1:
            stats.near_clusters[len(ms)] += 1
            dropped.extend(Dropped(m, "near_duplicate", ms[0]["id"]) for m in ms[1:])
            big.append(ms)
    big.sort(key=lambda ms: (-len(ms), ms[0]["id"]))
    stats.largest_clusters = [
        {
            "size": len(ms),
            "kept": f"{ms[0]['repo']}:{ms[0]['path']}:{ms[0]['name']}",
            "members": sorted({m["name"] for m in ms}),
        }
        for ms in big[:top]
    ]
    kept.sort(key=lambda u: u["id"])
    return kept, dropped
