"""`codehone iterate`: real mine/build/train/eval on a tiny c-wat dataset; the loop's control with a scripted eval.

The scripted eval (`loop_fixtures.Scripted`) stands in for `codehone eval` only where a test needs
samples that pass, which a 20k-parameter model trained for 6 steps never writes:
it returns the reference answers as passing samples and the metrics a test asks for.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from codehone import evaluate
from codehone.cli import app
from codehone.config import ConfigError
from codehone.iterate import IterateError, normalise, run_iterate, select
from codehone.iterate_config import IterateConfig, load_iterate_config
from codehone.targets.c_wat import with_reference_name
from codehone.train import run as train_run
from codehone.train.run import run_train
from loop_fixtures import Scripted, make_dataset, split_rows
from train_fixtures import tiny_cfg


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("iterate")
    dataset, modules = make_dataset(root)
    cfg = tiny_cfg(dataset, root / "start", max_steps=4, seq_len=768)
    run_train(cfg, log=lambda _m: None)
    return {"dataset": dataset, "modules": modules, "base": cfg, "start": root / "start"}


def recipe(tmp: Path, world: dict, **iterate) -> Path:
    """A recipe file: the tiny train: section of the fixture + an iterate: section."""
    train = world["base"].model_dump()
    p = tmp / "recipe.yaml"
    it = {"modules": str(world["modules"]), "k": 2, "max_new_tokens": 24, "train_limit": 3,
          "train": {"max_steps": 2}, "eval": {"limit": 2, "max_new_tokens": 24}, **iterate}
    p.write_text(yaml.safe_dump({"train": train, "iterate": it}))
    return p


class Killed(Exception):
    """The simulated kill: raised inside a round, caught by nothing in iterate."""


def test_select_dedups_per_prompt_and_best_of_k_takes_the_shortest():
    ran = {"ok": True, "counts": {"compiled": True, "run": 4}}
    s = [{"example_id": "a", "ok": True, "code": "(func $f\n  i32.const 1) ;; one", "verdict": ran},
         {"example_id": "a", "ok": True, "code": "(func $f   i32.const 1)", "verdict": ran},  # same after normalising
         {"example_id": "a", "ok": True, "code": "(func $f (local i32) i32.const 1)", "verdict": ran},
         {"example_id": "a", "ok": False, "code": "(func $f)", "verdict": {"ok": False}},
         {"example_id": "b", "ok": True, "code": "(func $f i32.const 1)", "verdict": ran},  # same code, other prompt
         {"example_id": "c", "ok": False, "code": "x", "verdict": {"ok": False}},
         # ok, but the judge ran no input: never training data
         {"example_id": "d", "ok": True, "code": "(func $g)", "verdict": {"ok": True, "counts": {"run": 0}}}]
    kept, counts = select(s, "all", "c-wat")
    assert [k["code"] for k in kept] == [s[0]["code"], s[2]["code"], s[4]["code"]]
    assert counts == {"prompts": 4, "samples": 7, "passing": 4, "passed_without_running": 1, "prompts_with_pass": 2,
                      "unique": 3, "kept": 3}
    best, counts = select(s, "best_of_k", "c-wat")
    assert [k["code"] for k in best] == [s[0]["code"], s[4]["code"]]
    assert counts["kept"] == 2
    assert normalise("(func (; c ;) $f ;; x\n  nop)", "c-wat") == "(func $f nop)"
    # a passing answer that named another function is kept under the reference's name (calls to itself too)
    got = "(func $fp_environ (param i32)\n  call $fp_environ\n  call $fp_environ2)"
    assert with_reference_name(got, "(func $barrier (param i32)") == \
        "(func $barrier (param i32)\n  call $barrier\n  call $fp_environ2)"
    assert with_reference_name("not wat", "(func $barrier)") == "not wat"


def test_recipe_section_errors_are_one_line(tmp_path, world):
    p = recipe(tmp_path, world)
    with pytest.raises(ConfigError, match=r"^iterate\.kk: unknown setting$"):
        load_iterate_config(p, ["kk=3"])
    with pytest.raises(ConfigError, match=r"^iterate\.train\.lrr: unknown setting$"):
        load_iterate_config(p, ["iterate.train.lrr=3"])
    with pytest.raises(ConfigError, match="pass@4 is not measured"):
        load_iterate_config(p, ["metric=pass@4", "eval.k=2"])
    with pytest.raises(ConfigError, match="out is set by iterate"):
        load_iterate_config(p, ["iterate.train.out=x"])
    cfg, base = load_iterate_config(p, ["k=3", "train.lr=0.01", "iterate.train.lr=0.002"])
    assert (cfg.k, base.lr, cfg.train["lr"]) == (3, 0.01, 0.002)


def test_round_without_passing_samples_stops_cleanly(tmp_path, world):
    """The real path end to end: a 6-step model's samples all fail the real judge, so nothing is trained."""
    p = recipe(tmp_path, world, model=str(world["start"]))
    res = CliRunner().invoke(app, ["iterate", str(p), "--rounds", "3", "-o", str(tmp_path / "it")])
    assert res.exit_code == 0, res.output
    assert "none of 6 samples of 3 train prompts passed the judge" in res.output
    r1 = json.loads((tmp_path / "it" / "round-01" / "round.json").read_text())
    assert r1["status"] == "no_passing" and r1["counts"]["passing"] == 0 and r1["counts"]["samples"] == 6
    assert not (tmp_path / "it" / "round-01" / "train").exists()          # no training on empty data
    assert not (tmp_path / "it" / "round-02").exists()
    samples = (tmp_path / "it" / "round-01" / "samples" / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 6 and all(json.loads(s)["verdict"] is not None for s in samples)
    summary = json.loads((tmp_path / "it" / "rounds.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1] and "passed the judge" in summary["stopped"]
    assert summary["rounds"][0]["pass@1"] is not None
    assert (tmp_path / "it" / "rounds.png").stat().st_size > 1000
    assert "| 1 | continue | 3 | 6 | 0 |" in (tmp_path / "it" / "rounds.md").read_text()


def test_resume_after_a_kill_continues_at_the_next_round(tmp_path, world, monkeypatch):
    cfg = IterateConfig(model=str(world["start"]), k=2, train_limit=3, mix_original=0.5, train={"max_steps": 2},
                        eval={"limit": 2}, plateau={"patience": 5})
    scripted = Scripted([0.0, 0.25, 0.5, 0.75])
    monkeypatch.setattr(evaluate, "run_eval", scripted)
    calls, kill_at = [], [2]

    def train_then_die(tcfg, **kw):
        calls.append(tcfg.out)
        if len(calls) in kill_at:                # the kill: inside round 2's training, once
            kill_at.clear()
            (Path(tcfg.out)).mkdir(parents=True, exist_ok=True)
            raise Killed
        return run_train(tcfg, **kw)

    monkeypatch.setattr(train_run, "run_train", train_then_die)
    out = tmp_path / "it"
    with pytest.raises(Killed):
        run_iterate(cfg, world["base"], out, 3, log=lambda _m: None)
    assert (out / "round-01" / "round.json").is_file() and not (out / "round-02" / "round.json").exists()
    r1 = json.loads((out / "round-01" / "round.json").read_text())
    assert r1["init"] == "continue" and r1["init_from"] == str(world["start"])
    n_orig = len(split_rows(world["dataset"], "train"))
    assert r1["counts"]["kept"] == 3 and r1["counts"]["train_examples"] == 3 + round(0.5 * n_orig)

    calls.clear()
    scripted.metrics = [0.5, 0.75]              # rounds 2 and 3 evaluate again
    logs: list[str] = []
    summary = run_iterate(cfg, world["base"], out, 3, log=logs.append)
    assert calls == [str(out / "round-02" / "train"), str(out / "round-03" / "train")]
    assert "round 1: already done (ok)" in logs and "round-02 was not finished: redoing it" in logs
    assert [r["pass@1"] for r in summary["rounds"]] == [0.0, 0.25, 0.5, 0.75]
    assert summary["best"]["round"] == 3 and summary["stopped"] is None
    drawn = [{r["id"] for r in split_rows(out / f"round-{i:02d}" / "prompts", "train")} for i in (1, 2, 3)]
    assert all(len(d) == 3 for d in drawn) and len({frozenset(d) for d in drawn}) == 3   # a fresh draw each round
    r3 = json.loads((out / "round-03" / "round.json").read_text())
    assert r3["init_from"] == r3["sampled_from"] == str(out / "round-02" / "train")

    # a finished run resumes to itself: nothing is sampled, trained or evaluated again
    calls.clear()
    n = len(scripted.calls)
    assert run_iterate(cfg, world["base"], out, 3, log=lambda _m: None)["rounds"] == summary["rounds"]
    assert calls == [] and len(scripted.calls) == n

    with pytest.raises(IterateError, match=r"other settings \(iterate\.k: 2 then, 3 now\)"):
        run_iterate(cfg.model_copy(update={"k": 3}), world["base"], out, 3, log=lambda _m: None)


def test_plateau_stops_and_init_base_restarts_from_the_start_model(tmp_path, world, monkeypatch):
    cfg = IterateConfig(model=str(world["start"]), k=1, train_limit=2, prompts="shortest", init="base", keep="best_of_k",
                        accumulate=True, train={"max_steps": 1}, eval={"limit": 2},
                        plateau={"patience": 2, "min_delta": 0.05})
    monkeypatch.setattr(evaluate, "run_eval", Scripted([0.2, 0.5, 0.52, 0.54, 0.9]))
    summary = run_iterate(cfg, world["base"], tmp_path / "it", 6, log=lambda _m: None)
    assert [r["pass@1"] for r in summary["rounds"]] == [0.2, 0.5, 0.52, 0.54]
    assert summary["stopped"].startswith("plateau") and summary["best"]["round"] == 3
    for r in (1, 2, 3):
        info = json.loads((tmp_path / "it" / f"round-{r:02d}" / "round.json").read_text())
        assert info["init_from"] == str(world["start"])
        assert info["sampled_from"] == (str(world["start"]) if r == 1 else
                                        str(tmp_path / "it" / f"round-{r - 1:02d}" / "train"))
    # accumulate: round 3 trains on its own kept samples plus earlier rounds' (identical codes deduplicated)
    rows = split_rows(tmp_path / "it" / "round-03" / "data", "train")
    assert len(rows) == 2 and all(r["source"] == "iterate round 3" for r in rows)
    shortest = sorted(len(r["messages"][-1]["content"]) for r in split_rows(world["dataset"], "train"))[:2]
    assert sorted(len(r["messages"][-1]["content"]) for r in rows) == shortest


def test_missing_start_model_is_one_line(tmp_path, world):
    p = recipe(tmp_path, world, model=str(tmp_path / "nothing"))
    res = CliRunner().invoke(app, ["iterate", str(p), "--rounds", "1", "-o", str(tmp_path / "it")])
    assert res.exit_code == 2
    assert "iterate.model:" in res.output and "holds no model" in res.output and "Traceback" not in res.output
