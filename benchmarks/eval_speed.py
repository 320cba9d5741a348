"""Generation speed of `codehone eval`'s sampler against the obvious alternatives, on the same model.

    python benchmarks/eval_speed.py MODEL_DIR DATASET [--prompts 8] [--max-new-tokens 128] [--rounds 2]

Methods (each samples the same prompts once, temperature 0.8, top_p 0.95):
  codehone      sampling.sample: batch of 8, left padding, KV cache, one seeded generator per row
  hf-batched    model.generate(do_sample=True) on the same batches (global RNG: not reproducible per
                sample, the cost of the per-row sampler is the difference)
  one-by-one    model.generate(do_sample=True) one prompt at a time (the baseline)
Rounds are interleaved (a, b, c, a, b, c) and each method's best round is kept, since the machine
is shared. Prints new tokens per second; the ratio column is against one-by-one.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from codehone.sampling import _threads, cpu_threads, load_model, render, sample


def _hf(model, tok, texts: list[str], batch: int, max_new: int) -> int:
    tok.padding_side = "left"
    new = 0
    for i in range(0, len(texts), batch):
        enc = tok(texts[i:i + batch], add_special_tokens=False, return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new, do_sample=True, temperature=0.8, top_p=0.95,
                                 top_k=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        for row in out[:, enc["input_ids"].shape[1]:].tolist():
            new += row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
    return new


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("dataset")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    model, tok = load_model(a.model)
    rows = [json.loads(x) for x in (Path(a.dataset) / "test.jsonl").read_text().splitlines()[: a.prompts]]
    prompts = [r["messages"][:-1] for r in rows]
    texts = [render(tok, p) for p in prompts]
    threads = cpu_threads()

    def codehone() -> int:
        out = sample(model, tok, prompts, n=1, temperature=0.8, top_p=0.95, max_new_tokens=a.max_new_tokens,
                     batch_size=8, threads=threads)
        return sum(c[0].new_tokens for c in out)

    def batched() -> int:
        with _threads(threads):
            return _hf(model, tok, texts, 8, a.max_new_tokens)

    def single() -> int:
        with _threads(threads):
            return _hf(model, tok, texts, 1, a.max_new_tokens)

    methods = {"codehone": codehone, "hf-batched": batched, "one-by-one": single}
    best: dict[str, float] = {}
    for r in range(a.rounds):
        for name, fn in methods.items():
            torch.manual_seed(r)
            t0 = time.perf_counter()
            toks = fn()
            tps = toks / (time.perf_counter() - t0)
            best[name] = max(best.get(name, 0.0), tps)
            print(f"round {r + 1} {name:11s} {toks:6d} tokens {tps:8.1f} tok/s", flush=True)
    base = best["one-by-one"]
    print(f"\n{a.prompts} prompts, max {a.max_new_tokens} new tokens, {threads} torch thread(s), best of {a.rounds}")
    print(f"{'method':12s} {'tok/s':>8s} {'vs one-by-one':>14s}")
    for name, tps in best.items():
        print(f"{name:12s} {tps:8.1f} {tps / base:13.2f}x")


if __name__ == "__main__":
    main()
