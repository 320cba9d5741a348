"""How a step runs: in this process, on a local process pool, or on Ray.

A step is a plain, picklable function over one task (mine: one file; check: one batch of
candidates). It knows nothing of where it runs, as datatrove's steps never know their
executor. Resume is the `Journal` (journal.py): the step writes its outputs, then records the
task's key; a rerun runs only the pending tasks. (check needs no journal: its verdict cache is
content-addressed, so a rerun finds every verdict already judged.)

Determinism is the executors' too: a task reads only its own input and the step's read-only
`context` (built once from the inputs, see local.py), and a step that streams results as they
finish ends with `canonical_jsonl`, which rewrites its output in one order with one rule for
ties, so a resumed run, a fresh run and a run on more workers give the same bytes.

Every executor yields `(index, result, error)` triples: `index` is the task's position in
the input, `error` is the exception that task's worker died of (then `result` is None), so a
stage can turn a lost worker into a recorded failure for exactly the tasks it held.

Which executor a run uses is one process-wide choice (`use("ray", address)`, set by the CLI's
`--executor`), not a parameter threaded through every stage: a stage asks `make_pool` for a
pool and gets the same interface either way.
"""

from collections.abc import Sequence
from typing import Any

from .canonical import canonical_jsonl
from .journal import Journal
from .local import LocalPool, drop_shared_pool, run_serial, shared_pool, task_context

EXECUTORS = ("local", "ray")
_CHOICE: dict[str, Any] = {"kind": "local", "address": None}


def use(kind: str = "local", address: str | None = None) -> None:
    """Run this process's pools on `kind` ("local" or "ray"; `address` = a Ray cluster, else local Ray)."""
    if kind not in EXECUTORS:
        raise ValueError(f"unknown executor {kind!r}: choose one of {', '.join(EXECUTORS)}")
    if kind == "ray":
        from .ray_pool import connect

        connect(address)  # now, so a missing Ray or a bad address is one line before any work
    drop_shared_pool()
    _CHOICE.update(kind=kind, address=address)


def current() -> str:
    return _CHOICE["kind"]


def make_pool(jobs: int, preload: Sequence[str] = (), context: Any = None):
    """A pool of `jobs` workers on the chosen executor (see `use`)."""
    if _CHOICE["kind"] == "ray":
        from .ray_pool import RayPool

        return RayPool(jobs, preload, context, address=_CHOICE["address"])
    return LocalPool(jobs, preload, context)


__all__ = ["EXECUTORS", "Journal", "LocalPool", "canonical_jsonl", "current", "drop_shared_pool", "make_pool",
           "run_serial", "shared_pool", "task_context", "use"]
