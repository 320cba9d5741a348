"""Models: a Llama-style model of a named size built in-process, or a local Hugging Face checkpoint.

Why Llama-style: RMSNorm, rotary positions, SwiGLU and tied embeddings are what
every small open model uses, and the result loads with `AutoModelForCausalLM`
and exports with the standard tools, so nothing downstream needs codehone.

The sizes are counted with a vocabulary of their default size (see `SIZES`);
`param_count` reports the real number for a run.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from ..config import TrainConfig

# name: (hidden, layers, heads, intermediate, default vocab). Roughly 5M / 30M / 120M parameters.
SIZES: dict[str, tuple[int, int, int, int, int]] = {
    "tiny": (256, 5, 4, 688, 4096),
    "small": (512, 8, 8, 1376, 8192),
    "base": (768, 15, 12, 2048, 16384),
}


class ModelError(ValueError):
    """A base model that cannot be used, as one line."""


def default_vocab(cfg: TrainConfig) -> int:
    return cfg.tokenizer.vocab_size or SIZES[cfg.model.size][4]


def scratch_config(cfg: TrainConfig, tok) -> LlamaConfig:
    h, n, heads, inter, _ = SIZES[cfg.model.size]
    m = cfg.model
    h, n, heads, inter = m.hidden_size or h, m.num_layers or n, m.num_heads or heads, m.intermediate_size or inter
    if h % heads:
        raise ModelError(f"train.model: hidden_size {h} is not divisible by num_heads {heads}")
    return LlamaConfig(
        vocab_size=len(tok), hidden_size=h, num_hidden_layers=n, num_attention_heads=heads,
        num_key_value_heads=heads, intermediate_size=inter, max_position_embeddings=cfg.seq_len,
        rope_theta=10000.0, tie_word_embeddings=True, attention_dropout=m.dropout,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )


def build_scratch(cfg: TrainConfig, tok) -> LlamaForCausalLM:
    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(scratch_config(cfg, tok))
    model.config.use_cache = False
    return model


def load_pretrained(path: str | Path, dtype: torch.dtype = torch.float32):
    p = Path(path)
    if not (p / "config.json").is_file():
        raise ModelError(f"{p}: not a Hugging Face model folder (no config.json)")
    try:
        model = AutoModelForCausalLM.from_pretrained(p, dtype=dtype)
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"{p}: cannot load as a causal LM ({str(e).splitlines()[0]})") from None
    model.config.use_cache = False
    return model


def add_lora(model, cfg: TrainConfig):
    from peft import LoraConfig, get_peft_model

    lc = cfg.lora
    pc = LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=lc.target_modules,
                    task_type="CAUSAL_LM")
    return get_peft_model(model, pc)


def param_count(model, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
