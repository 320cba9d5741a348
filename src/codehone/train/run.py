"""`codehone train`: a recipe's `train:` section → a run folder with checkpoints, logs and a HF model.

Run folder layout (OUT):
  tokenizer/          scratch: the BPE + chat template, written first so a resume reuses it
  checkpoints/step-N  model (trainable weights), optimizer, scheduler, RNG, data position
  metrics.jsonl       one row per logged step / eval; tb/ TensorBoard events; loss.png
  samples.jsonl       prompt, output, whether it stopped at EOS, at each eval
  model/              the final HF folder (scratch, full, lora+merge); adapter/ for lora
  summary.json        sizes, counts, tokens/s, final losses

Why phases are `load_from` rather than a separate verb: phase 2 (sharpening on
strictly filtered data at a lower learning rate) is the same training with a
different starting point, dataset and lr, so it is just another recipe.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..config import TrainConfig
from . import checkpoint, data, distributed, loop, qlora
from .logs import MetricsLog, plot_losses
from .model import ModelError, add_lora, build_scratch, default_vocab, load_pretrained, param_count
from .tokenizer import ensure_chat_ready, train_tokenizer, training_texts


class TrainError(ValueError):
    """A run that cannot start, as one line."""


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _phase_source(load_from: str) -> tuple[Path | None, Path | None]:
    """(full model folder, adapter folder) of a previous run folder or of a model/adapter folder itself."""
    p = Path(load_from)
    if (p / "adapter_config.json").is_file():
        return None, p
    if (p / "config.json").is_file():
        return p, None
    if (p / "adapter" / "adapter_config.json").is_file() and not (p / "model" / "config.json").is_file():
        return None, p / "adapter"
    if (p / "model" / "config.json").is_file():
        return p / "model", None
    raise TrainError(f"train.load_from: {p} holds no model/ or adapter/ folder from a previous run")


def _hf_dir(path: str | Path, key: str) -> Path:
    p = Path(path)
    if not (p / "config.json").is_file():
        raise TrainError(f"train.{key}: {p} is not a Hugging Face model folder (no config.json)")
    return p


def _load_tok(path: Path):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise TrainError(f"{path}: cannot load its tokenizer ({str(e).splitlines()[0]})") from None
    ensure_chat_ready(tok)
    return tok


def setup(cfg: TrainConfig, out: Path, log: Callable[[str], None]):
    """Tokenizer and model for the mode; returns (tok, model)."""
    from transformers import AutoTokenizer

    if cfg.mode == "qlora":
        qlora.check_ready(_device())  # before any loading: one line on a CPU or without bitsandbytes
    full_src, adapter_src = _phase_source(cfg.load_from) if cfg.load_from else (None, None)
    if cfg.mode == "scratch" and full_src is None:
        tdir = out / "tokenizer"
        if (tdir / "tokenizer.json").is_file():
            tok = AutoTokenizer.from_pretrained(tdir)
        else:
            train = data.load_chat(data.split_file(cfg.data, "train"), cfg.max_examples)
            t0 = time.monotonic()
            tok = train_tokenizer(training_texts(train), default_vocab(cfg), cfg.tokenizer.min_frequency)
            tok.save_pretrained(tdir)
            log(f"tokenizer: byte-level BPE, {len(tok)} tokens, trained on {len(train)} train examples "
                f"in {time.monotonic() - t0:.1f}s")
        return tok, build_scratch(cfg, tok)
    if cfg.mode == "scratch" or cfg.mode == "full":
        if adapter_src is not None:
            raise TrainError(f"train.load_from: {adapter_src} is a LoRA adapter; mode {cfg.mode} needs a full "
                             "model (train the previous phase with merge: true)")
        src = full_src or _hf_dir(cfg.base_model or "", "base_model")
        return _load_tok(src), load_pretrained(src)
    # lora, qlora: the same adapter on a base loaded in full precision or in 4-bit NF4
    def load(p):
        return qlora.load_4bit(p, cfg.gradient_checkpointing) if cfg.mode == "qlora" else load_pretrained(p)

    if full_src is not None:
        return _load_tok(full_src), add_lora(load(full_src), cfg)
    if not cfg.base_model:
        raise TrainError(f"train.base_model: {cfg.mode} needs the base model folder")
    base_dir = _hf_dir(cfg.base_model, "base_model")
    tok_src = adapter_src if adapter_src and (adapter_src / "tokenizer_config.json").is_file() else base_dir
    tok = _load_tok(tok_src)
    base = load(base_dir)
    if adapter_src is not None:
        from peft import PeftModel

        return tok, PeftModel.from_pretrained(base, adapter_src, is_trainable=True)
    return tok, add_lora(base, cfg)


def save_final(model, tok, cfg: TrainConfig, out: Path, merge: bool) -> list[Path]:
    """The HF folders: model/ (loadable by AutoModelForCausalLM) and, for LoRA, adapter/."""
    from transformers import GenerationConfig

    written = []
    gen = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                           pad_token_id=tok.pad_token_id, do_sample=False, max_new_tokens=512)
    is_peft = hasattr(model, "peft_config")
    if is_peft:
        model.save_pretrained(out / "adapter")
        tok.save_pretrained(out / "adapter")
        written.append(out / "adapter")
        if not merge:
            return written
        if cfg.mode == "qlora":  # merge into the bf16 base, not into 4-bit weights
            full_src = _phase_source(cfg.load_from)[0] if cfg.load_from else None
            model = qlora.merged_from_bf16_base(full_src or cfg.base_model, out / "adapter")
        else:
            model = model.merge_and_unload()
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    model.config.use_cache = True
    model.generation_config = gen
    model.save_pretrained(out / "model")
    tok.save_pretrained(out / "model")
    written.append(out / "model")
    return written


def run_train(cfg: TrainConfig, resume: bool = False, log: Callable[[str], None] = print,
              progress_factory: Callable | None = None, merge: bool | None = None) -> dict:
    """Train per `cfg`; returns the summary dict (also written to OUT/summary.json).

    Under `torchrun`/`accelerate launch` every process runs this; they share each global batch
    (distributed.py) and only rank 0 logs, evaluates, samples and writes.
    """
    n = distributed.launched_size()
    if n > 1 and cfg.batch_size < n:
        raise TrainError(f"train.batch_size {cfg.batch_size} is smaller than the {n} processes: "
                         "each process needs at least one row of every micro-batch")
    try:
        world = distributed.init()
    except (ValueError, RuntimeError) as e:
        raise TrainError(f"torch.distributed: {str(e).splitlines()[0]}") from None
    if not world.main:
        log, progress_factory = (lambda m: None), None
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        log("note: FSDP is not implemented; every process holds the whole model (data parallel)")
    summary = _run(cfg, world, resume, log, progress_factory, merge)  # on an error the launcher stops the rest
    distributed.finish(world)
    return summary


def _run(cfg: TrainConfig, world: distributed.World, resume: bool, log: Callable[[str], None],
         progress_factory: Callable | None, merge: bool | None) -> dict:
    out = Path(cfg.out)
    val_path = None
    try:
        train_path = data.split_file(cfg.data, "train")
        try:
            val_path = data.split_file(cfg.data, "val")
        except data.DataError:
            log("no val split: eval loss and early stopping are off")
        if not resume and (out / "checkpoints").is_dir() and checkpoint.latest(out / "checkpoints"):
            raise TrainError(f"{out} already holds checkpoints: pass --resume to continue, or choose another out")
        out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        with distributed.rank0_first(world):  # rank 0 trains and saves the tokenizer, the others load it
            tok, model = setup(cfg, out, log)
    except (data.DataError, ModelError, qlora.QLoraError) as e:
        raise TrainError(str(e)) from None
    dev = distributed.device(world)
    if cfg.mode != "qlora":  # a 4-bit model is placed on the GPU as it loads and refuses .to()
        model.to(dev)
    distributed.broadcast_params(model, world)
    bf16 = loop.use_bf16(cfg.precision, dev)
    if cfg.gradient_checkpointing and cfg.mode != "qlora":  # qlora: set by prepare_model_for_kbit_training
        model.gradient_checkpointing_enable()
    model.train()
    n_params, n_train = param_count(model), param_count(model, trainable_only=True)

    train_ex = data.load_chat(train_path, cfg.max_examples)
    enc = data.encode(tok, train_ex, cfg.seq_len)
    if enc.dropped_long:
        log(f"dropped {enc.dropped_long} of {len(train_ex)} train examples longer than seq_len={cfg.seq_len} "
            "tokens (never truncated)")
    batches = data.Batches(enc.items, cfg.seq_len, cfg.batch_size, tok.pad_token_id, cfg.seed, cfg.packing)
    val_items, val_ex = [], []
    if val_path:
        val_ex = data.load_chat(val_path)
        venc = data.encode(tok, val_ex, cfg.seq_len)
        val_items = venc.items
        if venc.dropped_long:
            log(f"dropped {venc.dropped_long} of {len(val_ex)} val examples longer than seq_len")
    val_rows = data.pack(val_items, cfg.seq_len, seed=0, packing=cfg.packing) if val_items else []
    if cfg.eval_max_batches:
        val_rows = val_rows[: cfg.eval_max_batches * cfg.batch_size]

    def val_batches():
        for i in range(0, len(val_rows), cfg.batch_size):
            yield data.collate(val_items, val_rows[i:i + cfg.batch_size], tok.pad_token_id,
                               cfg.seq_len if cfg.packing else None)

    optimizer = loop.make_optimizer(model, cfg.lr, cfg.weight_decay)
    scheduler = loop.make_scheduler(optimizer, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)
    step, best, bad_evals = 0, float("inf"), 0
    ck_root = out / "checkpoints"
    if resume:
        last = checkpoint.latest(ck_root)
        if last is None:
            log(f"--resume: no checkpoint in {ck_root}; starting from step 0")
        else:
            st = checkpoint.load(last, model, optimizer, scheduler)
            step, best, bad_evals = st["step"], st.get("best", best), st.get("bad_evals", 0)
            batches.load_state(st["data"])
            log(f"resumed from {last.name} (step {step})")
    fmodel = loop.compile_model(model, cfg.seq_len) if cfg.compile else model
    metrics = MetricsLog(out, resume_step=step if resume else None, enabled=world.main)
    samples_f = (out / "samples.jsonl").open("a", encoding="utf-8") if world.main else None
    info = {"processes": world.size, "mode": cfg.mode, "params": n_params, "trainable_params": n_train, "bf16": bf16,
            "train_examples": len(enc.items), "dropped_long": enc.dropped_long,
            "rows_per_epoch": batches.rows_per_epoch(), "vocab": len(tok)}
    if cfg.samples and val_ex:
        log("note: sample generations are logged unjudged (verdict: null); judging them is `codehone eval`'s job")
    log(f"{cfg.mode}: {n_params / 1e6:.2f}M params ({n_train / 1e6:.2f}M trainable), bf16={bf16}, "
        f"{len(enc.items)} train examples in {batches.rows_per_epoch()} rows of {cfg.seq_len}")

    def do_eval(step: int) -> float | None:
        nonlocal best, bad_evals
        if not val_rows or not world.main:
            return None
        el = loop.eval_loss(fmodel, val_batches(), bf16)
        row = {"step": step, "eval_loss": el, "eval_ppl": float(torch.tensor(el).exp())}
        metrics.log(row)
        for ex in val_ex[: cfg.samples]:
            text, stopped = loop.generate(model, tok, ex["messages"][:-1], cfg.sample_max_new_tokens, bf16)
            s = {"step": step, "id": ex.get("id"), "prompt": ex["messages"][-2]["content"][:400],
                 "output": text, "stopped_at_eos": stopped, "reference": ex["messages"][-1]["content"][:400],
                 "verdict": None}
            samples_f.write(json.dumps(s, ensure_ascii=False) + "\n")
            samples_f.flush()
            metrics.text("sample", f"PROMPT:\n{s['prompt']}\n\nOUTPUT:\n{text}", step)
            log(f"sample @ {step} ({'stopped at EOS' if stopped else 'no EOS'}): {text[:160]!r}")
        plot_losses(metrics.path, out / "loss.png")
        if el < best - 1e-4:
            best, bad_evals = el, 0
        else:
            bad_evals += 1
        return el

    t_start, tok_count, stopped_early = time.monotonic(), 0, False
    prog = progress_factory(cfg.max_steps, step) if progress_factory else None
    last_loss, last_eval = float("nan"), None
    try:
        while step < cfg.max_steps:
            rows = [batches.next_rows() for _ in range(cfg.grad_accum)]  # the global step, same on every rank
            counts = [batches.tokens(r) for r in rows]
            micro = [batches.collate(mine) for r in rows if (mine := distributed.shard(r, world))]
            r = loop.train_step(fmodel, optimizer, scheduler, micro, bf16, cfg.grad_clip,
                                n_tgt=sum(t for _, t in counts), world=world)
            step += 1
            tok_count += sum(n for n, _ in counts)  # real tokens of the global step (pad may equal EOS)
            tps = tok_count / max(time.monotonic() - t_start, 1e-9)
            last_loss = r["loss"]
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                metrics.log({"step": step, "loss": r["loss"], "lr": scheduler.get_last_lr()[0],
                             "grad_norm": r["grad_norm"], "tokens_per_s": tps, "epoch": batches.epoch})
            if prog:
                prog(step, last_loss, tps, last_eval)
            early = False
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                last_eval = do_eval(step)
                if prog:
                    prog(step, last_loss, tps, last_eval)
                early = bool(cfg.early_stopping_patience and last_eval is not None
                             and bad_evals >= cfg.early_stopping_patience)
            time_up = bool(cfg.max_minutes and step < cfg.max_steps
                           and time.monotonic() - t_start > cfg.max_minutes * 60)
            early, time_up = distributed.any_true([early, time_up], world)  # every rank stops at one step
            if early:
                log(f"early stop at step {step}: no better eval loss in {bad_evals} evals")
                stopped_early = True
            if world.main and (step % cfg.save_every == 0 or step == cfg.max_steps or stopped_early):
                checkpoint.save(ck_root, step, model, optimizer, scheduler, batches.state(),
                                {"best": best, "bad_evals": bad_evals}, cfg.keep_checkpoints)
            if stopped_early:
                break
            if time_up:
                log(f"time budget: stopping at step {step} of {cfg.max_steps} (train.max_minutes={cfg.max_minutes})")
                if step % cfg.eval_every:
                    last_eval = do_eval(step)
                if world.main and step % cfg.save_every:
                    checkpoint.save(ck_root, step, model, optimizer, scheduler, batches.state(),
                                    {"best": best, "bad_evals": bad_evals}, cfg.keep_checkpoints)
                stopped_early = True
                break
    finally:
        metrics.close()
        if samples_f:
            samples_f.close()
    if not world.main:
        return {**info, "steps": step, "final_loss": last_loss, "rank": world.rank}
    if (out / "metrics.jsonl").is_file():
        plot_losses(out / "metrics.jsonl", out / "loss.png")
    written = save_final(model, tok, cfg, out, cfg.merge if merge is None else merge)
    summary = {**info, "steps": step, "final_loss": last_loss, "final_eval_loss": last_eval,
               "best_eval_loss": best if best < float("inf") else None, "tokens_per_s": tok_count / max(
                   time.monotonic() - t_start, 1e-9), "early_stopped": stopped_early,
               "outputs": [str(p) for p in written]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
