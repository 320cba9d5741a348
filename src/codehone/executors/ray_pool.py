"""The Ray executor: the same steps as the local pool, on a Ray cluster (or a local Ray instance).

Why Ray and not a home-made scheduler: it already retries a task whose worker died
(`max_retries`), spreads tasks over nodes, and ships objects once per node. A step stays the
plain picklable function it is locally; `RayPool` has the `LocalPool` interface
(`imap_unordered`, `on_every_worker`, `close`), so a stage picks its executor by name and
changes nothing else. The results are the same records in the same order because every
streaming stage ends with `canonical_jsonl` and check puts verdicts back by index.

The step's read-only `context` goes into Ray's object store once (`ray.put`); each task gets
the reference and sets it before running, so `task_context()` works on every worker exactly as
in a local one. Sandbox limits travel with the step: the judge and the miner start their
sandboxed processes on the worker itself, with the same limits. Toolchains (zig, wabt,
wasmtime) come from Python wheels, so a worker with codehone installed has them; every node of
the cluster needs codehone installed (shipping it through a `runtime_env` is not done yet).

A task is retried `retries` times when its worker dies (killed for memory, a node lost); only
then does it come back as an error triple, which the stage records as that task's failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from .local import Triple, _set_context

RAY_MISSING = "the ray executor needs Ray: pip install 'codehone[scale]'"


class RayUnavailable(RuntimeError):
    """Ray is not installed or the cluster cannot be reached; the message is one line."""


def _ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable(RAY_MISSING) from None
    return ray


def connect(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the Ray cluster at `address` (or RAY_ADDRESS), else start a local instance with `num_cpus`."""
    ray = _ray()
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
    if address:
        kw["address"] = address
    elif num_cpus:
        kw["num_cpus"] = num_cpus
    try:
        ray.init(**kw)
    except Exception as e:  # noqa: BLE001 - a bad address, a dead head node: one line, not a traceback
        raise RayUnavailable(f"cannot start or join Ray{f' at {address}' if address else ''}: "
                             f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def _run_with_context(fn: Callable[[Any], Any], task: Any, context: Any) -> Any:
    _set_context(context)
    try:
        return fn(task)
    finally:
        _set_context(None)


class RayPool:
    """`jobs` tasks in flight at a time on Ray (0 = as many as the cluster has CPUs)."""

    def __init__(self, jobs: int = 0, preload: Sequence[str] = (), context: Any = None,
                 address: str | None = None, retries: int = 3) -> None:
        ray = _ray()
        connect(address, num_cpus=jobs or None)
        self.jobs = jobs or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.preload = tuple(preload)
        self._ctx_ref = ray.put(context)
        self._remote = ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=False)(_run_with_context)
        self._closed = False

    def on_every_worker(self, fn: Callable[[Any], Any], arg: Any) -> None:
        """Run `fn(arg)` `jobs` times (warms Ray's worker processes; Ray picks which ones)."""
        ray = _ray()
        ray.get([self._remote.remote(fn, arg, self._ctx_ref) for _ in range(self.jobs)])

    def imap_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any], window: int | None = None
                       ) -> Iterator[Triple]:
        """Each task's result as it finishes; a task whose worker died more than `retries` times has its error set."""
        if self._closed:
            raise RuntimeError("the pool is closed")
        ray = _ray()
        window = window or self.jobs * 4
        fn_ref = ray.put(fn)
        pending: dict[Any, int] = {}
        try:
            for i, t in enumerate(tasks):
                pending[self._remote.remote(fn_ref, t, self._ctx_ref)] = i
                if len(pending) >= window:
                    yield from self._drain(pending)
            while pending:
                yield from self._drain(pending)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    @staticmethod
    def _drain(pending: dict[Any, int]) -> Iterator[Triple]:
        ray = _ray()
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            i = pending.pop(ref)
            try:
                yield i, ray.get(ref), None
            except Exception as e:  # noqa: BLE001 - the task failed on every try: this task's failure
                cause = getattr(e, "cause", None)
                yield i, None, cause if isinstance(cause, BaseException) else e

    def close(self, wait: bool = False) -> None:
        """Forget this pool's objects; the Ray connection stays for the next stage of the run."""
        self._closed = True
        self._ctx_ref = None
