"""Checkpoints that resume exactly: model, optimizer, scheduler, every RNG, the data position and the log.

Why all of it: resuming with fresh optimizer moments or a reshuffled data order
gives a different run, which makes "train N, resume, train N" silently differ
from "train 2N". A checkpoint is written to a temporary folder and renamed, so
a kill mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _trainable_state(model) -> dict[str, torch.Tensor]:
    """Only what the optimizer changes (LoRA adapters are a few MB, not the whole base model)."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v for k, v in model.state_dict().items() if k in names}


def save(ckpt_root: Path, step: int, model, optimizer, scheduler, data_state: dict, extra: dict[str, Any],
         keep: int) -> Path:
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step-{step:07d}"
    tmp = ckpt_root / f".tmp-step-{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    torch.save(_trainable_state(model), tmp / "model.pt")
    torch.save({
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
        "data": data_state,
        "step": step,
        **extra,
    }, tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(ckpt_root.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(ckpt_root: Path) -> Path | None:
    found = sorted(p for p in ckpt_root.glob("step-*") if (p / "state.pt").is_file())
    return found[-1] if found else None


def load(path: Path, model, optimizer, scheduler) -> dict[str, Any]:
    """Restore everything into the live objects; returns the state dict (step, data, extra)."""
    model.load_state_dict(torch.load(path / "model.pt", weights_only=True), strict=False)
    state = torch.load(path / "state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng = state["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    return state
