"""Fresh short aliases, and which identifiers are worth one: the only lossy-looking step, made exact.

An alias is never spelled like any identifier of the original code, so renaming back is exact;
a name gets one only when its occurrences save more tokens than its map entry costs.
"""

from __future__ import annotations

import itertools
import string
from collections import Counter
from collections.abc import Callable, Iterator


def fresh_aliases(used: set[str], reserved: frozenset[str] | set[str] = frozenset()) -> Iterator[str]:
    """Short identifiers not in `used` or `reserved`, shortest first: a..z, A..Z, then two letters.

    Why shortest first: a one-letter alias is one token in every BPE tokenizer tried, so the
    names with the largest savings get them.
    """
    first = string.ascii_lowercase + string.ascii_uppercase
    rest = first + string.digits
    for length in itertools.count(1):
        for head in first:
            for tail in itertools.product(rest, repeat=length - 1):
                cand = head + "".join(tail)
                if cand not in used and cand not in reserved:
                    yield cand


def choose_aliases(counts: Counter, used: set[str], count_tokens: Callable[[str], int],
                   reserved: frozenset[str] = frozenset()) -> dict[str, str]:
    """name → alias for the names whose aliasing saves tokens, the most saving first.

    The saving of a name is counted in context (" name" against " alias": identifiers mostly
    follow a space, a dot or a bracket) times its occurrences, less the map entry it costs.
    """
    gain = []
    for name, n in counts.items():
        if n < 2 or len(name) < 3:
            continue
        t = count_tokens(" " + name)
        if t * n > n + t + 2:  # best case: a 1-token alias; else never worth an entry
            gain.append((t * n, name))
    gain.sort(key=lambda g: (-g[0], g[1]))
    out: dict[str, str] = {}
    pool = fresh_aliases(used, reserved)
    for _, name in gain:
        n = counts[name]
        alias = next(pool)
        saved = n * (count_tokens(" " + name) - count_tokens(" " + alias))
        cost = count_tokens(f" {alias}={name}")
        if saved > cost:
            out[name] = alias
    return out
