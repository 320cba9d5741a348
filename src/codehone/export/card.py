"""The model card (OUT/README.md) every export writes.

Why: an exported file travels without its run folder. The card carries what a
user needs to trust or reject it: the base model and its size, the data and
recipe figures the training run recorded, the eval metrics `codehone eval`
appended to history.jsonl, the export's own parity figures, intended use and
limits. What a run did not record is said to be unrecorded, not guessed.
"""

from __future__ import annotations

import json
from pathlib import Path

from .source import Source


def _json(p: Path) -> dict | None:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _history(src: Source) -> list[dict]:
    rows = []
    for d in filter(None, [src.path, src.model_dir, src.adapter_dir, src.train_dir]):
        f = Path(d) / "history.jsonl"
        if f.is_file():
            for line in f.read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    continue
            break
    return rows


def _last_eval(train_dir: Path | None) -> dict | None:
    if train_dir is None or not (train_dir / "metrics.jsonl").is_file():
        return None
    last = None
    for line in (train_dir / "metrics.jsonl").read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if "eval_loss" in r:
            last = r
    return last


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write(out: Path, src: Source, model, tok, fmt: str, quant: str | None, info: dict, parity: dict) -> Path:
    cfg = model.config
    params = sum(p.numel() for p in model.parameters())
    summary = _json(src.train_dir / "summary.json") if src.train_dir else None
    ev = _last_eval(src.train_dir)
    hist = _history(src)
    name = f"{fmt}" + (f" ({quant})" if quant else "")
    lines = [
        f"# codehone model: {src.path.name} — {name} export", "",
        "## Model", "",
        f"- Architecture: {cfg.model_type} ({', '.join(getattr(cfg, 'architectures', None) or [])}), "
        f"{params:,} parameters, {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, "
        f"vocabulary {cfg.vocab_size}, context {getattr(cfg, 'max_position_embeddings', '?')}.",
        f"- Source: `{src.path}`" + (f" (LoRA adapter `{src.adapter_dir}` merged into `{src.model_dir}`)"
                                      if src.adapter_dir else ""),
        f"- Chat template: {'kept (chat_template.jinja; GGUF: tokenizer.chat_template)' if tok.chat_template else 'none in the source tokenizer'}; "
        f"EOS `{tok.eos_token}` (id {tok.eos_token_id}), which ends every assistant turn.",
        "",
        "## Data and recipe", "",
    ]
    if summary:
        keys = ["mode", "train_examples", "dropped_long", "steps", "vocab", "final_loss", "final_eval_loss",
                "best_eval_loss", "tokens_per_s", "early_stopped", "data", "recipe"]
        lines += [f"- {k}: {_fmt(summary[k])}" for k in keys if k in summary]
        if ev:
            lines.append(f"- last eval (step {ev.get('step')}): loss {_fmt(ev.get('eval_loss'))}, "
                         f"perplexity {_fmt(ev.get('eval_ppl'))}")
        data = summary.get("data")
        stats = _json(Path(data) / "stats.json") if data else None
        if stats:
            lines.append(f"- dataset stats: {json.dumps({k: v for k, v in stats.items() if k != 'config'})[:600]}")
    else:
        lines.append("- Not recorded: the source is not a `codehone train` run folder (no summary.json).")
    lines += ["", "## Evaluation", ""]
    if hist:
        for r in hist[-5:]:
            lines.append("- " + ", ".join(f"{k}: {_fmt(v)}" for k, v in r.items() if not isinstance(v, dict | list)))
    else:
        lines.append("- No history.jsonl beside the model: `codehone eval` has not been run on it.")
    lines += ["", "## This export", "", f"- Format: {name}. Files: {', '.join(info.get('files', []))}."]
    lines += [f"- {k}: {_fmt(v)}" for k, v in info.items() if k not in {"files", "q4_k_fallbacks", "converter"}]
    if info.get("q4_k_fallbacks"):
        lines.append(f"- q4_k_m: llama.cpp says {'; '.join(info['q4_k_fallbacks'])} (K-quants need rows that "
                     "are a multiple of 256; those tensors got its per-tensor fallback type).")
    tol = "reported only" if parity["tolerance"] is None else f"≤ {parity['tolerance']:g}"
    lines += [
        f"- Parity vs the source on {parity['prompts']} fixed prompts: max |logit diff| "
        f"{parity['max_abs_logit_diff']:.3g} ({tol}); greedy {parity['greedy_tokens']}-token continuations "
        f"{'identical' if parity['greedy_identical'] else 'NOT identical'} "
        f"(agreement {parity['greedy_agreement']:.1%}"
        + (f"; this lossy format must match the first {parity['strict_prefix']} tokens"
           if parity.get("strict_prefix") else "")
        + f"); {'PASS' if parity['passed'] else 'FAIL'}. "
        "Details: parity.json.",
        "", "## Intended use", "",
        "A small specialist code model for the task it was trained on (see the data above), run locally "
        "through `codehone serve`/`codehone chat` or any runtime for this format. Prompts must be rendered "
        "with the chat template above.",
        "", "## Limits", "",
        "- Trained on a narrow corpus; outside it, outputs are unreliable. Every output should go through "
        "the target's judge (`codehone check`) before use: the model's text is not verified by itself.",
        "- Quantized formats (int8, q8_0, q4_k_m) change the function slightly; the parity figures above "
        "say by how much on the fixed prompts, not on every input.",
        "",
    ]
    path = out / "README.md"
    path.write_text("\n".join(lines))
    return path
