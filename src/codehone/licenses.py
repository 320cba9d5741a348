"""License classes for SPDX ids: which ones are permissive, and how they rank when one unit must be kept.

Why here and not in sources.py: `mine` detects licenses; `build` only judges
them (allow-lists, and the keep rule of deduplication), so the judgement lives
with the verb that uses it.
"""

from __future__ import annotations

# SPDX ids (and the short names sources.detect_license returns) that allow reuse with attribution only.
PERMISSIVE = frozenset(
    {
        "0BSD",
        "Apache-2.0",
        "Apache-2.0 WITH LLVM-exception",
        "BSD",
        "BSD-1-Clause",
        "BSD-2-Clause",
        "BSD-3-Clause",
        "BSD-4-Clause",
        "BSL-1.0",
        "CC0-1.0",
        "ISC",
        "MIT",
        "MIT-0",
        "NCSA",
        "PSF-2.0",
        "Public-Domain",
        "Unlicense",
        "X11",
        "Zlib",
        "blessing",
        "curl",
        "libpng",
        "PostgreSQL",
    }
)


def is_permissive(spdx: str | None) -> bool:
    """True for a permissive license; an `A OR B` expression is permissive if any side is."""
    if not spdx:
        return False
    sides = [s.strip().strip("()") for s in spdx.split(" OR ")]
    return any(s in PERMISSIVE or s.upper() in {p.upper() for p in PERMISSIVE} for s in sides)


def rank(spdx: str | None) -> int:
    """0 permissive, 1 known but not permissive (e.g. GPL), 2 unknown: lower is kept first."""
    if is_permissive(spdx):
        return 0
    return 1 if spdx else 2


def allowed(spdx: str | None, allow: list[str]) -> bool:
    """Whether a license is on an allow-list; the entry `permissive` admits every permissive license."""
    if spdx is None:
        return "unknown" in allow
    if "permissive" in allow and is_permissive(spdx):
        return True
    return spdx in allow
