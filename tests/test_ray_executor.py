"""The Ray executor gives the same units as the local pool (a local Ray instance, 2 CPUs)."""

from __future__ import annotations

import os
import signal

import pytest

from codehone import executors
from codehone.mine import MineConfig, run_mine
from codehone.sources import Source

ray = pytest.importorskip("ray", reason="the ray executor is the [scale] extra")

FN = '''
def f{i}(values, limit={i}):
    """Sum the values below limit, a docstring long enough to keep."""
    total = 0
    for value in values:
        if value < limit:
            total += value * {i}
    return total
'''


@pytest.fixture(scope="module")
def ray_local():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    executors.use("ray")
    yield
    executors.use("local")
    ray.shutdown()


def test_ray_mine_equals_local(tmp_path, ray_local):
    src = tmp_path / "src"
    src.mkdir()
    for n in range(6):
        (src / f"m{n}.py").write_text("".join(FN.format(i=n * 10 + i) for i in range(3)))
    cfg = dict(target="compress", jobs=2)
    run_mine([Source(name="src", root=src)], tmp_path / "ray", MineConfig(**cfg))
    executors.use("local")
    run_mine([Source(name="src", root=src)], tmp_path / "local", MineConfig(**cfg))
    executors.use("ray")
    got = (tmp_path / "ray" / "units.jsonl").read_bytes()
    assert got == (tmp_path / "local" / "units.jsonl").read_bytes()
    assert got.count(b"\n") == 18


def test_a_killed_worker_is_retried_and_no_result_is_lost_or_doubled(tmp_path, ray_local):
    marker = tmp_path / "killed"

    def step(i):  # a closure: Ray ships it by value, so the workers need not import this test module
        if i == 3 and not marker.exists():
            marker.write_text("x")
            os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-task
        return i * i

    pool = executors.make_pool(2)
    got = sorted(pool.imap_unordered(step, range(8)))
    pool.close()
    assert marker.exists(), "the worker was never killed: the test did not test a retry"
    assert got == [(i, i * i, None) for i in range(8)]


def test_a_sweep_on_ray_gives_the_trials_of_a_local_sweep(tmp_path, ray_local):
    """Two real trials (train + c-wat eval) on Ray workers at once, against the same sweep run here."""
    import json

    import yaml

    from codehone.iterate_config import SweepConfig
    from codehone.sweep import run_sweep
    from loop_fixtures import make_dataset
    from train_fixtures import tiny_cfg

    dataset, modules = make_dataset(tmp_path / "w")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"train": tiny_cfg(dataset, tmp_path / "unused", max_steps=3, seq_len=768,
                                                        eval_every=3).model_dump()}))
    cfg = SweepConfig.model_validate({"params": {"lr": [1e-6, 3e-3]}, "modules": str(modules),
                                      "eval": {"limit": 2, "max_new_tokens": 16, "jobs": 1}})
    logs: list[str] = []
    on_ray = run_sweep(recipe, cfg, tmp_path / "ray", log=logs.append, at_once=2)
    assert "trial 0: sent to Ray" in logs and "trial 1: sent to Ray" in logs
    executors.use("local")
    here = run_sweep(recipe, cfg, tmp_path / "local", log=lambda _m: None)
    executors.use("ray")

    def trials(board):
        return {t["trial"]: (t["status"], t["eval_loss"], t["metrics"]["pass@1"]) for t in board["trials"]}

    assert trials(on_ray) == trials(here) and len(trials(here)) == 2
    assert all(s == "ok" for s, _, _ in trials(on_ray).values())
    assert json.loads((tmp_path / "ray" / "trial-01" / "trial.json").read_text())["status"] == "ok"
