"""The judges: one function per target, `judge(candidate, *, unit=None, **options) -> Verdict`.

A plain dict is the whole registry (no plugin system). The c-wat judge lives in
`c_wat.py` (another module's work) and is imported only when a c-wat candidate
is judged: it pulls in wasmtime and starts an epoch thread, and a rust or zig
check should neither pay for that nor carry a thread into a worker process.
If c_wat.py is missing, broken or has no `judge`, `available("c-wat")` says
why and `check` reports it in one line; rust and zig are unaffected.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

from ..records import Verdict
from . import rust, zig

Judge = Callable[..., Verdict]
TARGETS = ("c-wat", "rust", "zig")


class JudgeUnavailable(RuntimeError):
    """A target's judge cannot be loaded; the message says why."""


def _load_c_wat() -> Judge:
    try:
        mod = importlib.import_module(".c_wat", __name__)
    except Exception as e:  # noqa: BLE001 - any import failure makes the judge unavailable, with the reason
        raise JudgeUnavailable(f"codehone.judges.c_wat failed to import: {type(e).__name__}: {e}") from None
    fn = getattr(mod, "judge", None)
    if not callable(fn):
        raise JudgeUnavailable("codehone.judges.c_wat has no `judge` function yet")
    return fn


def _c_wat_judge(candidate: str, *, unit: dict | None = None, **kw: Any) -> Verdict:
    """c-wat: `judge(candidate, *, unit, modules_dir, ...)` from judges/c_wat.py, loaded on first use."""
    return _load_c_wat()(candidate, unit=unit, **kw)


JUDGES: dict[str, Judge] = {"rust": rust.judge, "zig": zig.judge}
if importlib.util.find_spec(".c_wat", __name__) is not None:
    JUDGES["c-wat"] = _c_wat_judge


def available(target: str) -> str | None:
    """None when `target` can be judged here, else the reason it cannot."""
    if target not in TARGETS:
        return f"unknown target {target!r}; available: {', '.join(TARGETS)}"
    if target not in JUDGES:
        return (
            f"the {target} judge is not installed (codehone/judges/{target.replace('-', '_')}.py is missing)"
        )
    if target == "c-wat":
        try:
            _load_c_wat()
        except JudgeUnavailable as e:
            return str(e)
    return None
