"""Inference tokens/s and peak memory: HF generate vs int8 vs ONNX vs GGUF (f16, q8_0, q4_k_m).

Same model, same prompts (the export parity prompts, rendered with the model's
chat template), same number of new tokens: EOS is ignored so every backend
produces exactly --tokens tokens per prompt (prefill included in the time).

  hf-generate   transformers `model.generate` (greedy, KV cache), fp32: the baseline
  hf-loop       the same fp32 model through codehone's runtime token loop (KV cache)
  int8          torch dynamic int8 (`codehone export --to int8`), codehone's loop
  onnx          `--to onnx` (fp32, KV cache in/out) on onnxruntime's CPU provider
  gguf-*        `--to gguf --quant ...` on llama.cpp (llama-cpp-python)

Why one process per backend, interleaved: peak RSS (ru_maxrss) must belong to one
backend alone, so each runs in its own worker process, loaded once. The CPU is
shared and its load changes within seconds, so the parent asks the workers for one
timed pass each in a rotating order, round after round; the table gives the median
tokens/s over rounds, the spread, and the median per-round ratio to hf-generate.
Every backend gets the same --threads (torch, onnxruntime intra-op and llama.cpp threads); on a
CPU shared with other work, 1 is the fair default: spinning thread pools collapse when the cores
they wait for are busy elsewhere.

Models: each --model (an HF folder or a `codehone train` run folder) and, with
--small, a random-init `small` Llama (512 hidden, 8 layers; ~26M parameters with a
2048 vocabulary) built in-process with the first model's tokenizer, so the figures
also say something about a model big enough for matmuls to dominate.

Usage: python benchmarks/infer_speed.py --model /tmp/shared/train/model --small [--rounds 3] [--tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

BACKENDS = ["hf-generate", "hf-loop", "int8", "onnx", "gguf-f16", "gguf-q8_0", "gguf-q4_k_m"]


# ---------------------------------------------------------------- worker side
def _worker(backend: str, folder: str, tokens: int, threads: int) -> None:
    """Load one backend, then answer each 'run' line on stdin with one timed pass as a JSON line."""
    import torch

    from codehone.export import parity
    from codehone.export.runtime import GgufLM, HfLM, Int8LM, OnnxLM

    torch.set_num_threads(threads)
    if backend.startswith("hf"):
        lm = HfLM(folder)
    elif backend == "int8":
        lm = Int8LM(folder)
    elif backend == "onnx":
        lm = OnnxLM(folder, threads=threads)
    else:
        lm = GgufLM(folder, threads=threads)
    lm.eos = set()  # exactly `tokens` new tokens per prompt
    prompts = [lm.encode(parity.render(lm.tokenizer, m)) for m in parity.PROMPTS]

    def one_pass() -> tuple[int, float]:
        t0 = time.perf_counter()
        n = 0
        for ids in prompts:
            if backend == "hf-generate":
                with torch.inference_mode():
                    out = lm.model.generate(torch.tensor([ids]), max_new_tokens=tokens, min_new_tokens=tokens,
                                            do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
                n += out.shape[1] - len(ids)
            else:
                n += sum(1 for _ in lm.generate_ids(ids, max_tokens=tokens))
        return n, time.perf_counter() - t0

    one_pass()  # warm-up: first-call allocations, kernel selection
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        n, dt = one_pass()
        print(json.dumps({"tokens": n, "seconds": dt}), flush=True)
    print(json.dumps({"peak_rss_mib": _peak_rss_mib()}), flush=True)


def _peak_rss_mib() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: a child's ru_maxrss starts at its
    parent's peak (the forked address space keeps the high-water mark, and exec carries it over), so
    every worker would report the parent's figure."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: may include the parent


# ---------------------------------------------------------------- parent side
def _prepare(model: Path, work: Path) -> dict[str, Path]:
    """Every export of `model` under work/ (reused when already there), as backend -> folder."""
    from codehone.export import export

    folders = {"hf-generate": model, "hf-loop": model}
    for backend in BACKENDS[2:]:
        to, _, quant = backend.partition("-")
        out = work / backend
        if not (out / "export.json").is_file():
            t0 = time.monotonic()
            rec = export(model, to, out, quant=quant or None, overwrite=True, log=lambda m: None)
            print(f"  exported {backend} in {time.monotonic() - t0:.0f}s: {rec['summary']}", flush=True)
        folders[backend] = out
    return folders


def _small_model(tok_dir: Path, out: Path) -> Path:
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
                      num_key_value_heads=8, intermediate_size=1376, max_position_embeddings=1024,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                               bos_token_id=tok.bos_token_id, do_sample=False)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _bench(name: str, folders: dict[str, Path], rounds: int, tokens: int, threads: int) -> list[dict]:
    procs = {}
    for b in BACKENDS:  # start and load one at a time, so loading does not overlap timing
        p = subprocess.Popen([sys.executable, __file__, "--worker", b, str(folders[b]), str(tokens), str(threads)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = p.stdout.readline()
        if not line or not json.loads(line).get("ready"):
            raise SystemExit(f"{b}: worker failed to start")
        procs[b] = p
    speeds: dict[str, list[float]] = {b: [] for b in BACKENDS}
    ratios: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for r in range(rounds):
        order = BACKENDS[r % len(BACKENDS):] + BACKENDS[: r % len(BACKENDS)]
        this = {}
        for b in order:
            procs[b].stdin.write("run\n")
            procs[b].stdin.flush()
            res = json.loads(procs[b].stdout.readline())
            this[b] = res["tokens"] / res["seconds"]
            speeds[b].append(this[b])
        for b in BACKENDS:
            ratios[b].append(this[b] / this["hf-generate"])
        print(f"  {name} round {r + 1}/{rounds}: " + ", ".join(f"{b} {this[b]:.0f}" for b in BACKENDS), flush=True)
    rows = []
    for b in BACKENDS:
        procs[b].stdin.write("stop\n")
        procs[b].stdin.flush()
        rss = json.loads(procs[b].stdout.readline())["peak_rss_mib"]
        procs[b].wait()
        f = folders[b]
        size = sum(x.stat().st_size for x in Path(f).iterdir() if x.suffix in {".safetensors", ".pt", ".onnx",
                                                                                ".data", ".gguf"})
        rows.append({"model": name, "backend": b, "tok_s": statistics.median(speeds[b]), "min": min(speeds[b]),
                     "max": max(speeds[b]), "x_hf_generate": statistics.median(ratios[b]), "peak_rss_mib": rss,
                     "weights_mib": size / 2**20})
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", default=[], help="HF folder or train run folder (repeatable)")
    ap.add_argument("--small", action="store_true", help="also a random-init ~26M-parameter `small` Llama")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=64, help="new tokens per prompt (3 prompts per pass)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for every backend")
    ap.add_argument("--work", type=Path, default=Path("out/bench/infer_speed"), help="exports are kept here")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    a = ap.parse_args()
    if not a.model:
        ap.error("give at least one --model")
    from codehone.export.source import resolve

    models = [(Path(m).resolve().name if Path(m).name != "model" else Path(m).resolve().parent.name,
               resolve(m).model_dir) for m in a.model]
    if a.small:
        models.append(("small-random", _small_model(models[0][1], a.work / "small-random" / "hf")))
    rows = []
    for name, model in models:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(model)
        print(f"{name}: {model} ({cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, "
              f"vocab {cfg.vocab_size})", flush=True)
        folders = _prepare(model, a.work / name)
        rows += _bench(name, folders, a.rounds, a.tokens, a.threads)
    print(f"\ntokens/s, {a.tokens} new tokens x 3 prompts per pass, median of {a.rounds} interleaved rounds "
          f"(min..max); {a.threads} CPU thread(s) per backend on {os.cpu_count()} cores; load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'model':<14} {'backend':<12} {'tok/s':>8} {'min..max':>13} {'x hf-gen':>9} {'peak RSS':>9} "
          f"{'weights':>8}")
    for r in rows:
        print(f"{r['model']:<14} {r['backend']:<12} {r['tok_s']:>8.1f} {r['min']:>6.0f}..{r['max']:<6.0f} "
              f"{r['x_hf_generate']:>8.2f}x {r['peak_rss_mib']:>6.0f}MiB {r['weights_mib']:>6.1f}MiB")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
