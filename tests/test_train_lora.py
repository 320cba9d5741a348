"""`codehone train` on a local HF checkpoint: lora (adapter, --merge), full, and phases through load_from.

The "pretrained" model is a tiny Llama created in-process and saved to tmp, so
no download is needed and the test stays fast.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from codehone.train.run import TrainError, run_train
from codehone.train.tokenizer import train_tokenizer, training_texts
from train_fixtures import example, tiny_cfg, write_dataset

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("base")
    tok = train_tokenizer(training_texts([example(i) for i in range(30)]), 320, 1)
    tok.chat_template = None  # like many base models: codehone must supply one
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _losses(out):
    return [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]


def test_lora_trains_only_the_adapter_and_merges(tmp_path, base_dir):
    ds = write_dataset(tmp_path / "ds")
    out = tmp_path / "lora"
    s = run_train(tiny_cfg(ds, out, mode="lora", base_model=str(base_dir), max_steps=12, lr=1e-2,
                           lora={"r": 4, "alpha": 8, "dropout": 0.0}, merge=True), log=lambda m: None)
    assert 0 < s["trainable_params"] < s["params"] / 2
    assert (out / "adapter" / "adapter_config.json").is_file()
    losses = _losses(out)
    assert losses[-1] < losses[0]
    merged = AutoModelForCausalLM.from_pretrained(out / "model")
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    tok = AutoTokenizer.from_pretrained(out / "model")
    assert tok.chat_template  # codehone's fallback template travels with the model
    diff = [not torch.equal(a, b) for a, b in zip(merged.state_dict().values(), base.state_dict().values(),
                                                  strict=True)]
    assert any(diff), "merging must change the base weights"


def test_full_finetune_then_lora_phase_from_it(tmp_path, base_dir):
    ds = write_dataset(tmp_path / "ds")
    p1 = tmp_path / "p1"
    s1 = run_train(tiny_cfg(ds, p1, mode="full", base_model=str(base_dir), max_steps=8), log=lambda m: None)
    assert s1["trainable_params"] == s1["params"]
    # phase 2 starts from phase 1's model at a lower learning rate
    p2 = tmp_path / "p2"
    s2 = run_train(tiny_cfg(ds, p2, mode="lora", load_from=str(p1), max_steps=4, lr=1e-3,
                            lora={"r": 2, "alpha": 4}), log=lambda m: None)
    assert s2["trainable_params"] < s2["params"]
    # phase 2's first loss continues from phase 1, not from the base model's
    assert _losses(p2)[0] < _losses(p1)[0]


def test_lora_phase_from_adapter_and_bad_load_from(tmp_path, base_dir):
    ds = write_dataset(tmp_path / "ds")
    p1 = tmp_path / "p1"
    run_train(tiny_cfg(ds, p1, mode="lora", base_model=str(base_dir), max_steps=6, lr=1e-2,
                       lora={"r": 4, "alpha": 8}), log=lambda m: None)
    assert not (p1 / "model").exists()  # no merge asked for
    p2 = tmp_path / "p2"
    run_train(tiny_cfg(ds, p2, mode="lora", base_model=str(base_dir), load_from=str(p1), max_steps=2),
              log=lambda m: None)
    assert (p2 / "adapter" / "adapter_config.json").is_file()
    with pytest.raises(TrainError, match="load_from"):
        run_train(tiny_cfg(ds, tmp_path / "p3", mode="full", load_from=str(tmp_path / "empty")),
                  log=lambda m: None)
    with pytest.raises(TrainError, match="train.base_model: .* is not a Hugging Face model folder"):
        run_train(tiny_cfg(ds, tmp_path / "p4", mode="lora", base_model=str(tmp_path)), log=lambda m: None)
