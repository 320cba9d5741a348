"""qlora: the one-line errors that a CPU machine (or one without bitsandbytes) gets, and the 4-bit settings.

The 4-bit path itself needs a CUDA GPU with bitsandbytes; the last test runs it
end to end where one is present and is skipped (with the reason) elsewhere.
"""

from __future__ import annotations

import sys

import pytest
import torch

from codehone.config import load_train_config
from codehone.train import qlora
from codehone.train.run import TrainError, run_train
from train_fixtures import tiny_cfg, write_dataset

HAS_4BIT = torch.cuda.is_available() and __import__("importlib").util.find_spec("bitsandbytes") is not None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU error")
def test_qlora_on_a_cpu_fails_in_one_line_before_loading(tmp_path):
    ds = write_dataset(tmp_path / "ds", n_train=2, n_val=1)
    # the base folder does not exist: the GPU check must come first, before anything is loaded
    cfg = tiny_cfg(ds, tmp_path / "o", mode="qlora", base_model=str(tmp_path / "no-such-model"))
    with pytest.raises(TrainError, match=r"^train.mode=qlora needs a CUDA GPU with bitsandbytes; use mode=lora"):
        run_train(cfg, log=lambda m: None)
    assert not (tmp_path / "o" / "checkpoints").exists()


def test_qlora_without_bitsandbytes_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` raise ImportError
    with pytest.raises(qlora.QLoraError, match="needs bitsandbytes: pip install bitsandbytes"):
        qlora.check_ready(torch.device("cuda"))


def test_qlora_uses_nf4_double_quant_bf16_compute():
    c = qlora.quant_config()
    assert c.load_in_4bit and c.bnb_4bit_quant_type == "nf4" and c.bnb_4bit_use_double_quant
    assert c.bnb_4bit_compute_dtype == torch.bfloat16


def test_shipped_qlora_recipe_validates():
    cfg = load_train_config("recipes/c-wat-small-qlora.yaml")
    assert cfg.mode == "qlora" and cfg.base_model and cfg.precision == "auto"


@pytest.mark.skipif(not HAS_4BIT, reason="needs a CUDA GPU and bitsandbytes")
def test_qlora_trains_an_adapter_on_a_gpu(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from codehone.train.tokenizer import train_tokenizer, training_texts
    from train_fixtures import example

    base = tmp_path / "base"
    tok = train_tokenizer(training_texts([example(i) for i in range(30)]), 320, 1)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=128, eos_token_id=tok.eos_token_id,
                                 pad_token_id=tok.pad_token_id)).save_pretrained(base)
    tok.save_pretrained(base)
    ds = write_dataset(tmp_path / "ds", n_train=8, n_val=2)
    s = run_train(tiny_cfg(ds, tmp_path / "o", mode="qlora", base_model=str(base), max_steps=3, lr=1e-3,
                           precision="auto", merge=True), log=lambda m: None)
    assert s["trainable_params"] < s["params"] and s["steps"] == 3
    assert (tmp_path / "o" / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "o" / "model" / "config.json").is_file()
