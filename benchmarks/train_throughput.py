"""Training tokens/s: codehone's loop vs a plain torch loop (fp32, bf16) vs HF Trainer (padded) vs TRL SFTTrainer.

Same model (a scratch Llama of the chosen size with the dataset's own BPE), same
examples, same number of timed optimizer steps. Tokens are the real (non-pad)
tokens fed to the model, so padding counts as waste.

  codehone        what `codehone train` runs at its auto precision (fp32 on a CPU): packed
                  rows flattened without padding, one causal attention call per example
                  (no cross-example attention), completion-only token-normalised loss
  codehone-mask   the same loss through the block-diagonal (B, 1, T, T) mask: the previous path
  codehone-bf16, codehone-compile   (not run by default) bf16 autocast; `compile: true`
                  (its compile time falls in the warmup rounds: give --warmup 3 or more)
  plain-fp32/-bf16  the loop people write first: the same packed rows, HF's built-in `labels`
                  loss, one causal mask over the row (examples see each other: fast but contaminated)
  trainer         transformers.Trainer, one example per row, padded to the longest in the
                  batch (no packing), completion-only labels, --precision
  sft             trl.SFTTrainer with its defaults (prompt/completion data), --precision

Why everything is interleaved step by step: the CPU is shared, and its load changes
within seconds. Each round runs one step of every loop method on the same batch, in a
rotating order, so a burst of load hits all of them about equally. Trainer and TRL own
their loop, so a callback runs one round of the loop methods after each of their timed
steps (outside the timed window): each of their steps is paired with a codehone step
taken moments later. The table gives the median tokens/s, the spread (min..max), and
codehone / method as the median of the per-round ratios.

Usage: python benchmarks/train_throughput.py DATASET_DIR [--size tiny] [--rounds 12] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from codehone.config import TrainConfig
from codehone.train import data, loop
from codehone.train.model import build_scratch
from codehone.train.tokenizer import train_tokenizer, training_texts


def codehone_step(model, pad_id, bf16, mask_path=False):
    """A step function: one `codehone train` optimizer step on a batch; returns its real tokens."""
    opt = loop.make_optimizer(model, 1e-3, 0.1)
    sch = loop.make_scheduler(opt, 0, 1000, 0.1)

    def step(mb):
        if mask_path:  # without the example lengths, token_losses takes the block-mask path
            mb = {k: v for k, v in mb.items() if k != "doc_lens"}
        loop.train_step(model, opt, sch, [mb], bf16, 1.0)
        return int(mb["row_lens"].sum())
    return step


def plain_step(model, pad_id, bf16):
    """A step function: the plain loop (HF labels loss, one causal mask over each packed row)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(mb):
        labels = torch.roll(mb["targets"], 1, dims=1)  # HF shifts labels itself
        with loop.autocast(torch.device("cpu"), bf16):
            out = model(input_ids=mb["input_ids"], labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return int(mb["row_lens"].sum())
    return step


def _hf_rows(items):
    """Unpacked examples with completion-only labels in HF's unshifted convention."""
    return [{"input_ids": x, "labels": [-100] + y[:-1]} for x, y in items]


class _StepTimer:
    """A TrainerCallback that times each step after the warmup ones and then calls `between(seconds, tokens)`.

    `between` runs outside the timed window (after on_step_end), which is where the
    loop methods take their interleaved step.
    """

    def __init__(self, warmup: int, counted: list[int], between):
        from transformers import TrainerCallback

        class CB(TrainerCallback):
            t0 = 0.0

            def on_step_begin(self, a, state, control, **kw):
                self.t0 = time.perf_counter()

            def on_step_end(self, a, state, control, **kw):
                dt = time.perf_counter() - self.t0
                if state.global_step > warmup:
                    between(dt, counted[-1])
        self.cb = CB()


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


def bench_trainer(model, items, args, pad_id, bf16, avg_per_row, between):
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

    counted = _count_tokens(model, pad_id)
    timer = _StepTimer(args.warmup, counted, between)
    with tempfile.TemporaryDirectory() as td:
        ta = TrainingArguments(output_dir=td, per_device_train_batch_size=bs, max_steps=args.warmup + args.steps,
                               learning_rate=1e-3, bf16=bf16, use_cpu=True, report_to=[], save_strategy="no",
                               logging_strategy="no", dataloader_num_workers=0, remove_unused_columns=False,
                               disable_tqdm=True, seed=0)
        Trainer(model=model, args=ta, train_dataset=ds, data_collator=collate, callbacks=[timer.cb]).train()


def bench_sft(model, tok, examples, args, bf16, avg_per_row, between):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    bs = max(1, round(args.batch_rows * avg_per_row))
    ds = Dataset.from_list([{"messages": ex["messages"]} for ex in examples])
    counted = _count_tokens(model, tok.pad_token_id)
    timer = _StepTimer(args.warmup, counted, between)
    with tempfile.TemporaryDirectory() as td:
        sc = SFTConfig(output_dir=td, per_device_train_batch_size=bs, max_steps=args.warmup + args.steps,
                       learning_rate=1e-3, bf16=bf16, use_cpu=True, report_to=[], save_strategy="no",
                       logging_strategy="no", disable_tqdm=True, max_length=args.seq_len, seed=0)
        SFTTrainer(model=model, args=sc, train_dataset=ds, processing_class=tok, callbacks=[timer.cb]).train()


AUTO_BF16 = loop.use_bf16("auto", torch.device("cpu"))
LOOP_METHODS = {  # name: (model, pad id, seq_len) -> step function
    "codehone": lambda m, pad, n: codehone_step(m, pad, AUTO_BF16),
    "codehone-mask": lambda m, pad, n: codehone_step(m, pad, AUTO_BF16, mask_path=True),
    "codehone-bf16": lambda m, pad, n: codehone_step(m, pad, True),
    "codehone-compile": lambda m, pad, n: codehone_step(loop.compile_model(m, n), pad, AUTO_BF16),
    "plain-fp32": lambda m, pad, n: plain_step(m, pad, False),
    "plain-bf16": lambda m, pad, n: plain_step(m, pad, True),
}


def run_block(name, model, tok, train, enc, args, avg_per_row, between) -> str | None:
    """Run a Trainer / SFTTrainer block (it calls `between` after each timed step); a string if it could not run."""
    bf16 = args.precision == "bf16"
    try:
        if name == "trainer":
            bench_trainer(model, enc.items, args, tok.pad_token_id, bf16, avg_per_row, between)
            return None
        try:
            import trl  # noqa: F401
        except ImportError:
            return "trl not installed"
        bench_sft(model, tok, train, args, bf16, avg_per_row, between)
        return None
    except Exception as e:  # a baseline that breaks is reported, not fatal
        return f"failed: {type(e).__name__}: {str(e).splitlines()[0][:100]}"


def spread(xs: list[float]) -> str:
    return f"{min(xs):,.0f}..{max(xs):,.0f}" if xs else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch-rows", type=int, default=4, help="packed rows per step")
    ap.add_argument("--rounds", type=int, default=12, help="interleaved timed steps of every loop method (at least)")
    ap.add_argument("--steps", type=int, default=6, help="timed steps of each Trainer / SFTTrainer run")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (loop rounds, and per Trainer run)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="for trainer and sft")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--only", default="codehone,codehone-mask,plain-fp32,plain-bf16,trainer,sft")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = args.only.split(",")
    unknown = [n for n in names if n not in LOOP_METHODS and n not in ("trainer", "sft")]
    if unknown:
        ap.error(f"unknown methods {unknown}")
    train = data.load_chat(data.split_file(args.dataset, "train"))
    cfg = TrainConfig(data=str(args.dataset), out="/tmp/unused", model={"size": args.size}, seq_len=args.seq_len)
    tok = train_tokenizer(training_texts(train), 2048 if args.size == "tiny" else 8192, 2)
    enc = data.encode(tok, train, args.seq_len)
    batches = data.Batches(enc.items, args.seq_len, args.batch_rows, tok.pad_token_id, seed=0, packing=True)
    avg_per_row = len(enc.items) / batches.rows_per_epoch()
    n_params = sum(p.numel() for p in build_scratch(cfg, tok).parameters())
    print(f"data: {args.dataset} ({len(enc.items)} examples, {enc.dropped_long} dropped > {args.seq_len} tokens, "
          f"{avg_per_row:.2f} examples per packed row); model: {args.size} {n_params / 1e6:.2f}M params; "
          f">= {args.rounds} interleaved rounds after {args.warmup}; trainer/sft {args.precision}, {args.steps} "
          f"timed steps each; threads {torch.get_num_threads()}", flush=True)

    loops = {}
    for name in names:
        if name in LOOP_METHODS:
            model = build_scratch(cfg, tok)  # same seed: same initial weights for every method
            model.train()
            loops[name] = LOOP_METHODS[name](model, tok.pad_token_id, args.seq_len)
    blocks = [n for n in names if n not in LOOP_METHODS]
    tps: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names if n != "codehone"}
    failed: dict[str, str] = {}
    order = list(loops)
    done = 0

    def loop_round(timed: bool, partner: str | None = None, partner_tps: float | None = None) -> None:
        """One step of every loop method on the same batch, in a rotating order (+ the block step it pairs with)."""
        nonlocal done
        mb = batches.next()
        times, shift = {}, done % max(len(order), 1)
        for name in order[shift:] + order[:shift]:
            t0 = time.perf_counter()
            n = loops[name](mb)
            times[name] = time.perf_counter() - t0
            if timed:
                tps[name].append(n / times[name])
        if not timed:
            return
        done += 1
        if "codehone" in times:
            for name in times:
                if name != "codehone":
                    ratios[name].append(times[name] / times["codehone"])
            if partner:
                ratios[partner].append(tps["codehone"][-1] / partner_tps)
        line = ", ".join(f"{k} {tps[k][-1]:,.0f}" for k in times)
        print(f"  round {done}: {line}" + (f"; {partner} {partner_tps:,.0f}" if partner else ""), flush=True)

    for _ in range(args.warmup):
        loop_round(False)
    for name in blocks:
        def between(seconds, tokens, name=name):
            tps[name].append(tokens / seconds)
            loop_round(True, name, tokens / seconds)
        model = build_scratch(cfg, tok)
        model.train()
        err = run_block(name, model, tok, train, enc, args, avg_per_row, between)
        if err:
            failed[name] = err
            print(f"  {name}: {err}", flush=True)
    while done < args.rounds:
        loop_round(True)

    med = {n: statistics.median(v) for n, v in tps.items() if v}
    print(f"\nmedian over {done} rounds; every Trainer / SFTTrainer step is paired with one round of the loops. "
          "codehone / method = the median of per-round ratios (same batch for the loops, adjacent steps for "
          "trainer/sft)")
    print("| method | tokens/s (median) | min..max | codehone / method (median) | min..max |\n"
          "|---|---:|---:|---:|---:|")
    for name in names:
        if name in failed:
            print(f"| {name} | {failed[name]} | - | - | - |")
            continue
        rs = ratios.get(name) or []
        ratio = "1.00x" if name == "codehone" else (f"{statistics.median(rs):.2f}x" if rs else "-")
        rspread = f"{min(rs):.2f}..{max(rs):.2f}" if rs else "-"
        print(f"| {name} | {med.get(name, 0):,.0f} | {spread(tps[name])} | {ratio} | {rspread} |")
    print(f"command: python benchmarks/train_throughput.py {args.dataset} --size {args.size} --rounds {args.rounds} "
          f"--steps {args.steps} --warmup {args.warmup} --precision {args.precision} --threads {args.threads} "
          f"--only {args.only}")


if __name__ == "__main__":
    main()
