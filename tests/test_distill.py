"""`codehone distill` against real HTTP servers on 127.0.0.1: a local `codehone serve`, and a scripted
teacher that answers with the reference, garbage, 500s and 429s, so retries, judging, resume and the
token accounting are all exercised."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from typer.testing import CliRunner

from codehone.cli import app as cli
from codehone.distill import DistillError, TeacherConfig, run_distill
from codehone.records import read_jsonl
from codehone.serve.api import Limits, create_app
from codehone.serve.backends import load_backend
from serve_fixtures import make_tiny_model

FUNCS = "\n\n".join(
    f'''def compute_{i}(first_value, second_value):
    # add them up
    total_value = first_value + second_value * {i}
    if total_value > {i}:
        total_value -= first_value
    return total_value
''' for i in range(8))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    src = root / "repo"
    src.mkdir()
    (src / "funcs.py").write_text(FUNCS)
    r = CliRunner().invoke(cli, ["mine", "--target", "compress", str(src), "-o", str(root / "mine"), "-j", "1"])
    assert r.exit_code == 0, r.output
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "compress-tiny-scratch.yaml"
    r = CliRunner().invoke(cli, ["build", str(root / "mine" / "units.jsonl"), "-o", str(root / "ds"), "--recipe",
                                 str(recipe), "--set", "dedup.near.enabled=false", "--set", "decontam.enabled=false",
                                 "--set", "split.ratios={train: 1.0, val: 0.0, test: 0.0}"])
    assert r.exit_code == 0, r.output
    rows = list(read_jsonl(root / "ds" / "train.jsonl"))
    assert len(rows) == 8
    return root / "ds"


@contextmanager
def serving(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(10)


def scripted_teacher(answers: dict[str, str]):
    """A chat endpoint that answers each prompt with `answers[...]` (by the source it holds), and on its
    first request for a prompt fails (500, or 429 with Retry-After), so every candidate needs a retry."""
    app = FastAPI()
    seen: dict[str, int] = {}
    log: list[float] = []

    @app.post("/v1/chat/completions")
    async def complete(req: Request):
        body = await req.json()
        log.append(time.monotonic())
        user = body["messages"][-1]["content"]
        key = next((k for k in answers if k in user), None)
        n = seen[user + str(body.get("seed"))] = seen.get(user + str(body.get("seed")), 0) + 1
        if n == 1:
            return JSONResponse({"error": "busy"}, status_code=429 if len(log) % 2 else 500,
                                headers={"Retry-After": "0"})
        text = answers[key] if key and body.get("seed", 0) % 2 == 0 else "def def def"
        return {"choices": [{"message": {"role": "assistant", "content": f"```\n{text}\n```"},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7}}

    return app, log


def test_distill_keeps_only_judged_passes_retries_and_resumes(dataset, tmp_path):
    units = {u["name"]: u for u in read_jsonl(dataset / "units.jsonl")}
    answers = {f"def compute_{i}(": units[f"compute_{i}"]["artifact"] for i in range(8)}
    app, log = scripted_teacher(answers)
    out = tmp_path / "d"
    with serving(app) as url:
        cfg = TeacherConfig(endpoint=url, n=2, concurrency=2, retries=2, min_interval_s=0.05)
        first = run_distill(dataset, out, cfg, limit=3, log=lambda m: None)
        assert first["prompts"] == 3 and first["candidates"] == 6
        # seeds are seed + i*n + j: the even one of each prompt gets the reference, the odd one garbage
        assert first["passed"] == 3 and first["rejected"] == 3 and first["request_errors"] == 0
        assert first["rejected_by_stage"] == {"compile": 3}
        requests_before = len(log)
        again = run_distill(dataset, out, cfg, log=lambda m: None)  # resumes: only the 5 new prompts are asked
    assert again["prompts"] == 8 and again["candidates"] == 16 and again["passed"] == 8
    assert len(log) - requests_before == 5 * 2 * 2  # 5 prompts x 2 candidates x (1 refusal + 1 answer)
    # The 0.05 s gap between request starts held on average (arrival times in this process bunch up
    # when the judge holds the GIL, so single gaps are not a measure of the client's spacing).
    run2 = log[requests_before:]
    assert run2[-1] - run2[0] >= 0.9 * 0.05 * (len(run2) - 1)
    train = list(read_jsonl(out / "data" / "train.jsonl"))
    assert len(train) == 8 and all(r["messages"][-1]["role"] == "assistant" for r in train)
    assert {r["messages"][-1]["content"] for r in train} == set(answers.values())
    cands = list(read_jsonl(out / "candidates.jsonl"))
    assert len(cands) == 16 and len({(c["example_id"], c["k"]) for c in cands}) == 16  # no duplicate
    assert again["tokens"] == {"prompt": 16 * 11, "completion": 16 * 7, "estimated": False}


def test_distill_half_done_prompt_is_redone_without_duplicates(dataset, tmp_path):
    """A kill between a prompt's candidate lines and its journal line: the rerun drops and redoes them."""
    units = {u["name"]: u for u in read_jsonl(dataset / "units.jsonl")}
    app, _ = scripted_teacher({f"def compute_{i}(": units[f"compute_{i}"]["artifact"] for i in range(8)})
    out = tmp_path / "d"
    with serving(app) as url:
        cfg = TeacherConfig(endpoint=url, n=1, retries=1)
        run_distill(dataset, out, cfg, limit=2, log=lambda m: None)
        lines = (out / "journal.jsonl").read_text().splitlines()
        (out / "journal.jsonl").write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # torn last line
        s = run_distill(dataset, out, cfg, limit=2, log=lambda m: None)
    assert s["prompts"] == 2 and s["candidates"] == 2
    assert len(list(read_jsonl(out / "candidates.jsonl"))) == 2


def test_distill_against_codehone_serve_and_unreachable_teacher(dataset, tmp_path):
    torch.set_num_threads(1)
    backend = load_backend(make_tiny_model(tmp_path / "tiny", seq_len=1024), "hf")
    with serving(create_app(backend, "tiny", Limits(max_tokens=32), None)) as url:
        s = run_distill(dataset, tmp_path / "d", TeacherConfig(endpoint=url + "/v1", n=2, max_tokens=24),
                        limit=4, log=lambda m: None)
    # an untrained model writes nothing that round-trips: every candidate is judged and rejected
    assert s["prompts"] == 4 and s["candidates"] == 8 and s["request_errors"] == 0
    assert s["passed"] == 0 and s["rejected"] == 8 and sum(s["rejected_by_stage"].values()) == 8
    assert s["tokens"]["completion"] > 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    dead = run_distill(dataset, tmp_path / "dead", TeacherConfig(endpoint=f"http://127.0.0.1:{port}", n=1,
                                                                    retries=1), limit=1, log=lambda m: None)
    assert dead["request_errors"] == 1 and dead["passed"] == 0
    cand = next(iter(read_jsonl(tmp_path / "dead" / "candidates.jsonl")))
    assert "gave up after 2 attempts" in cand["error"]
    with pytest.raises(DistillError, match="not an http"):
        TeacherConfig(endpoint="ftp://x")
    r = CliRunner().invoke(cli, ["distill", str(dataset), "-e", "http://127.0.0.1:1", "-o", str(tmp_path / "x"),
                                 "--api-key-env", "CODEHONE_NO_SUCH_VAR"])
    assert r.exit_code == 2 and "not set" in r.output
    assert json.loads((tmp_path / "d" / "summary.json").read_text())["candidates"] == 8
