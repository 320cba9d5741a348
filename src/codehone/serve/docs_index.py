"""A BM25 index over mined doc comments: what the MCP `get_docs` tool searches.

Why BM25 (bm25s) and not embeddings: the queries are identifiers and API words
(`memcpy overlap`, `fmal rounding`), where exact term overlap is what matters,
and BM25 needs no model download and indexes thousands of units in a second.

A document is one mined unit: its name, signature and doc comment. Identifiers
are also split into their parts (`__rem_pio2` → rem, pio2; `readFileAll` →
read, file, all), so a query word finds the function that only spells it
inside a name.

The index is cached on disk under a key of the units file's bytes, so a
restarted server loads it instead of rebuilding, and a changed units file is
reindexed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from ..records import read_jsonl, write_text_atomic
from . import ServeError

INDEX_VERSION = "1"
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
STOP = frozenset([
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "in", "is", "it", "its",
    "of", "on", "or", "that", "the", "this", "to", "was", "were", "will", "with", "which", "we", "not",
    "but", "if", "then", "else", "when", "can",
])


def tokens(text: str) -> list[str]:
    """Lower-cased words and identifiers, plus the parts of each identifier."""
    out: list[str] = []
    for w in _WORD.findall(text):
        low = w.lower()
        if low in STOP or len(low) < 2 and not low.isdigit():
            continue
        out.append(low)
        parts = [p.lower() for chunk in w.split("_") if chunk for p in _CAMEL.findall(chunk)]
        if len(parts) > 1 or (parts and parts[0] != low):
            out.extend(p for p in parts if len(p) > 1 and p not in STOP)
    return out


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    return Path(base) / "codehone" / "docs"


def units_file(path: Path) -> Path:
    p = Path(path)
    if p.is_dir() and (p / "units.jsonl").is_file():
        return p / "units.jsonl"
    if p.is_file():
        return p
    raise ServeError(f"{p}: give a units.jsonl, a `codehone mine` folder or a docs index folder")


class DocsIndex:
    def __init__(self, retriever, docs: list[dict], folder: Path):
        self.retriever, self.docs, self.folder = retriever, docs, folder

    @classmethod
    def open(cls, source: str | Path, cache_dir: Path | None = None) -> DocsIndex:
        """Load an index folder, or build (once, then cached) the index of a units.jsonl / mine folder."""
        src = Path(source)
        if (src / "manifest.json").is_file():
            return cls._load(src)
        uf = units_file(src)
        key = hashlib.sha256(uf.read_bytes() + INDEX_VERSION.encode()).hexdigest()[:20]
        folder = (cache_dir or default_cache_dir()) / key
        if (folder / "manifest.json").is_file():
            return cls._load(folder)
        return cls.build(uf, folder)

    @classmethod
    def build(cls, units: Path, folder: Path) -> DocsIndex:
        import bm25s

        docs = []
        try:
            rows = list(read_jsonl(units))
        except (OSError, ValueError) as e:  # JsonlError is a ValueError: a bad line, said in one line
            raise ServeError(f"{units}: cannot read units ({e})") from None
        for u in rows:
            if not u.get("name"):
                continue
            docs.append({"id": u.get("id"), "name": u["name"], "signature": " ".join((u.get("signature") or "").split()),
                         "doc": (u.get("doc") or "").strip(), "path": u.get("path"), "line": u.get("line"),
                         "repo": u.get("repo")})
        if not docs:
            raise ServeError(f"{units}: no units with a name to index")
        corpus = [tokens(f"{d['name']} {d['signature']} {d['doc']}") or [d["name"].lower()] for d in docs]
        retriever = bm25s.BM25()
        retriever.index(corpus, show_progress=False)
        folder.mkdir(parents=True, exist_ok=True)
        retriever.save(str(folder / "bm25"), show_progress=False)
        write_text_atomic(folder / "docs.jsonl", "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
        write_text_atomic(folder / "manifest.json", json.dumps({"version": INDEX_VERSION, "source": str(units),
                                                                "documents": len(docs)}))
        return cls(retriever, docs, folder)

    @classmethod
    def _load(cls, folder: Path) -> DocsIndex:
        import bm25s

        try:
            manifest = json.loads((folder / "manifest.json").read_text())
            if manifest.get("version") != INDEX_VERSION:
                raise ServeError(f"{folder}: a docs index of another version; delete it to rebuild")
            docs = list(read_jsonl(folder / "docs.jsonl"))
            retriever = bm25s.BM25.load(str(folder / "bm25"), show_progress=False)
        except (OSError, ValueError) as e:
            if isinstance(e, ServeError):
                raise
            raise ServeError(f"{folder}: unreadable docs index ({e})") from None
        return cls(retriever, docs, folder)

    def search(self, query: str, k: int = 5) -> list[dict]:
        """The k best documents for `query` (fewer when fewer share a word with it), best first."""
        q = tokens(query)
        if not q or k < 1:
            return []
        vocab = getattr(self.retriever, "vocab_dict", None)
        if vocab is not None:
            q = [t for t in q if t in vocab]
            if not q:
                return []
        k = min(k, len(self.docs))
        ids, scores = self.retriever.retrieve([q], k=k, show_progress=False)
        out = []
        for i, s in zip(ids[0].tolist(), scores[0].tolist(), strict=True):
            if s > 0:
                out.append({**self.docs[int(i)], "score": round(float(s), 4)})
        return out
