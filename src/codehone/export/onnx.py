"""`--to onnx`: torch's dynamo exporter, with the KV cache as explicit inputs and outputs.

Why a wrapper module: onnxruntime has no notion of a transformers Cache object,
so the graph takes the past keys/values as two stacked tensors
[layers, batch, kv_heads, past, head_dim] and returns them extended. Past length
0 is a valid input, so one graph does both prefill and one-token decode, and
generation costs one new position per step instead of recomputing the prefix.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

from .runtime import ONNX_FILE, cache_kw, out_cache
from .source import ExportError, save_companions


def _wrapper(model):
    import torch
    from transformers import DynamicCache

    n_layers = model.config.num_hidden_layers
    kw = cache_kw(model)

    class WithCache(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, past_keys, past_values):
            cache = DynamicCache(config=self.m.config)
            for i in range(n_layers):
                cache.update(past_keys[i], past_values[i], i)
            past = past_keys.shape[3]
            pos = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0) + past
            out = self.m(input_ids=input_ids, position_ids=pos, use_cache=True, **{kw: cache})
            c = out_cache(out)
            keys = torch.stack([c.layers[i].keys for i in range(n_layers)])
            values = torch.stack([c.layers[i].values for i in range(n_layers)])
            return out.logits, keys, values

    return WithCache(model).eval()


def write(model, tok, gen, out: Path, log=print) -> dict:
    import torch

    cfg = model.config
    if getattr(cfg, "model_type", "") not in {"llama", "mistral", "qwen2", "qwen3"}:
        raise ExportError(f"--to onnx supports Llama-style decoders (llama, mistral, qwen2, qwen3), "
                          f"not {cfg.model_type!r}")
    layers = cfg.num_hidden_layers
    kv = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    ids = torch.randint(3, min(cfg.vocab_size, 1000), (1, 7))
    past = torch.randn(layers, 1, kv, 5, hd)
    dim = torch.export.Dim
    batch, seq = dim("batch", min=1, max=64), dim("seq", min=1, max=65536)
    past_len = dim("past", min=0, max=65536)
    big = sum(p.numel() * p.element_size() for p in model.parameters()) > 1.8e9
    sink = io.StringIO()
    # The exporter's registry logs a warning per torchvision op it cannot register; none is used here.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _wrapper(model), (ids, past, past.clone()), str(out / ONNX_FILE), dynamo=True,
            input_names=["input_ids", "past_keys", "past_values"],
            output_names=["logits", "present_keys", "present_values"],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "past_keys": {1: batch, 3: past_len},
                            "past_values": {1: batch, 3: past_len}},
            external_data=big, verbose=False,
        )
    save_companions(out, model, tok, gen)
    files = [ONNX_FILE] + (["model.onnx.data"] if (out / "model.onnx.data").exists() else [])
    return {"files": files, "kv_cache": True, "opset": "torch dynamo exporter default",
            "bytes": sum((out / f).stat().st_size for f in files)}
