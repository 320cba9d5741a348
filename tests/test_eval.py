"""`codehone eval`: pass@k, extraction, and eval of a tiny model on a tiny real c-wat dataset.

The units are mined here from a small C file (real zig cc, wabt, wasmtime), the
model is a random 2-layer Llama with a BPE tokenizer fitted to the dataset, so
every test builds what it needs in seconds.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from typer.testing import CliRunner

from codehone.cli import app
from codehone.evaluate import EvalError, judge_samples, load_eval_set, run_eval
from codehone.extract import extract_code, fence_language
from codehone.mine import MineConfig, run_mine
from codehone.passk import pass_at_k, summarize_samples
from codehone.records import read_jsonl
from codehone.sampling import SamplingError, load_model, resolve_model_dir, sample
from codehone.sources import resolve
from codehone.train.tokenizer import train_tokenizer, training_texts

C_FILE = r"""
int clamp_add(int a, int b) {
    int s = a + b;
    if (s < 0) return 0;
    if (s > 100) return 100;
    return s;
}

int is_lt(int a, int b) { return a < b; }

int sum_array(const int *xs, int n) {
    int s = 0;
    for (int i = 0; i < n && i < 64; i++) s += xs[i];
    return s;
}
"""
SYSTEM = "You write the WAT that clang emits for a C function. Answer with one (func ...) form."
FAST_JUDGE = {"tests": 8, "explore_runs": 0}  # the judge's own tests cover its depth; here, speed


# ------------------------------------------------------------------ pass@k and extraction


@pytest.mark.parametrize("n, c, k, want", [
    (5, 2, 1, 2 / 5),
    (5, 2, 2, 1 - 3 / 10),          # 1 - C(3,2)/C(5,2)
    (10, 1, 5, 1 - 126 / 252),      # 1 - C(9,5)/C(10,5) = 0.5
    (4, 0, 1, 0.0),
    (4, 0, 4, 0.0),
    (4, 4, 1, 1.0),
    (4, 3, 2, 1.0),                 # n - c < k: every draw of 2 holds a pass
    (1, 1, 1, 1.0),
    (20, 3, 10, 1 - math.comb(17, 10) / math.comb(20, 10)),
])
def test_pass_at_k_hand_computed(n, c, k, want):
    assert pass_at_k(n, c, k) == pytest.approx(want, abs=1e-12)


def test_pass_at_k_is_stable_for_large_n_and_rejects_bad_input():
    got = pass_at_k(2000, 7, 500)
    want = 1 - math.comb(1993, 500) / math.comb(2000, 500)  # exact big integers, then one division
    assert got == pytest.approx(want, rel=1e-9)
    for bad in ((3, 4, 1), (3, 1, 0), (3, 1, 4), (3, -1, 1)):
        with pytest.raises(ValueError):
            pass_at_k(*bad)


@pytest.mark.parametrize("text, code", [
    ("(func $f (result i32) i32.const 1)", "(func $f (result i32) i32.const 1)"),
    ("Here:\n```wat\n(func $f)\n```\nand\n```c\nint x;\n```", "(func $f)"),
    ("```\nno tag\n```", "no tag"),
    ("cut short:\n```wat\n(func $f\n  local.get 0", "(func $f\n  local.get 0"),
    ("````md\n```wat\ninner\n```\n````", "```wat\ninner\n```"),
    ("~~~rust\nfn main() {}\n~~~", "fn main() {}"),
])
def test_extract_code(text, code):
    assert extract_code(text) == code


def test_fence_language():
    assert fence_language("x\n```wat\n(func)\n```") == "wat"
    assert fence_language("```\n(func)\n```") == ""
    assert fence_language("(func)") is None


def test_summarize_counts_what_it_says():
    def s(eid, ok, stage, mode="implement", eos=True, run=None):
        built = stage == "execute"
        run = (5 if built else 0) if run is None else run
        return {"example_id": eid, "mode": mode, "ok": ok, "stopped_at_eos": eos, "code": "x",
                "verdict": {"ok": ok, "stage": stage, "counts": {"compiled": built, "run": run}}}
    rows = [s("a", True, "execute"), s("a", False, "execute"), s("a", False, "parse", eos=False),
            s("b", False, "assemble", mode="translate"), s("b", False, "validate", mode="translate"),
            s("b", False, "execute", mode="translate")]
    m = summarize_samples(rows, "c-wat", k=3)
    assert m["prompts"] == 2 and m["samples"] == 6 and m["passed"] == 1 and m["passed_without_running"] == 0
    assert m["pass@1"] == pytest.approx((1 / 3 + 0) / 2, abs=1e-4)
    assert m["pass@3"] == pytest.approx((1 + 0) / 2)
    assert m["assemble_rate"] == m["compile_rate"] == pytest.approx(3 / 6, abs=1e-4)  # the three that executed
    assert m["failure_stages"] == {"assemble": 1, "execute": 2, "parse": 1, "validate": 1}
    assert m["stopped_at_eos_rate"] == pytest.approx(5 / 6, abs=1e-4)
    assert m["by_mode"]["implement"]["pass@1"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["by_mode"]["translate"]["pass@3"] == 0.0


def test_rust_and_zig_extras():
    rust = [{"example_id": "a", "ok": True, "code": "fn a() {}\n\nfn b() {}\n",
             "verdict": {"ok": True, "stage": "lint", "counts": {"compiled": True, "errors": 0, "clippy_warnings": 1},
                         "scores": {"idiomatic_score": 0.5, "doc_rate": 1.0}}},
            {"example_id": "b", "ok": False, "code": "fn (",
             "verdict": {"ok": False, "stage": "compile", "counts": {"compiled": False, "errors": 2,
                                                                     "clippy_warnings": 0},
                         "scores": {"idiomatic_score": 0.0}}}]
    m = summarize_samples(rust, "rust", k=1)
    assert m["compile_rate"] == 0.5 and "assemble_rate" not in m
    assert m["clippy_warnings_per_kloc"] == pytest.approx(1000 * 1 / 2)  # 1 warning in 2 compiled lines
    assert m["idiomatic_score"] == 0.25 and m["doc_rate"] == 1.0
    zig = [{"example_id": "a", "ok": False, "code": "", "verdict": {"ok": False, "stage": "test",
                                                                      "counts": {"tests_passed": 3, "tests_failed": 1}}}]
    assert summarize_samples(zig, "zig", k=1)["test_pass_rate"] == 0.75


# ------------------------------------------------------------------ a tiny real c-wat dataset and model


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A `codehone build`-shaped folder over units mined here: implement + translate rows in test."""
    src = tmp_path_factory.mktemp("repo")
    (src / "fx.c").write_text(C_FILE)
    mine = tmp_path_factory.mktemp("mine")
    run_mine([resolve(str(src))], mine, MineConfig(jobs=1))
    units = list(read_jsonl(mine / "units.jsonl"))
    assert sorted(u["name"] for u in units) == ["clamp_add", "is_lt", "sum_array"]
    d = tmp_path_factory.mktemp("dataset")
    rows = []
    for u in units:
        for mode, ask in (("implement", f"Implement: {u['signature']}"), ("translate", f"Translate:\n{u['source']}")):
            rows.append({"id": f"{u['name']}-{mode}", "unit_id": u["id"], "split": "test", "mode": mode,
                         "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ask},
                                      {"role": "assistant", "content": u["artifact"]}]})
    (d / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "units.jsonl").write_text("".join(json.dumps(u) + "\n" for u in units))
    (d / "stats.json").write_text(json.dumps({"target": "c-wat", "inputs": {"files": [str(mine)]}}))
    return d


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, dataset) -> Path:
    """A random tiny Llama + a BPE tokenizer with the chat template, saved as an HF folder."""
    rows = list(read_jsonl(dataset / "test.jsonl"))
    tok = train_tokenizer(training_texts(rows), vocab_size=300, min_frequency=1)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=1024,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg)
    out = tmp_path_factory.mktemp("run") / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _recount(samples: list[dict], k: int) -> dict:
    by = {}
    for s in samples:  # a pass is an ok verdict that ran at least one input
        by.setdefault(s["example_id"], []).append(s["ok"] and s["verdict"]["counts"].get("run", 0) > 0)
    out = {f"pass@{j}": sum(pass_at_k(len(v), sum(v), j) for v in by.values()) / len(by) for j in sorted({1, k})}
    # Recounted from the raw stage, not with the product's own predicate: a WAT assembled and
    # validated when the judge went on to execute it, or passed validation with nothing to run.
    v = [s["verdict"] for s in samples]
    out["assemble_rate"] = sum(x["stage"] == "execute" or (x["stage"] == "validate" and x["ok"]) for x in v) / len(v)
    out["failure_stages"] = dict(Counter(s["verdict"]["stage"] for s in samples if not s["ok"]))
    out["stopped_at_eos_rate"] = sum(s["stopped_at_eos"] for s in samples) / len(samples)
    return out


def test_eval_of_a_tiny_model_matches_its_samples(model_dir, dataset, tmp_path):
    out = tmp_path / "ev"
    logs: list[str] = []
    m = run_eval(model_dir, dataset, k=2, n=3, seed=1, max_new_tokens=24, out=out, judge_options=FAST_JUDGE,
                 cache_dir=tmp_path / "cache", log=logs.append)
    samples = list(read_jsonl(out / "samples.jsonl"))
    assert len(samples) == m["samples"] == 6 * 3 and m["prompts"] == 6
    assert [(s["example_id"], s["k"]) for s in samples[:3]] == [(samples[0]["example_id"], j) for j in range(3)]
    for s in samples:
        assert set(s) >= {"example_id", "unit_id", "mode", "k", "messages", "completion", "code", "verdict", "ok"}
        assert s["messages"][-1]["role"] == "user"  # the prompt, not the answer
        assert s["code"] == extract_code(s["completion"]) and s["ok"] == s["verdict"]["ok"]
        assert "timings" not in s["verdict"]
    re = _recount(samples, 2)
    for key in ("pass@1", "pass@2", "assemble_rate", "stopped_at_eos_rate"):
        assert m[key] == pytest.approx(re[key], abs=1e-4), key
    assert m["failure_stages"] == re["failure_stages"]
    assert sum(m["failure_stages"].values()) == m["samples"] - m["passed"] - m["passed_without_running"]
    assert m["temperature"] == 0.8 and m["n"] == 3 and m["k"] == 2 and m["target"] == "c-wat"
    assert json.loads((out / "metrics.json").read_text()) == m
    hist = list(read_jsonl(model_dir / "history.jsonl"))
    assert hist[-1]["pass@1"] == m["pass@1"] and hist[-1]["out"] == str(out)
    assert (model_dir / "history.png").stat().st_size > 1000


def test_same_seed_same_bytes_whatever_the_batching(model_dir, dataset, tmp_path):
    kw = dict(k=2, n=2, max_new_tokens=16, judge_options=FAST_JUDGE, cache_dir=tmp_path / "c", history=False)
    run_eval(model_dir, dataset, seed=3, batch_size=8, out=tmp_path / "a", **kw)
    run_eval(model_dir, dataset, seed=3, batch_size=3, out=tmp_path / "b", **kw)
    run_eval(model_dir, dataset, seed=4, batch_size=8, out=tmp_path / "c4", **kw)
    a, b = (tmp_path / "a" / "samples.jsonl").read_bytes(), (tmp_path / "b" / "samples.jsonl").read_bytes()
    assert a == b
    assert a != (tmp_path / "c4" / "samples.jsonl").read_bytes()


def test_killed_generation_resumes_and_reproduces(model_dir, dataset, tmp_path):
    kw = dict(k=1, n=2, temperature=1.0, max_new_tokens=16, judge_options=FAST_JUDGE, cache_dir=tmp_path / "c",
              history=False, out=tmp_path / "ev")
    first = run_eval(model_dir, dataset, **kw)
    whole = (tmp_path / "ev" / "samples.jsonl").read_bytes()
    gens = tmp_path / "ev" / "generations.jsonl"
    lines = gens.read_text().splitlines(keepends=True)
    gens.write_text("".join(lines[:5]) + lines[5][:20])  # a kill mid-append
    logs: list[str] = []
    again = run_eval(model_dir, dataset, log=logs.append, **kw)
    assert any("reusing 5 of 12" in x for x in logs), logs
    assert again["generation"]["samples_generated"] == 7
    assert (tmp_path / "ev" / "samples.jsonl").read_bytes() == whole
    assert again["pass@1"] == first["pass@1"]


def test_greedy_n_copies_and_limit(model_dir, dataset, tmp_path):
    m = run_eval(model_dir, dataset, k=1, n=2, temperature=0, limit=2, max_new_tokens=8, out=tmp_path / "g",
                 judge_options=FAST_JUDGE, cache_dir=tmp_path / "c", history=False, log=lambda _m: None)
    samples = list(read_jsonl(tmp_path / "g" / "samples.jsonl"))
    assert m["prompts"] == 2 and len(samples) == 4
    assert samples[0]["completion"] == samples[1]["completion"]
    assert m["judge"]["distinct"] <= 2


def test_reference_answers_pass_through_the_judging_path(dataset, tmp_path):
    es = load_eval_set(dataset)
    assert es.target == "c-wat" and es.modules_dir is not None and es.modules_dir.name == "modules"
    samples = []
    for r in es.rows:
        ref = r["messages"][-1]["content"]
        samples.append({"example_id": r["id"], "unit_id": r["unit_id"], "mode": r["mode"], "k": 0,
                        "completion": f"Here it is:\n```wat\n{ref}\n```\n", "stopped_at_eos": True})
        broken = ref.replace("i32.", "i64.", 1) if "i32." in ref else ref + ")"
        samples.append({"example_id": r["id"], "unit_id": r["unit_id"], "mode": r["mode"], "k": 1,
                        "completion": broken, "stopped_at_eos": False})
    info = judge_samples(es.target, samples, units=es.units, modules_dir=es.modules_dir, options=FAST_JUDGE,
                         cache_dir=tmp_path / "cache", jobs=2)
    # per unit: the reference (also the unit's own reference check) and the broken one, shared by both modes
    assert info["judged"] == 3 * 2 and info["references"] == 3 and info["references_unverified"] == 0
    assert all(s["ok"] and s["verdict"]["stage"] == "execute" for s in samples[::2]), \
        [s["verdict"] for s in samples[::2] if not s["ok"]]
    assert not any(s["ok"] for s in samples[1::2])
    m = summarize_samples(samples, "c-wat", k=2)
    assert m["pass@1"] == 0.5 and m["pass@2"] == 1.0 and m["passed"] == 6
    assert m["passed_without_running"] == 0 and m["prompts_unverifiable"] == 0
    assert all(s["reference_verified"] for s in samples)
    built = sum(s["verdict"]["stage"] == "execute" for s in samples)  # recounted from the stage reached
    assert m["assemble_rate"] == pytest.approx(built / 12, abs=1e-4)
    assert all(s["verdict"]["counts"]["passed"] == s["verdict"]["counts"]["run"] > 0 for s in samples[::2])


# ------------------------------------------------------------------ loading models


def test_load_model_from_run_folder_and_adapter(model_dir, dataset, tmp_path):
    from peft import LoraConfig, get_peft_model

    assert resolve_model_dir(model_dir.parent) == (model_dir, "model")  # a train OUT folder
    base, tok = load_model(model_dir)
    lora = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                           task_type="CAUSAL_LM", init_lora_weights=False))
    lora.save_pretrained(tmp_path / "run" / "adapter")
    cfg = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(model_dir)
    (tmp_path / "run" / "adapter" / "adapter_config.json").write_text(json.dumps(cfg))
    assert resolve_model_dir(tmp_path / "run") == (tmp_path / "run" / "adapter", "adapter")
    merged, tok2 = load_model(tmp_path / "run")
    plain, _ = load_model(model_dir)
    prompt = [[{"role": "user", "content": "Implement: int is_lt(int a, int b)"}]]
    a = sample(merged, tok2, prompt, max_new_tokens=6)[0][0]
    b = sample(plain, tok, prompt, max_new_tokens=6)[0][0]
    assert a.new_tokens >= 1 and b.new_tokens >= 1
    ids = tok(tok.apply_chat_template(prompt[0], add_generation_prompt=True, tokenize=False),
              return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        assert not torch.allclose(merged(ids).logits, plain(ids).logits)  # the adapter was applied


def test_bad_inputs_are_one_line_errors(model_dir, dataset, tmp_path):
    with pytest.raises(EvalError, match="no such dataset folder"):
        run_eval(model_dir, tmp_path / "nope")
    with pytest.raises(EvalError, match=r"no val.jsonl \(splits here: test\)"):
        run_eval(model_dir, dataset, split="val")
    with pytest.raises(EvalError, match="not a model"):
        run_eval(tmp_path, dataset)
    with pytest.raises(EvalError, match="n >= k"):
        run_eval(model_dir, dataset, k=3, n=2)
    with pytest.raises(SamplingError, match="no such model folder"):
        load_model(tmp_path / "missing")
    lost = tmp_path / "lost"
    lost.mkdir()
    for f in ("test.jsonl", "units.jsonl"):
        (lost / f).write_bytes((dataset / f).read_bytes())
    (lost / "stats.json").write_text(json.dumps({"target": "c-wat", "inputs": {"files": []}}))
    with pytest.raises(EvalError, match="cannot find the reference modules"):
        load_eval_set(lost)
    res = CliRunner().invoke(app, ["eval", str(tmp_path), "--dataset", str(dataset)])
    assert res.exit_code == 2 and "error:" in res.output and "Traceback" not in res.output


def test_cli_eval_prints_the_table(model_dir, dataset, tmp_path):
    res = CliRunner().invoke(app, ["eval", str(model_dir), "--dataset", str(dataset), "-k", "2", "--limit", "2",
                                   "--max-new-tokens", "8", "-o", str(tmp_path / "o"), "-j", "1", "--no-history"])
    assert res.exit_code == 0, res.output
    assert "pass@2" in res.output and "assemble rate" in res.output
    last = json.loads(res.output.strip().splitlines()[-1])
    assert last["samples"] == 4 and (tmp_path / "o" / "metrics.json").is_file()


def test_samples_stop_at_the_context_and_do_not_depend_on_the_batch(model_dir):
    model, tok = load_model(model_dir)
    prompts = [[{"role": "user", "content": "Implement: int is_lt(int a, int b)" + " x" * i}] for i in range(5)]
    lens = [len(tok(tok.apply_chat_template(p, add_generation_prompt=True, tokenize=False),
                    add_special_tokens=False)["input_ids"]) for p in prompts]
    model.config.max_position_embeddings = max(lens) + 4  # the longest prompt has 4 positions left
    try:
        one = sample(model, tok, prompts, n=2, temperature=1.0, max_new_tokens=12, batch_size=1, seed=5)
        many = sample(model, tok, prompts, n=2, temperature=1.0, max_new_tokens=12, batch_size=8, seed=5)
    finally:
        model.config.max_position_embeddings = 1024
    assert [[c.text for c in cs] for cs in one] == [[c.text for c in cs] for cs in many]
    for n_prompt, cs in zip(lens, one, strict=True):
        for c in cs:
            assert c.new_tokens <= min(12, max(lens) + 4 - n_prompt)


def test_row_sampler_draws_from_the_tempered_nucleus():
    from codehone.sampling import RowSampler

    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]])
    p = (logits / 0.8).softmax(-1)[0]
    nucleus = p[:3] / p[:3].sum()  # 0.69 + 0.20 < 0.9 <= 0.69 + 0.20 + 0.11: three tokens are kept
    rs = RowSampler([1], temperature=0.8, top_p=0.9, device=torch.device("cpu"))
    draws = Counter(int(rs(None, logits).argmax()) for _ in range(4000))
    assert set(draws) == {0, 1, 2}
    for t in range(3):
        assert draws[t] / 4000 == pytest.approx(float(nucleus[t]), abs=0.03)
