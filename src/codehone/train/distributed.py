"""Data-parallel training under `torchrun` or `accelerate launch`: one process per device, one global batch.

How a step is split: every process builds the same seeded stream of rows (data.Batches), so
they agree on the global batch without talking; process r trains on rows r, r+N, r+2N, … of
each micro-batch (no row twice, none missed), and the loss is divided by the target-token
count of the *global* micro-batches. Summing the gradients over processes then gives exactly
the gradient of the one-process step, so the loss curve does not depend on N, and the
checkpoint (written by rank 0 only) resumes on any N.

Why gradients are summed here rather than by the `DistributedDataParallel` wrapper: the
trainer's fast paths call the decoder and the head separately (loop.token_losses), outside any
wrapper's forward, which DDP needs to see; and a process whose share of the last micro-batch
of an epoch is empty must still join the reduction. One bucketed `all_reduce` per step after
the backward passes is the same collective DDP issues, minus the overlap with the backward
(which matters for large models on GPUs, not for the sizes codehone trains from scratch).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

_BUCKET = 1 << 24  # elements per all_reduce (64 MB of fp32): bounded extra memory on big models


@dataclass(frozen=True)
class World:
    """This process's place: rank, number of processes, and its device index on the node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def launched_size() -> int:
    """The number of processes the launcher started (torchrun and accelerate set WORLD_SIZE)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def is_main_process() -> bool:
    """Rank 0, or a plain run: the process that prints and writes."""
    return os.environ.get("RANK", "0") in ("", "0")


def init() -> World:
    """Join the launcher's process group (gloo on CPUs, NCCL on GPUs); a plain run is a world of one."""
    size = launched_size()
    if size <= 1:
        return World()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(local)
        # the timeout bounds how long the others wait while rank 0 evaluates, samples or saves
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=60))
    return World(dist.get_rank(), dist.get_world_size(), local)


def device(world: World) -> torch.device:
    return torch.device(f"cuda:{world.local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def shard(rows: list, world: World) -> list:
    """This process's rows of one global micro-batch: every N-th, starting at its rank."""
    return rows[world.rank::world.size]


@contextlib.contextmanager
def rank0_first(world: World):
    """Rank 0 runs the block first (it may write a tokenizer the others then read), then the rest."""
    if world.active and not world.main:
        dist.barrier()
    yield
    if world.active and world.main:
        dist.barrier()


def broadcast_params(model, world: World) -> None:
    """Every process starts from rank 0's weights (seeded inits agree, but a launcher may differ)."""
    if world.active:
        with torch.no_grad():
            for p in model.parameters():
                dist.broadcast(p.data, 0)


def sum_grads(params: list[torch.Tensor], world: World) -> None:
    """Sum every trainable parameter's gradient over the processes (a missing gradient counts as 0)."""
    if not world.active:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    bucket: list[torch.Tensor] = []
    size = 0
    for p in params + [None]:
        if p is not None:
            bucket.append(p.grad)
            size += p.numel()
        if bucket and (p is None or size >= _BUCKET):
            flat = torch._utils._flatten_dense_tensors(bucket)
            dist.all_reduce(flat)
            for g, s in zip(bucket, torch._utils._unflatten_dense_tensors(flat, bucket), strict=True):
                g.copy_(s)
            bucket, size = [], 0


def sum_value(x: torch.Tensor, world: World) -> torch.Tensor:
    if world.active:
        x = x.clone()
        dist.all_reduce(x)
    return x


def any_true(flags: list[bool], world: World) -> list[bool]:
    """Flags that are true on any process, so every process stops (or saves) at the same step."""
    if not world.active:
        return flags
    t = torch.tensor([int(f) for f in flags], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def finish(world: World) -> None:
    """Wait for rank 0's final writes, then leave the process group."""
    if world.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
