"""Tiny chat datasets and configs for the train tests: seconds, not minutes, on a 2-core CPU."""

from __future__ import annotations

import json
from pathlib import Path

from codehone.config import TrainConfig

WORDS = ["add", "sub", "mul", "load", "store", "call", "br", "loop", "block", "local"]


def example(i: int) -> dict:
    w = WORDS[i % len(WORDS)]
    return {
        "id": f"ex{i}",
        "messages": [
            {"role": "system", "content": "You write WAT."},
            {"role": "user", "content": f"Emit the {w} instruction {i % 7}."},
            {"role": "assistant", "content": f"(i32.{w} (i32.const {i % 7}))"},
        ],
    }


def write_dataset(root: Path, n_train: int = 24, n_val: int = 6, extra_train: list[dict] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, rng in (("train", range(n_train)), ("val", range(100, 100 + n_val))):
        rows = [example(i) for i in rng] + (extra_train or [] if split == "train" else [])
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def tiny_cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        mode="scratch", data=str(data), out=str(out),
        tokenizer={"vocab_size": 320, "min_frequency": 1},
        model={"size": "tiny", "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64},
        seq_len=128, batch_size=4, max_steps=6, lr=3e-3, warmup_steps=0, eval_every=1000, save_every=1000,
        log_every=1, samples=0, precision="fp32",
    )
    base.update(kw)
    return TrainConfig(**base)
