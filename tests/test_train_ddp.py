"""Data-parallel training on the CPU: `torchrun` with 2 gloo processes against one process, same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from codehone.train.run import TrainError, run_train
from train_fixtures import tiny_cfg, write_dataset

RECIPE = """train:
  mode: scratch
  data: nowhere
  out: nowhere
  tokenizer: {vocab_size: 320, min_frequency: 1}
  model: {hidden_size: 32, num_layers: 2, num_heads: 2, intermediate_size: 64}
  seq_len: 128
  batch_size: 3
  grad_accum: 2
  max_steps: 6
  lr: 0.003
  warmup_steps: 0
  eval_every: 3
  save_every: 3
  keep_checkpoints: 5
  log_every: 1
  samples: 0
  precision: fp32
"""


def _torchrun(tmp_path, out, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "codehone", "train", str(tmp_path / "r.yaml"), "--set", f"data={tmp_path / 'ds'}",
           "--set", f"out={out}", *extra]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _curve(out, key="loss"):
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r[key] for r in rows if key in r]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One 1-process run in this process and one 2-process torchrun run of the same recipe."""
    tmp = tmp_path_factory.mktemp("ddp")
    # 29 examples: rows of an odd count, so a process's share of the epoch's last micro-batch can be empty
    write_dataset(tmp / "ds", n_train=29, n_val=6)
    (tmp / "r.yaml").write_text(RECIPE)
    cfg = tiny_cfg(tmp / "ds", tmp / "one", batch_size=3, grad_accum=2, eval_every=3, save_every=3,
                   keep_checkpoints=5)
    one = run_train(cfg, log=lambda m: None)
    r = _torchrun(tmp, tmp / "two")
    return tmp, one, r


def test_two_processes_follow_the_one_process_loss_curve(runs):
    tmp, one, r = runs
    summary = json.loads(r.stdout.strip().splitlines()[-1])  # rank 0 alone prints it
    assert summary["processes"] == 2 and one["processes"] == 1
    assert r.stdout.count('"processes"') == 1
    a, b = _curve(tmp / "one"), _curve(tmp / "two")
    assert len(a) == len(b) == 6 and a[0] != a[-1]
    assert b == pytest.approx(a, rel=1e-4)
    assert _curve(tmp / "two", "eval_loss") == pytest.approx(_curve(tmp / "one", "eval_loss"), rel=1e-4)
    assert (tmp / "two" / "model" / "config.json").is_file()
    assert sorted(p.name for p in (tmp / "two" / "checkpoints").iterdir()) == ["step-0000003", "step-0000006"]


def test_resume_under_two_processes_continues_exactly(runs):
    tmp, _, _ = runs
    b = tmp / "resumed"
    shutil.copytree(tmp / "two", b)
    shutil.rmtree(b / "checkpoints" / "step-0000006")  # as if killed after step 3's checkpoint
    shutil.rmtree(b / "model")
    _torchrun(tmp, b, "--resume")
    assert _curve(b) == pytest.approx(_curve(tmp / "two"), rel=1e-5)
    assert (b / "model" / "config.json").is_file()


def test_a_batch_smaller_than_the_processes_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(TrainError, match="batch_size 3 is smaller than the 4 processes"):
        run_train(tiny_cfg(tmp_path, tmp_path / "o", batch_size=3), log=lambda m: None)
