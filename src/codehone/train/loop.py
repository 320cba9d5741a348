"""The training step, eval loss and sample generation: a plain torch loop.

Why a plain loop: on a laptop CPU it is about 1.7x faster than TRL's
SFTTrainer, and every line that touches the loss is here to read.

Why the loss is summed then divided by the step's token count: a mean per
micro-batch weights a short batch's tokens more than a long batch's, so
gradient accumulation would not equal the big batch it stands for. Summing the
per-token losses of all micro-batches of a step and dividing by the total
number of completion tokens makes batch 4 == batch 1 x accumulation 4.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from . import packed
from .data import IGNORE


def use_bf16(precision: str, device: torch.device) -> bool:
    """auto = bf16 on a GPU that has it, fp32 on a CPU; `bf16` forces autocast on a CPU too.

    Why not bf16 on a CPU by default: measured on this project's 2-core AVX512-BF16 machines
    (benchmarks/train_throughput.py), bf16 autocast made the tiny model 0.61x and the small
    model 0.70x as fast as fp32: at these widths the casts cost more than the matmuls save.
    """
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


# Architectures whose head is exactly `lm_head(norm(decoder(x)))`, with no logit scaling or capping.
_PLAIN_HEAD = {"llama", "mistral", "qwen2", "qwen3"}


def _decoder_and_head(model):
    """(config, decoder, head) when logits may be computed for the target positions only, else None.

    Why: most positions of a chat example are prompt, with no target; projecting
    them onto the vocabulary is wasted work (the head is ~10% of a tiny model's
    step). A torch.compile'd model keeps the full path so the compiled graph runs.
    """
    if type(model).__name__ == "OptimizedModule":
        return None
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(getattr(base, "config", None), "model_type", None) not in _PLAIN_HEAD:
        return None
    return base.config, base.get_decoder(), base.get_output_embeddings()


def _packed_losses(decoder, head, batch: dict, dev, bf16: bool) -> torch.Tensor:
    """Per-position cross-entropy (B, T) through packed attention: padding dropped, one causal call per example.

    The gathers are computed on the host, where the batch is built, so a GPU never
    waits on a data-dependent shape.
    """
    tgt = batch["targets"]
    real = torch.arange(tgt.shape[1])[None] < batch["row_lens"][:, None]
    t = tgt[real]
    sel = (t != IGNORE).nonzero().squeeze(1)
    kw = {packed.DOC_LENS: batch["doc_lens"].tolist()}
    ids, pos = batch["input_ids"][real][None].to(dev), batch["position_ids"][real][None].to(dev)
    with packed.packed_attention(decoder.config), autocast(dev, bf16):
        hidden = decoder(input_ids=ids, position_ids=pos, use_cache=False, **kw).last_hidden_state[0]
        logits = head(hidden.index_select(0, sel.to(dev)))
    ce_sel = F.cross_entropy(logits.float(), t[sel].to(dev), reduction="none")
    return torch.zeros(tgt.shape, dtype=ce_sel.dtype, device=dev).masked_scatter((tgt != IGNORE).to(dev), ce_sel)


def compile_model(model, seq_len: int):
    """`compile: true`: what torch.compile can speed up without losing packed attention.

    With packed attention, the number and lengths of the examples change every
    step, so one graph over the whole model would recompile each time. Instead
    the per-token parts of every layer (MLP and norms: elementwise chains that
    inductor fuses) are compiled in place with dynamic shapes, and attention
    stays eager. Measured on the tiny model (1 thread, loaded 2-core CPU): ~1.08x
    a step once compiled, after ~80 s of compiling, so it pays only on long runs.
    In place (`Module.compile`), so parameter names, checkpoints and saving are
    unchanged. Other models are compiled whole.
    """
    split = _decoder_and_head(model)
    if split is None or not packed.supports(split[0], seq_len) or not hasattr(split[1], "layers"):
        return torch.compile(model)
    for layer in split[1].layers:
        for name in ("mlp", "input_layernorm", "post_attention_layernorm"):
            part = getattr(layer, name, None)
            if part is not None:
                part.compile(dynamic=True)
    return model


def token_losses(model, batch: dict[str, torch.Tensor], bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position cross-entropy (0 where there is no target) and the target mask, in fp32.

    Three paths, one result: packed attention without padding (plain-head Llama-like
    models, batches from `data.collate`), target-only logits through the block mask
    (plain-head models otherwise), and the model's full forward (anything else).
    """
    dev = next(model.parameters()).device
    tgt = batch["targets"].to(dev)
    has = tgt != IGNORE
    split = _decoder_and_head(model)
    if split is not None and "doc_lens" in batch and packed.supports(split[0], tgt.shape[1]):
        return _packed_losses(split[1], split[2], batch, dev, bf16), has
    mask = batch.get("attention_mask")
    kw = dict(input_ids=batch["input_ids"].to(dev), attention_mask=None if mask is None else mask.to(dev),
              position_ids=batch["position_ids"].to(dev), use_cache=False)
    if split is not None:
        _, decoder, head = split
        with autocast(dev, bf16):
            hidden = decoder(**kw).last_hidden_state
            logits = head(hidden[has])
        ce_sel = F.cross_entropy(logits.float(), tgt[has], reduction="none")
        ce = torch.zeros(tgt.shape, dtype=ce_sel.dtype, device=dev).masked_scatter(has, ce_sel)
        return ce, has
    with autocast(dev, bf16):
        out = model(**kw)
    logits = out.logits.float()
    ce = F.cross_entropy(logits.view(-1, logits.size(-1)), tgt.view(-1), ignore_index=IGNORE, reduction="none")
    return ce.view(tgt.shape), has


def train_step(model, optimizer, scheduler, micro_batches: list[dict], bf16: bool,
               grad_clip: float | None, n_tgt: int | None = None, world=None) -> dict[str, float]:
    """One optimizer step over `micro_batches`; returns the token-weighted loss and counts.

    Under data parallelism (`world`, see distributed.py) `micro_batches` are this process's
    shares and `n_tgt` the target tokens of the whole global step, so the summed gradients
    and loss are those of one process training on every share.
    """
    from . import distributed

    world = world or distributed.World()
    if n_tgt is None:
        n_tgt = sum(int((b["targets"] != IGNORE).sum()) for b in micro_batches)
    n_tgt = max(n_tgt, 1)
    dev = next(model.parameters()).device
    total = torch.zeros((), device=dev)
    for b in micro_batches:
        ce, _ = token_losses(model, b, bf16)
        loss = ce.sum() / n_tgt
        loss.backward()
        total = total + loss.detach()
    params = [p for p in model.parameters() if p.requires_grad]
    distributed.sum_grads(params, world)
    total = distributed.sum_value(total, world)
    gnorm = None
    if grad_clip:
        gnorm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    # one host read per step, after the optimizer has been queued (a GPU keeps working meanwhile)
    return {"loss": float(total), "target_tokens": n_tgt, "grad_norm": float(gnorm) if gnorm is not None else float("nan")}


@torch.no_grad()
def eval_loss(model, batches, bf16: bool) -> float:
    """Mean cross-entropy per completion token over all `batches`."""
    was = model.training
    model.eval()
    s, n = 0.0, 0
    for b in batches:
        ce, m = token_losses(model, b, bf16)
        s += float(ce.sum())
        n += int(m.sum())
    model.train(was)
    return s / max(n, 1)


def make_optimizer(model, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; no decay on norms and biases (1-D parameters).

    Fused where every parameter is a float on a CPU or CUDA device: measured on the
    tiny model (4.5M params, 1 CPU thread) 21-30 ms a step against 68-90 ms for the
    default per-parameter loop and 98-122 ms for foreach.
    """
    ps = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in ps if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in ps if p.dim() < 2], "weight_decay": 0.0}]
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in ps) or None
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=fused)


def make_scheduler(optimizer, warmup: int, total: int, min_ratio: float):
    """Linear warmup, then cosine decay to lr * min_ratio at `total` steps."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        t = min(1.0, (step - warmup) / max(total - warmup, 1))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, f)


@torch.no_grad()
def generate(model, tok, messages: list[dict], max_new_tokens: int, bf16: bool = False) -> tuple[str, bool]:
    """Greedy completion of a chat prompt through the saved template; (text, stopped at EOS)."""
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    with autocast(dev, bf16):
        out = model.generate(input_ids=ids.to(dev), attention_mask=torch.ones_like(ids).to(dev),
                             max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.train(was)
    new = out[0, ids.shape[1]:].tolist()
    stopped = tok.eos_token_id in new
    if stopped:
        new = new[: new.index(tok.eos_token_id)]
    return tok.decode(new, skip_special_tokens=True), stopped
