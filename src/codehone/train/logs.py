"""Training feedback a person can read afterwards: a JSONL log, TensorBoard events and a loss-curve PNG.

Why three: the JSONL is the record other stages and tests parse, TensorBoard is
what people already open, and the PNG is visible without either. The PNG is
redrawn at every eval so a long run can be watched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..records import read_jsonl


class MetricsLog:
    """Append-only metrics.jsonl plus TensorBoard scalars. On resume, rows after `step` are cut."""

    def __init__(self, out: Path, resume_step: int | None = None, enabled: bool = True):
        self.path = out / "metrics.jsonl"
        self.enabled = enabled  # off on every process but rank 0 of a distributed run
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        rows = list(read_jsonl(self.path, errors=[])) if self.path.exists() and resume_step is not None else []
        rows = [r for r in rows if r.get("step", 0) <= (resume_step or 0)]
        with self.path.open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        self._f = self.path.open("a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(out / "tb"), purge_step=resume_step)
        except ImportError:  # tensorboard is a dependency, but a missing one must not stop training
            self._tb = None

    def log(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._f.flush()
        if self._tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, int | float):
                    self._tb.add_scalar(k, v, row["step"])

    def text(self, tag: str, text: str, step: int) -> None:
        if self.enabled and self._tb is not None:
            self._tb.add_text(tag, text, step)

    def close(self) -> None:
        if not self.enabled:
            return
        self._f.close()
        if self._tb is not None:
            self._tb.close()


def plot_losses(metrics: Path, png: Path) -> None:
    """Train loss (per logged step) and eval loss (per eval) against optimizer steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(read_jsonl(metrics, errors=[]))
    tr = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    ev = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    if tr:
        ax.plot(*zip(*tr, strict=True), label="train loss (completion tokens)", alpha=0.7)
    if ev:
        ax.plot(*zip(*ev, strict=True), "o-", label="eval loss (val split)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(metrics.parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
