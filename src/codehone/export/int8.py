"""`--to int8`: torch dynamic quantization of every Linear layer, saved so it reloads.

Why dynamic int8: no calibration data is needed, weights shrink about 4x, and on
a CPU the int8 matmuls (fbgemm/qnnpack) are usually faster than fp32. The saved
form is the quantized state dict beside config.json; `runtime.Int8LM` rebuilds
the fp32 architecture, quantizes it the same way and loads the state, since a
quantized module cannot be written as safetensors.
"""

from __future__ import annotations

import time
from pathlib import Path

from .runtime import INT8_WEIGHTS, TorchLM, quantize_int8
from .source import save_companions


def _tokens_per_s(lm: TorchLM, ids: list[int], n: int = 24) -> float:
    lm.eos = set()  # time a fixed number of tokens, EOS or not
    t0 = time.perf_counter()
    got = sum(1 for _ in lm.generate_ids(ids, max_tokens=n))
    return got / (time.perf_counter() - t0)


def write(model, tok, gen, out: Path) -> dict:
    import torch

    seen, fp32_bytes = set(), 0
    for t in model.state_dict().values():  # tied embeddings share one storage: count it once
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            fp32_bytes += t.numel() * t.element_size()
    q = quantize_int8(model)  # quantize_dynamic copies; model stays fp32
    torch.save(q.state_dict(), out / INT8_WEIGHTS)
    save_companions(out, model, tok, gen)
    ids = tok("int f(int x) { return x * 2; }", add_special_tokens=False)["input_ids"]
    fp, i8 = TorchLM(model, tok), TorchLM(q, tok)
    _tokens_per_s(i8, ids, 4)  # warm both
    _tokens_per_s(fp, ids, 4)
    speeds = {"fp32": [], "int8": []}
    for _ in range(2):  # interleaved, best of two: the machine is shared
        speeds["fp32"].append(_tokens_per_s(fp, ids))
        speeds["int8"].append(_tokens_per_s(i8, ids))
    size = (out / INT8_WEIGHTS).stat().st_size
    return {
        "files": [INT8_WEIGHTS, "config.json", "generation_config.json", "tokenizer.json"],
        "fp32_weights_bytes": fp32_bytes, "int8_file_bytes": size,
        "size_ratio": round(size / fp32_bytes, 3),
        "fp32_tokens_per_s": round(max(speeds["fp32"]), 1), "int8_tokens_per_s": round(max(speeds["int8"]), 1),
        "speedup": round(max(speeds["int8"]) / max(speeds["fp32"]), 2),
    }
