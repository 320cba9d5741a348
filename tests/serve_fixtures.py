"""A tiny untrained chat model written to disk in a second: what the serve and MCP tests load.

It is laid out like a `codehone train` output folder (OUT/model/ with the tokenizer, the chat
template and a generation config with EOS), so the tests also exercise the loader's resolution.
Untrained weights emit arbitrary tokens; the tests check the plumbing, never the quality.
"""

from __future__ import annotations

from pathlib import Path

import torch

from codehone.train.model import build_scratch
from codehone.train.run import save_final
from codehone.train.tokenizer import train_tokenizer, training_texts
from train_fixtures import example, tiny_cfg

C_TEXT = ["int add(int a, int b) { return a + b; }", "(func $add (param i32 i32) (result i32) local.get 0)",
          "const std = @import(\"std\"); pub fn main() void {}", "Implement: int add(int a, int b)"]


def make_tiny_model(out: Path, seq_len: int = 256) -> Path:
    """OUT/model/ holding a 2-layer Llama and its BPE + chat template; returns OUT."""
    texts = list(training_texts([example(i) for i in range(40)])) + C_TEXT * 3
    tok = train_tokenizer(texts, vocab_size=320, min_frequency=1)
    cfg = tiny_cfg(out, out, seq_len=seq_len)
    torch.manual_seed(0)
    model = build_scratch(cfg, tok)
    save_final(model, tok, cfg, out, merge=False)
    return out
