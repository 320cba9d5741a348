"""`codehone train` scratch mode: loss masking, accumulation, packing, EOS, resume, HF output, errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from codehone.config import ConfigError, load_train_config
from codehone.train import data, loop
from codehone.train.model import build_scratch
from codehone.train.run import TrainError, run_train
from codehone.train.tokenizer import train_tokenizer, training_texts
from train_fixtures import example, tiny_cfg, write_dataset

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(training_texts([example(i) for i in range(30)]), 320, 1)


def _model(tmp_path, tok, **kw):
    cfg = tiny_cfg(tmp_path, tmp_path / "o", **kw)
    return build_scratch(cfg, tok)


def test_targets_are_the_completion_and_eos_only(tok):
    enc = data.encode(tok, [example(3)], 128)
    ids, tgt = enc.items[0]
    prompt, completion = data.prompt_and_completion(tok, example(3)["messages"])
    c_ids = tok(completion, add_special_tokens=False)["input_ids"]
    assert completion.endswith(tok.eos_token) and c_ids[-1] == tok.eos_token_id
    assert [t for t in tgt if t != data.IGNORE] == c_ids
    # target t is token t+1: the first target sits on the prompt's last position
    first = next(i for i, t in enumerate(tgt) if t != data.IGNORE)
    assert ids[first + 1] == c_ids[0] and tgt[-1] == data.IGNORE
    assert tok.decode(ids[: first + 1]) == prompt


def test_long_examples_are_dropped_and_counted_not_truncated(tok):
    long = example(1)
    long["messages"][-1]["content"] = "(i32.add) " * 200
    enc = data.encode(tok, [example(0), long, example(2)], 64)
    assert enc.dropped_long == 1 and len(enc.items) == 2
    assert all(len(x) <= 64 for x, _ in enc.items)


@torch.no_grad()
def test_packed_loss_equals_unpacked_per_example(tmp_path, tok):
    model = _model(tmp_path, tok).eval()
    items = data.encode(tok, [example(i) for i in range(5)], 128).items
    rows = data.pack(items, 128, seed=0, packing=True)
    assert any(len(r) > 1 for r in rows), "the fixture must actually pack several examples per row"
    packed = data.collate(items, rows, tok.pad_token_id, 128)
    ce, mask = loop.token_losses(model, packed, bf16=False)
    per_packed = {}
    for b, r in enumerate(rows):
        t = 0
        for i in r:
            n = len(items[i][0])
            per_packed[i] = float(ce[b, t:t + n].sum())
            t += n
    for i in range(len(items)):
        single = data.collate(items, [[i]], tok.pad_token_id)
        ce1, _ = loop.token_losses(model, single, bf16=False)
        assert float(ce1.sum()) == pytest.approx(per_packed[i], rel=1e-4, abs=1e-4)
    # the same tokens with one causal span over the whole row would see the previous examples
    leaky = dict(packed)
    leaky["attention_mask"] = None
    leaky["doc_lens"] = packed["row_lens"]  # one "example" per row, as the packed path sees it
    leaky["position_ids"] = torch.arange(128).expand(len(rows), 128)
    ce_l, _ = loop.token_losses(model, leaky, bf16=False)
    assert not torch.allclose(ce_l * mask, ce * mask, atol=1e-4)


def test_packed_attention_matches_the_block_mask_with_gradients(tmp_path, tok):
    items = data.encode(tok, [example(i) for i in range(6)], 128).items
    b = data.collate(items, data.pack(items, 128, seed=0), tok.pad_token_id, 128)
    assert len(b["doc_lens"]) > len(b["row_lens"]) and int(b["row_lens"].sum()) < b["input_ids"].numel()
    grads, losses = [], []
    for batch in (b, {k: v for k, v in b.items() if k != "doc_lens"}):  # packed path, then block-mask path
        model = _model(tmp_path, tok)
        ce, _ = loop.token_losses(model, batch, bf16=False)
        ce.sum().backward()
        losses.append(ce)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        assert model.config._attn_implementation == "sdpa", "packed attention must not stick to the model"
    assert torch.allclose(losses[0], losses[1], atol=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-4, rtol=1e-4)


def test_batch4_equals_batch1_times_accum4(tmp_path, tok):
    items = data.encode(tok, [example(i) for i in (0, 13, 26, 37)], 128).items
    lens = {sum(t != data.IGNORE for t in y) for _, y in items}
    assert len(lens) > 1, "completion lengths must differ, or a per-batch mean would pass too"

    def one_step(micro_rows):
        torch.manual_seed(0)
        model = _model(tmp_path, tok)
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        sch = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        mb = [data.collate(items, r, tok.pad_token_id) for r in micro_rows]
        r = loop.train_step(model, opt, sch, mb, bf16=False, grad_clip=None)
        return r["loss"], torch.cat([p.detach().flatten() for p in model.parameters()])

    loss4, p4 = one_step([[[0], [1], [2], [3]]])
    loss1, p1 = one_step([[[0]], [[1]], [[2]], [[3]]])
    assert loss1 == pytest.approx(loss4, rel=1e-5)
    assert torch.allclose(p1, p4, atol=1e-5)


def test_resume_continues_exactly(tmp_path):
    ds = write_dataset(tmp_path / "ds")
    a = tmp_path / "a"
    run_train(tiny_cfg(ds, a, max_steps=6, save_every=3, batch_size=2), log=lambda m: None)
    full = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    b = tmp_path / "b"
    shutil.copytree(a, b)
    shutil.rmtree(b / "checkpoints" / "step-0000006")  # as if killed after step 3's checkpoint
    cfg = tiny_cfg(ds, b, max_steps=6, save_every=3, batch_size=2)
    with pytest.raises(TrainError, match="--resume"):
        run_train(cfg, log=lambda m: None)
    run_train(cfg, resume=True, log=lambda m: None)
    again = [json.loads(x) for x in (b / "metrics.jsonl").read_text().splitlines()]
    la = [r["loss"] for r in full if "loss" in r]
    lb = [r["loss"] for r in again if "loss" in r]
    assert len(la) == len(lb) == 6
    assert lb == pytest.approx(la, rel=1e-5)
    assert la[3] != la[2]


def test_trained_model_loads_with_auto_classes_and_stops_at_eos(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ds = write_dataset(tmp_path / "ds", n_train=10, n_val=2)
    out = tmp_path / "run"
    s = run_train(tiny_cfg(ds, out, max_steps=200, lr=1e-2, batch_size=4, eval_every=100, samples=1,
                           sample_max_new_tokens=24), log=lambda m: None)
    assert s["final_eval_loss"] is not None
    for name in ("metrics.jsonl", "loss.png", "samples.jsonl", "summary.json"):
        assert (out / name).is_file(), name
    assert list((out / "tb").iterdir())
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    tok = AutoTokenizer.from_pretrained(out / "model")
    assert tok.chat_template and model.generation_config.eos_token_id == tok.eos_token_id
    msgs = example(4)["messages"]
    text, stopped = loop.generate(model, tok, msgs[:-1], max_new_tokens=40)
    assert stopped, f"no EOS within 40 tokens: {text!r}"
    assert text == msgs[-1]["content"]


def test_config_errors_name_the_key(tmp_path):
    r = tmp_path / "r.yaml"
    r.write_text("train:\n  data: d\n  out: o\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"^train\.lrr: unknown setting"):
        load_train_config(r)
    r.write_text("train:\n  data: d\n  out: o\n")
    with pytest.raises(ConfigError, match=r"^train\.batch_size: "):
        load_train_config(r, ["batch_size=0"])
    with pytest.raises(ConfigError, match=r"^train\.mode: "):
        load_train_config(r, ["mode=dpo"])
    with pytest.raises(ConfigError, match="no such recipe"):
        load_train_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="base_model"):
        load_train_config(r, ["mode=lora"])
    r.write_text("build:\n  target: c-wat\n")
    with pytest.raises(ConfigError, match="no `train:` section"):
        load_train_config(r)


def test_missing_dataset_and_qlora_on_cpu_are_one_line_errors(tmp_path):
    with pytest.raises(TrainError, match=r"nope: no such dataset folder"):
        run_train(tiny_cfg(tmp_path / "nope", tmp_path / "o"), log=lambda m: None)
    ds = write_dataset(tmp_path / "ds", n_train=2, n_val=1)
    if not torch.cuda.is_available():
        with pytest.raises(TrainError, match="qlora needs a CUDA GPU"):
            run_train(tiny_cfg(ds, tmp_path / "o2", mode="qlora", base_model=str(ds)), log=lambda m: None)


def test_cli_prints_one_line_error(tmp_path):
    from typer.testing import CliRunner

    from codehone.cli import app

    r = tmp_path / "r.yaml"
    r.write_text("train:\n  data: d\n  out: o\n  bogus: 1\n")
    res = CliRunner().invoke(app, ["train", str(r)])
    assert res.exit_code == 2
    assert "train.bogus: unknown setting" in res.output
    assert "Traceback" not in res.output


def test_early_stopping_when_eval_loss_stops_improving(tmp_path):
    ds = write_dataset(tmp_path / "ds", n_train=8, n_val=2)
    # lr tiny: the eval loss cannot improve by the threshold, so the second eval stops the run
    s = run_train(tiny_cfg(ds, tmp_path / "o", max_steps=50, lr=1e-9, eval_every=2,
                           early_stopping_patience=1), log=lambda m: None)
    assert s["early_stopped"] and s["steps"] == 4
    assert (tmp_path / "o" / "checkpoints" / "step-0000004").is_dir()


def test_cli_trains_end_to_end_with_overrides(tmp_path):
    from typer.testing import CliRunner

    from codehone.cli import app

    ds = write_dataset(tmp_path / "ds", n_train=8, n_val=2)
    r = tmp_path / "r.yaml"
    r.write_text(
        "train:\n  mode: scratch\n  data: nowhere\n  out: nowhere\n"
        "  tokenizer: {vocab_size: 320, min_frequency: 1}\n"
        "  model: {hidden_size: 32, num_layers: 2, num_heads: 2, intermediate_size: 64}\n"
        "  seq_len: 128\n  batch_size: 2\n  eval_every: 2\n  samples: 1\n  sample_max_new_tokens: 4\n"
        "  precision: fp32\n"
    )
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", str(r), "--set", f"data={ds}", "--set", f"out={out}",
                                   "--set", "max_steps=3"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 3 and summary["final_eval_loss"] is not None
    assert (out / "model" / "config.json").is_file()
    res = CliRunner().invoke(app, ["train", str(r), "--set", "data=/no/such/dir", "--set", f"out={tmp_path}/x"])
    assert res.exit_code == 2 and "/no/such/dir: no such dataset folder" in res.output


@torch.no_grad()
def test_target_only_head_equals_full_logits(tmp_path, tok):
    model = _model(tmp_path, tok).eval()
    items = data.encode(tok, [example(i) for i in range(4)], 128).items
    b = data.collate(items, data.pack(items, 128, seed=0), tok.pad_token_id, 128)
    ce, has = loop.token_losses(model, b, bf16=False)
    logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                   position_ids=b["position_ids"]).logits
    full = torch.nn.functional.cross_entropy(logits.flatten(0, 1), b["targets"].flatten(), ignore_index=-100,
                                             reduction="none").view(has.shape)
    assert torch.allclose(ce, full, atol=1e-5) and float(ce[~has].abs().sum()) == 0.0


def test_bf16_autocast_step_matches_fp32_roughly(tmp_path, tok):
    items = data.encode(tok, [example(i) for i in range(4)], 128).items
    b = data.collate(items, data.pack(items, 128, seed=0), tok.pad_token_id, 128)
    losses = {}
    for bf16 in (False, True):
        torch.manual_seed(0)
        model = _model(tmp_path, tok)
        opt = loop.make_optimizer(model, 1e-3, 0.0)
        losses[bf16] = loop.train_step(model, opt, loop.make_scheduler(opt, 0, 10, 0.1), [b], bf16, 1.0)["loss"]
    assert loop.use_bf16("bf16", torch.device("cpu")) and not loop.use_bf16("auto", torch.device("cpu"))
    assert losses[True] == pytest.approx(losses[False], rel=0.02)


def test_compile_keeps_packed_attention_and_parameter_names(tmp_path, tok):
    model = _model(tmp_path, tok)
    names = [n for n, _ in model.named_parameters()]
    compiled = loop.compile_model(model, 128)  # lazy: nothing is compiled until a forward
    assert compiled is model, "the packed path needs the model itself, not a torch.compile wrapper"
    assert [n for n, _ in compiled.named_parameters()] == names, "checkpoints and saving need the same names"
    assert loop._decoder_and_head(compiled) is not None
