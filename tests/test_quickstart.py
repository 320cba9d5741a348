"""quickstart: the budget plan, the report's figures against stage outputs, and the whole loop end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from codehone.quickstart import Budget, QuickstartError, plan
from codehone.report import write_report


def test_budget_scales_and_rejects_nonsense():
    small, big = Budget.for_minutes(1), Budget.for_minutes(15)
    assert big.train_steps > small.train_steps and big.eval_limit > small.eval_limit
    assert big.train_minutes < 15 and small.notes  # a tiny budget says it is too small to learn much
    with pytest.raises(QuickstartError):
        Budget.for_minutes(0)


def test_plan_is_the_cli_commands(tmp_path):
    stages = plan(tmp_path / "q", Budget.for_minutes(15), jobs=2, mine_limit=50)
    assert [s.name for s in stages] == ["mine", "build", "train", "eval", "iterate"]
    assert stages[0].command().startswith("codehone mine -o ") and "--limit 50" in stages[0].command()
    assert "max_minutes=6.0" in stages[2].command()


def _write(p: Path, obj) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)


def test_report_figures_come_from_the_stage_files(tmp_path):
    d = tmp_path
    _write(d / "mine/stats.json", {"files_seen": 315, "files_mined": 312, "functions_found": 558,
                                   "units_written": 376, "yield": 0.6738, "seconds": 31.4,
                                   "failure_reasons": {"missing_header": 115}, "failure_examples":
                                       {"missing_header": "x.c: atomic.h not found"}})
    _write(d / "dataset/stats.json", {"units_in": 376, "units_out": 298, "dedup": {"exact_duplicates": 0,
           "near_duplicates": 7}, "split": {"group_by": "file", "examples": {"train": 407, "val": 84, "test": 84}}})
    _write(d / "train/summary.json", {"mode": "scratch", "params": 4479744, "steps": 150, "final_loss": 0.6984,
                                      "final_eval_loss": 0.9188, "tokens_per_s": 3500.2, "train_examples": 407})
    _write(d / "train/metrics.jsonl", '{"step": 25, "eval_loss": 2.5}\n{"step": 150, "eval_loss": 0.9188}\n')
    _write(d / "eval/metrics.json", {"prompts": 45, "samples": 180, "assemble_rate": 0.25, "pass@1": 0.05,
                                     "pass@4": 0.1333, "failure_stages": {"assemble": 135, "execute": 36}})
    sample = {"example_id": "e1", "mode": "translate", "ok": False, "code": "(func $f (result i32) i32.const 7)",
              "messages": [{"role": "user", "content": "int f(void) { return 1; }"}],
              "verdict": {"ok": False, "stage": "execute", "diagnostics": [{"code": "mismatch", "message": "7 != 1"}]}}
    _write(d / "eval/samples.jsonl", json.dumps(sample) + "\n")
    _write(d / "iterate/round-01/round.json", {"round": 1, "init": "continue", "counts": {
        "prompts": 60, "samples": 240, "passing": 9, "kept": 7}})
    _write(d / "iterate/round-01/eval/metrics.json", {"prompts": 45, "samples": 180, "assemble_rate": 0.3,
                                                       "pass@1": 0.0611})
    _write(d / "iterate/rounds.json", {"rounds": [], "stopped": "plateau"})
    state = {"budget": {"minutes": 15}, "wall_seconds": 600, "stages": [
        {"name": "mine", "status": "ran", "seconds": 31.0, "command": "codehone mine -o q/mine"}]}
    md_path, html_path = write_report(d, state)
    md, page = md_path.read_text(), html_path.read_text()
    for figure in ("558", "376", "67.4%", "298", "407", "4.48M", "2.500 → 0.919", "25.0%", "5.0%",
                   "pass@4 13.3%", "6.1%", "9 passed the judge, 7 kept", "Iterate stopped: plateau", "atomic.h not found", "7 != 1", "codehone mine -o q/mine"):
        assert figure in md, figure
    assert "int f(void)" in md and "i32.const 7" in md
    assert "data:image/png;base64," not in page  # no PNGs were written, none embedded
    assert "<table>" in page and "pass@4 13.3%" in page


def test_report_embeds_pngs(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (tmp_path / "train").mkdir()
    plt.plot([1, 2], [2, 1])
    plt.savefig(tmp_path / "train/loss.png")
    plt.close()
    _write(tmp_path / "train/summary.json", {"mode": "scratch", "params": 1, "steps": 1})
    md, page = write_report(tmp_path, {"stages": []})
    assert "![loss curve](train/loss.png)" in md.read_text()
    assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]{100,}"', page.read_text())


@pytest.mark.slow
def test_quickstart_end_to_end_tiny_budget(tmp_path):
    out = tmp_path / "qs"
    r = subprocess.run([sys.executable, "-m", "codehone", "quickstart", "-o", str(out), "--minutes", "1",
                        "--mine-limit", "60", "-j", "2"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    mine = json.loads((out / "mine/stats.json").read_text())
    ds = json.loads((out / "dataset/stats.json").read_text())
    ev = json.loads((out / "eval/metrics.json").read_text())
    assert mine["units_written"] > 10
    assert f"| units written (one reference answer each) | {mine['units_written']} |" in md
    assert f"{ds['units_in']} / {ds['units_out']}" in md
    assert f"{100 * ev['assemble_rate']:.1f}%" in md and f"{100 * ev['pass@1']:.1f}%" in md
    assert md.count("The model's WebAssembly text (WAT):") == 3
    assert "iterate round 0 (start model)" in md and "Iterate round 1" in md
    assert "data:image/png;base64," in html
    state = json.loads((out / "quickstart.json").read_text())
    assert all(s["status"] == "ran" for s in state["stages"])
    # A second run with the same settings resumes: every stage is skipped, the report is rewritten.
    r2 = subprocess.run([sys.executable, "-m", "codehone", "quickstart", "-o", str(out), "--minutes", "1",
                         "--mine-limit", "60", "-j", "2"], capture_output=True, text=True, timeout=120)
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert all(s["status"] == "skipped" for s in json.loads((out / "quickstart.json").read_text())["stages"])


def test_resume_skips_finished_stages_and_redoes_changed_ones(tmp_path, monkeypatch):
    from codehone import quickstart

    ran: list[str] = []

    def fake_run(st, out, env, log):  # stands in for the subprocess: writes the stage's done file
        ran.append(st.name)
        (out / st.done).parent.mkdir(parents=True, exist_ok=True)
        (out / st.done).write_text("{}")
        st.status, st.rc, st.seconds = "ran", 0, 1.0

    monkeypatch.setattr(quickstart, "_run_stage", fake_run)
    out = tmp_path / "q"
    quickstart.run_quickstart(out, minutes=1, log=lambda m: None)
    assert ran == ["mine", "build", "train", "eval", "iterate"]
    ran.clear()
    quickstart.run_quickstart(out, minutes=1, log=lambda m: None)
    assert ran == []
    # A killed eval: only eval and what follows run again, and the trained model is kept.
    (out / "train" / "keep").write_text("model")
    (out / "eval" / "metrics.json").unlink()
    quickstart.run_quickstart(out, minutes=1, log=lambda m: None)
    assert ran == ["eval", "iterate"] and (out / "train" / "keep").is_file()
    ran.clear()
    # Another seed changes train's command: train starts over (its folder cleared) and so does all after it.
    quickstart.run_quickstart(out, minutes=1, seed=1, log=lambda m: None)
    assert ran == ["train", "eval", "iterate"] and not (out / "train" / "keep").exists()
    ran.clear()
    quickstart.run_quickstart(out, minutes=1, seed=1, fresh=True, log=lambda m: None)
    assert ran == ["mine", "build", "train", "eval", "iterate"]
