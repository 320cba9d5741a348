"""One generation worker behind a bounded queue, batching the requests that wait together.

Why one worker: a CPU (or one GPU) runs one forward pass at a time well; two
generations racing for it are both slower than one after the other. Why batch:
with a KV cache, one forward pass over N rows costs little more than over one,
so requests that queued while a batch ran are answered together in the next.
Why a bounded queue: a server that accepts everything under load answers
nothing in time; a full queue says 429 at once so the client can back off.

The worker is an asyncio task; the generation itself runs in a thread (torch
releases the GIL) and hands each row's events back to that request's own
asyncio queue through the loop, so streaming responses see tokens as they come.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from .backends import Event, GenParams


@dataclass
class Job:
    """One request's generation: prompt ids, sampling settings, a deadline and its event mailbox."""

    prompt: list[int]
    params: GenParams
    deadline: float
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: bool = False

    def stop_reason(self) -> str | None:
        if self.cancelled:
            return "cancelled"
        if time.monotonic() > self.deadline:
            return "timeout"
        return None


class QueueFull(Exception):
    """The queue is at its maximum depth."""


class Scheduler:
    def __init__(self, backend, max_queue: int = 16, max_batch: int = 8, batch_window_s: float = 0.01):
        self.backend = backend
        self.max_batch = max_batch if getattr(backend, "supports_batching", False) else 1
        self.batch_window_s = batch_window_s
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=max_queue)
        self.batch_sizes: Counter[int] = Counter()
        self.generated_tokens = 0
        self.busy_s = 0.0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def submit(self, job: Job) -> None:
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            raise QueueFull from None

    def stats(self) -> dict:
        return {"queued": self.queue.qsize(), "max_queue": self.queue.maxsize, "max_batch": self.max_batch,
                "batches": {str(k): v for k, v in sorted(self.batch_sizes.items())},
                "generated_tokens": self.generated_tokens, "busy_s": round(self.busy_s, 3)}

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            if self.max_batch > 1:
                await asyncio.sleep(self.batch_window_s)  # let requests sent together arrive together
                while len(batch) < self.max_batch and not self.queue.empty():
                    batch.append(self.queue.get_nowait())
            live = []
            for j in batch:
                reason = j.stop_reason()
                if reason:
                    j.events.put_nowait(Event(0, finish=reason))
                else:
                    live.append(j)
            if not live:
                continue
            self.batch_sizes[len(live)] += 1
            t0 = time.monotonic()
            await asyncio.to_thread(self._generate, live, loop)
            self.busy_s += time.monotonic() - t0

    def _generate(self, jobs: list[Job], loop: asyncio.AbstractEventLoop) -> None:
        finished: set[int] = set()
        try:
            for ev in self.backend.stream_batch([j.prompt for j in jobs], [j.params for j in jobs],
                                                stop=lambda i: jobs[i].stop_reason()):
                self.generated_tokens += ev.tokens
                if ev.finish:
                    finished.add(ev.row)
                loop.call_soon_threadsafe(jobs[ev.row].events.put_nowait, ev)
        except Exception as e:  # noqa: BLE001 - a failed generation answers its requests, never kills the worker
            msg = f"generation failed: {type(e).__name__}: {e}"
            for i, j in enumerate(jobs):
                if i not in finished:
                    loop.call_soon_threadsafe(j.events.put_nowait, Event(i, text=msg, finish="error"))
