"""The local executors: serially in this process, or on a pool of worker processes.

forkserver, not fork: the caller may hold threads (a progress bar, a judge's timer
thread, torch in eval), and a forked copy of a held lock deadlocks the child. Modules
named in `preload` are imported once by the fork server, so every worker starts warm.

A step may need per-run state (mine: each source's header index and include folders). It is
the `context`: built once in the parent from the inputs alone, handed read-only to every worker
when it starts (and to `run_serial`), and read with `task_context()`. Nothing a worker learns
from one task can reach another, so a task's result never depends on which worker ran it or
what it ran before -- a resumed run equals a fresh one.

At most `window` tasks are in flight at a time (default four per worker): a stage that
writes results as they come keeps a small, bounded backlog, and a Ctrl-C cancels what
has not started instead of waiting for the whole queue.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import multiprocessing
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

Triple = tuple[int, Any, BaseException | None]

_CONTEXT: Any = None


def task_context() -> Any:
    """The read-only context of the step this process runs tasks for (None when it has none)."""
    return _CONTEXT


def _set_context(context: Any) -> None:
    global _CONTEXT
    _CONTEXT = context


def run_serial(fn: Callable[[Any], Any], tasks: Iterable[Any], context: Any = None) -> Iterator[Triple]:
    """Each task in order, in this process; an exception is the caller's (it is a bug, not a lost worker)."""
    prev = _CONTEXT
    _set_context(context)
    try:
        for i, t in enumerate(tasks):
            yield i, fn(t), None
    finally:
        _set_context(prev)


class LocalPool:
    """A pool of `jobs` worker processes, kept across calls so many small batches pay the start-up once."""

    def __init__(self, jobs: int, preload: Sequence[str] = (), context: Any = None) -> None:
        if jobs < 1:
            raise ValueError(f"a pool needs at least one worker, not {jobs}")
        ctx = multiprocessing.get_context("forkserver")
        if preload:
            ctx.set_forkserver_preload(list(preload))
        self.jobs = jobs
        self.preload = tuple(preload)
        self._pool: cf.ProcessPoolExecutor | None = cf.ProcessPoolExecutor(
            max_workers=jobs, mp_context=ctx, initializer=_set_context, initargs=(context,))

    def _executor(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            raise RuntimeError("the pool is closed")
        return self._pool

    def on_every_worker(self, fn: Callable[[Any], Any], arg: Any) -> None:
        """Run `fn(arg)` once per worker (fn should hold its worker briefly so the next call starts another)."""
        list(self._executor().map(fn, [arg] * self.jobs))

    def imap_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any], window: int | None = None
                       ) -> Iterator[Triple]:
        """Each task's result as it finishes. A worker that dies fails the tasks it held (error set)."""
        pool = self._executor()
        window = window or self.jobs * 4
        pending: dict[cf.Future, int] = {}
        it = enumerate(tasks)
        try:
            for i, t in it:
                pending[pool.submit(fn, t)] = i
                if len(pending) >= window:
                    yield from self._drain(pending, cf.FIRST_COMPLETED)
            while pending:
                yield from self._drain(pending, cf.FIRST_COMPLETED)
        except BaseException:
            for f in pending:
                f.cancel()
            raise

    @staticmethod
    def _drain(pending: dict[cf.Future, int], how: str) -> Iterator[Triple]:
        done, _ = cf.wait(pending, return_when=how)
        for f in done:
            i = pending.pop(f)
            try:
                yield i, f.result(), None
            except Exception as e:  # noqa: BLE001 - a dead worker or an unpicklable result: this task's failure
                yield i, None, e

    def close(self, wait: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None


_SHARED: LocalPool | None = None


def shared_pool(jobs: int, preload: Sequence[str] = ()) -> LocalPool:
    """One pool per process, reused while `jobs` and `preload` stay the same (eval judges many batches).

    On the Ray executor (see `executors.use`) it is a `RayPool` with the same interface."""
    global _SHARED
    if _SHARED is not None and _SHARED.jobs == jobs and _SHARED.preload == tuple(preload):
        return _SHARED
    drop_shared_pool()
    from . import make_pool

    _SHARED = make_pool(jobs, preload)
    return _SHARED


def drop_shared_pool() -> None:
    """Close the shared pool (after a worker died, so the next call starts fresh ones)."""
    global _SHARED
    if _SHARED is not None:
        _SHARED.close()
        _SHARED = None


atexit.register(drop_shared_pool)
