"""`codehone sweep`: the plan, ranking by a judged metric, resume, the time budget; one real end-to-end sweep."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from codehone import evaluate
from codehone.cli import app
from codehone.iterate_config import SweepConfig, load_sweep_config
from codehone.sweep import SweepError, plan, run_sweep
from codehone.train import run as train_run
from loop_fixtures import Scripted, make_dataset
from train_fixtures import tiny_cfg


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("sweep")
    dataset, modules = make_dataset(root)
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"train": tiny_cfg(dataset, root / "unused", max_steps=3, seq_len=768,
                                                        eval_every=3).model_dump()}))
    return {"dataset": dataset, "modules": modules, "recipe": recipe}


def sweep_cfg(world: dict, **kw) -> SweepConfig:
    base = {"params": {"lr": [1e-6, 3e-3]}, "modules": str(world["modules"]),
            "eval": {"limit": 2, "max_new_tokens": 16}}
    return SweepConfig.model_validate({**base, **kw})


def test_plan_grid_and_random():
    grid = SweepConfig(params={"train.lr": [1, 2], "model.size": ["tiny", "small"]})
    assert plan(grid) == [{"train.lr": 1, "model.size": "tiny"}, {"train.lr": 1, "model.size": "small"},
                          {"train.lr": 2, "model.size": "tiny"}, {"train.lr": 2, "model.size": "small"}]
    assert plan(grid.model_copy(update={"trials": 2})) == plan(grid)[:2]
    rnd = SweepConfig(method="random", trials=3, seed=7, params={"lr": [1, 2, 3, 4, 5], "seq_len": [64, 128]})
    drawn = plan(rnd)
    assert len(drawn) == 3 and len({json.dumps(d, sort_keys=True) for d in drawn}) == 3
    assert plan(rnd) == drawn and plan(rnd.model_copy(update={"seed": 8})) != drawn
    assert len(plan(rnd.model_copy(update={"trials": 99}))) == 10
    with pytest.raises(ValueError, match="random needs trials"):
        SweepConfig(method="random", params={"lr": [1]})


def test_sweep_of_two_trials_picks_the_better_by_the_metric(tmp_path, world, monkeypatch):
    # pass@1 decides even against the eval loss: the scripted eval gives the lr=1e-6 trial (worse loss) 0.5
    monkeypatch.setattr(evaluate, "run_eval", Scripted([0.5, 0.25]))
    board = run_sweep(world["recipe"], sweep_cfg(world), tmp_path / "sw", log=lambda _m: None)
    assert board["winner"]["trial"] == 0 and board["winner"]["params"] == {"lr": 1e-6}
    assert [t["trial"] for t in board["trials"]] == [0, 1]
    losses = {t["trial"]: t["eval_loss"] for t in board["trials"]}
    assert losses[0] > losses[1]                     # so the ranking was by pass@1, not by loss
    md = (tmp_path / "sw" / "leaderboard.md").read_text()
    assert "Winner: trial 0 (lr=1e-06): pass@1 = 0.5000" in md


def test_real_sweep_end_to_end_and_resume(tmp_path, world, monkeypatch):
    """Real training and real eval (the c-wat judge); then a kill during trial 1 and a resume."""
    out = tmp_path / "sw"
    cfg_file = tmp_path / "sweep.yaml"
    cfg_file.write_text(yaml.safe_dump(sweep_cfg(world).model_dump()))
    res = CliRunner().invoke(app, ["sweep", str(world["recipe"]), "--sweep", str(cfg_file), "-o", str(out)])
    assert res.exit_code == 0, res.output
    board = json.loads((out / "leaderboard.json").read_text())
    trials = {t["trial"]: t for t in board["trials"]}
    for t in trials.values():
        samples = (out / f"trial-{t['trial']:02d}" / "eval" / "samples.jsonl").read_text().splitlines()
        assert len(samples) == 2 and all(json.loads(s)["verdict"] is not None for s in samples)
        assert t["metrics"]["pass@1"] == sum(json.loads(s)["ok"] for s in samples) / 2
    best = max(trials.values(), key=lambda t: (t["metrics"]["pass@1"], -t["eval_loss"]))
    assert board["winner"]["trial"] == best["trial"]
    assert f"winner: trial {best['trial']}" in res.output

    # kill during trial 1: its trial.json is missing and its folder half-written
    (out / "trial-01" / "trial.json").unlink()
    trained = []
    real_train = train_run.run_train
    monkeypatch.setattr(train_run, "run_train", lambda c, **kw: trained.append(c.out) or real_train(c, **kw))
    logs: list[str] = []
    board2 = run_sweep(world["recipe"], load_sweep_config(world["recipe"], cfg_file), out, log=logs.append)
    assert trained == [str(out / "trial-01" / "train")]
    assert "trial 0: already done (ok)" in logs and "trial 1 was not finished: redoing it" in logs
    assert board2["finished"] == 2 and board2["winner"]["trial"] == board["winner"]["trial"]

    with pytest.raises(SweepError, match="holds a different sweep"):
        run_sweep(world["recipe"], sweep_cfg(world, seed=3), out, log=lambda _m: None)


def test_time_budget_stops_starting_trials(tmp_path, world, monkeypatch):
    monkeypatch.setattr(evaluate, "run_eval", Scripted([0.0, 0.0, 0.0]))
    cfg = sweep_cfg(world, params={"lr": [1e-3, 2e-3, 3e-3]}, budget_minutes=1e-4)
    board = run_sweep(world["recipe"], cfg, tmp_path / "sw", log=lambda _m: None)
    assert board["finished"] == 1 and board["planned"] == 3
    assert "2 planned trial(s) not started" in board["budget_stop"]
    assert "Stopped early: time budget" in (tmp_path / "sw" / "leaderboard.md").read_text()


def test_bad_parameter_fails_before_any_training(tmp_path, world, monkeypatch):
    monkeypatch.setattr(train_run, "run_train", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(SweepError, match=r"^train\.lr: Input should be greater than 0"):
        run_sweep(world["recipe"], sweep_cfg(world, params={"lr": [1e-3, -1]}), tmp_path / "sw")
    with pytest.raises(SweepError, match=r"^train\.nope: unknown setting"):
        run_sweep(world["recipe"], sweep_cfg(world, params={"nope": [1]}), tmp_path / "sw")
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: grid\nparams: {lr: []}\n")
    res = CliRunner().invoke(app, ["sweep", str(world["recipe"]), "--sweep", str(bad)])
    assert res.exit_code == 2 and "sweep.params: Value error" not in res.output and "empty list" in res.output
