"""How a step runs: in this process, or on a local process pool (Ray is the next executor).

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
"""

from .canonical import canonical_jsonl
from .journal import Journal
from .local import LocalPool, drop_shared_pool, run_serial, shared_pool, task_context

__all__ = ["Journal", "LocalPool", "canonical_jsonl", "drop_shared_pool", "run_serial", "shared_pool",
           "task_context"]
