"""The canonical form of a step's streamed output: one order, one rule for duplicates.

Results arrive in whatever order the workers finish them, and a resumed run sees them in
another order again. A step that appends as results come (for durability) ends by rewriting
its output atomically, sorted by a key computed from each record alone, keeping for every
duplicate key the record that sorts first -- so the bytes depend only on the inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..records import read_jsonl, write_jsonl_atomic


def canonical_jsonl(path: Path, order: Callable[[dict], tuple], dedup: Callable[[dict], str] | None = None,
                    ) -> tuple[int, int]:
    """Rewrite `path` sorted by `order`, keeping the first record of each `dedup` key.

    Returns (records kept, duplicates dropped). A kill mid-rewrite leaves the old file (atomic).
    """
    path = Path(path)
    if not path.exists():
        return 0, 0
    rows = sorted(read_jsonl(path, errors=[]), key=order)
    kept, seen, dropped = [], set(), 0
    for r in rows:
        if dedup is not None:
            k = dedup(r)
            if k in seen:
                dropped += 1
                continue
            seen.add(k)
        kept.append(r)
    write_jsonl_atomic(path, kept)
    return len(kept), dropped
