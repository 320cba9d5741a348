"""Training tokens/s: codehone's loop vs a plain torch loop vs HF Trainer (padded) vs TRL SFTTrainer.

Same model (a scratch Llama of the chosen size with the dataset's own BPE), same
examples, same precision, same number of timed optimizer steps. Tokens are the
real (non-pad) tokens fed to the model, so padding counts as waste.

  codehone   packed rows, block-diagonal mask, per-example positions, completion-only
             token-normalised loss (what `codehone train` runs)
  plain      the loop people write first: the same packed rows, HF's built-in `labels`
             loss, a plain causal mask (examples see each other: fast but contaminated)
  trainer    transformers.Trainer, one example per row, padded to the longest in the
             batch (no packing), completion-only labels
  sft        trl.SFTTrainer with its defaults (prompt/completion data), if trl imports

Usage: python benchmarks/train_throughput.py DATASET_DIR [--size tiny] [--steps 8] [--precision fp32]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from codehone.config import TrainConfig
from codehone.train import data, loop
from codehone.train.model import build_scratch
from codehone.train.tokenizer import train_tokenizer, training_texts


def time_steps(step_fn, warmup: int, steps: int) -> tuple[float, int]:
    """(seconds, tokens) over `steps` calls after `warmup` untimed ones; step_fn returns its token count."""
    for _ in range(warmup):
        step_fn()
    t0, n = time.perf_counter(), 0
    for _ in range(steps):
        n += step_fn()
    return time.perf_counter() - t0, n


def bench_codehone(model, items, args, pad_id, bf16):
    b = data.Batches(items, args.seq_len, args.batch_rows, pad_id, seed=0, packing=True)
    opt = loop.make_optimizer(model, 1e-3, 0.1)
    sch = loop.make_scheduler(opt, 0, 1000, 0.1)

    def step():
        mb = b.next()
        loop.train_step(model, opt, sch, [mb], bf16, 1.0)
        return int((mb["input_ids"] != pad_id).sum())
    return time_steps(step, args.warmup, args.steps)


def bench_plain(model, items, args, pad_id, bf16):
    rows = data.pack(items, args.seq_len, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    it = iter(range(0, 10**9, args.batch_rows))

    def step():
        i = next(it) % max(len(rows) - args.batch_rows, 1)
        mb = data.collate(items, rows[i:i + args.batch_rows], pad_id, args.seq_len)
        labels = torch.roll(mb["targets"], 1, dims=1)  # HF shifts labels itself
        with loop.autocast(torch.device("cpu"), bf16):
            out = model(input_ids=mb["input_ids"], labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return int((mb["input_ids"] != pad_id).sum())
    return time_steps(step, args.warmup, args.steps)


def _hf_rows(items):
    """Unpacked examples with completion-only labels in HF's unshifted convention."""
    return [{"input_ids": x, "labels": [-100] + y[:-1]} for x, y in items]


class _Timer:
    """A TrainerCallback that times steps after the warmup ones and counts their real tokens."""

    def __init__(self, warmup, pad_id):
        from transformers import TrainerCallback

        outer = self

        class CB(TrainerCallback):
            def on_step_begin(self, a, state, control, **kw):
                if state.global_step == warmup:
                    outer.t0 = time.perf_counter()

            def on_step_end(self, a, state, control, **kw):
                if state.global_step == warmup + outer.steps:
                    outer.t1 = time.perf_counter()
        self.cb, self.t0, self.t1, self.steps = CB(), None, None, 0


def _count_tokens(model, pad_id) -> list[int]:
    """Real tokens of every training forward, counted where the model sees them (after any prefetching)."""
    counted: list[int] = []

    def hook(mod, a, kw):
        if mod.training:
            ids = kw.get("input_ids", a[0] if a else None)
            am = kw.get("attention_mask")
            if am is not None and am.dim() == 2:
                counted.append(int(am.sum()))
            elif ids is not None:
                counted.append(int((ids != pad_id).sum()))
    model.register_forward_pre_hook(hook, with_kwargs=True)
    return counted


def bench_trainer(model, items, args, pad_id, bf16, avg_per_row):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    bs = max(1, round(args.batch_rows * avg_per_row))  # about the same real tokens per step as a packed batch
    rows = _hf_rows(items)
    ds = Dataset.from_list(rows)

    def collate(batch):
        w = max(len(r["input_ids"]) for r in batch)
        ids = torch.full((len(batch), w), pad_id)
        lab = torch.full((len(batch), w), -100)
        att = torch.zeros((len(batch), w), dtype=torch.long)
        for i, r in enumerate(batch):
            n = len(r["input_ids"])
            ids[i, :n], lab[i, :n], att[i, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), 1
        return {"input_ids": ids, "labels": lab, "attention_mask": att}

    timer = _Timer(args.warmup, pad_id)
    timer.steps = args.steps
    counted = _count_tokens(model, pad_id)
    with tempfile.TemporaryDirectory() as td:
        ta = TrainingArguments(output_dir=td, per_device_train_batch_size=bs, max_steps=args.warmup + args.steps,
                               learning_rate=1e-3, bf16=bf16, use_cpu=True, report_to=[], save_strategy="no",
                               logging_strategy="no", dataloader_num_workers=0, remove_unused_columns=False,
                               disable_tqdm=True, seed=0)
        Trainer(model=model, args=ta, train_dataset=ds, data_collator=collate, callbacks=[timer.cb]).train()
    return timer.t1 - timer.t0, sum(counted[args.warmup:args.warmup + args.steps])


def bench_sft(model, tok, examples, args, bf16, avg_per_row):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    bs = max(1, round(args.batch_rows * avg_per_row))
    ds = Dataset.from_list([{"messages": ex["messages"]} for ex in examples])
    timer = _Timer(args.warmup, tok.pad_token_id)
    timer.steps = args.steps
    counted = _count_tokens(model, tok.pad_token_id)
    with tempfile.TemporaryDirectory() as td:
        sc = SFTConfig(output_dir=td, per_device_train_batch_size=bs, max_steps=args.warmup + args.steps,
                       learning_rate=1e-3, bf16=bf16, use_cpu=True, report_to=[], save_strategy="no",
                       logging_strategy="no", disable_tqdm=True, max_length=args.seq_len, seed=0)
        SFTTrainer(model=model, args=sc, train_dataset=ds, processing_class=tok, callbacks=[timer.cb]).train()
    return timer.t1 - timer.t0, sum(counted[args.warmup:args.warmup + args.steps])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch-rows", type=int, default=4, help="packed rows per step")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; each method keeps its best")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--only", default="codehone,plain,trainer,sft")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    bf16 = args.precision == "bf16"
    train = data.load_chat(data.split_file(args.dataset, "train"))
    cfg = TrainConfig(data=str(args.dataset), out="/tmp/unused", model={"size": args.size}, seq_len=args.seq_len)
    tok = train_tokenizer(training_texts(train), 2048 if args.size == "tiny" else 8192, 2)
    enc = data.encode(tok, train, args.seq_len)
    rows = data.pack(enc.items, args.seq_len, seed=0)
    avg_per_row = len(enc.items) / len(rows)
    n_params = sum(p.numel() for p in build_scratch(cfg, tok).parameters())
    print(f"data: {args.dataset} ({len(enc.items)} examples, {enc.dropped_long} dropped > {args.seq_len} tokens, "
          f"{avg_per_row:.2f} examples per packed row); model: {args.size} {n_params / 1e6:.2f}M params; "
          f"{args.precision}; {args.steps} timed steps after {args.warmup} per round; threads {torch.get_num_threads()}")
    results: dict[str, tuple[float, int] | str] = {}
    # Rounds interleave the methods, and each keeps its best round: on a shared CPU another
    # process's burst then slows one round of one method, not a whole method.
    for rnd in range(args.rounds):
        for name in args.only.split(","):
            if isinstance(results.get(name), str):
                continue
            model = build_scratch(cfg, tok)  # same seed: same initial weights for every method
            model.train()
            try:
                if name == "codehone":
                    r = bench_codehone(model, enc.items, args, tok.pad_token_id, bf16)
                elif name == "plain":
                    r = bench_plain(model, enc.items, args, tok.pad_token_id, bf16)
                elif name == "trainer":
                    r = bench_trainer(model, enc.items, args, tok.pad_token_id, bf16, avg_per_row)
                elif name == "sft":
                    try:
                        import trl  # noqa: F401
                    except ImportError:
                        results[name] = "trl not installed"
                        continue
                    r = bench_sft(model, tok, train, args, bf16, avg_per_row)
                else:
                    r = f"unknown method {name!r}"
            except Exception as e:  # a baseline that breaks is reported, not fatal
                r = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:100]}"
            best = results.get(name)
            if isinstance(r, str) or best is None or r[1] / r[0] > best[1] / best[0]:
                results[name] = r
            print(f"  round {rnd + 1} {name}: " + (f"{r[1] / r[0]:,.0f} tokens/s" if isinstance(r, tuple) else r),
                  flush=True)
    base = results.get("codehone")
    base_tps = base[1] / base[0] if isinstance(base, tuple) else None
    print(f"\nbest of {args.rounds} interleaved rounds\n| method | tokens/s | codehone / method |\n|---|---:|---:|")
    for name, r in results.items():
        if isinstance(r, tuple):
            tps = r[1] / r[0]
            ratio = f"{base_tps / tps:.2f}x" if base_tps and tps else "-"
            print(f"| {name} | {tps:,.0f} | {ratio} |")
        else:
            print(f"| {name} | {r} | - |")


if __name__ == "__main__":
    main()
