"""The judges: one function per target, `judge(candidate, *, unit=None, **options) -> Verdict`.

A plain dict is the whole registry (no plugin system). The c-wat judge lives in
`c_wat.py` and is added when it imports cleanly, so a half-finished or broken
c-wat module never takes the rust and zig judges down with it; `check` then
says clearly that c-wat is unavailable, and why.
"""

from __future__ import annotations

from collections.abc import Callable

from ..records import Verdict
from . import rust, zig

Judge = Callable[..., Verdict]

JUDGES: dict[str, Judge] = {"rust": rust.judge, "zig": zig.judge}
UNAVAILABLE: dict[str, str] = {}

try:
    from . import c_wat as _c_wat

    if callable(getattr(_c_wat, "judge", None)):
        JUDGES["c-wat"] = _c_wat.judge
    else:
        UNAVAILABLE["c-wat"] = "codehone.judges.c_wat has no `judge` function yet"
except Exception as e:  # noqa: BLE001 - any import failure makes the judge unavailable, with the reason
    UNAVAILABLE["c-wat"] = f"codehone.judges.c_wat failed to import: {type(e).__name__}: {e}"

TARGETS = ("c-wat", "rust", "zig")
