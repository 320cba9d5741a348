"""What MODEL names: an HF folder, a PEFT adapter folder, or a `codehone train` run folder.

Why resolve in one place: every format starts from the same fp32 torch model
(an adapter merged into its base first), the same tokenizer (which carries the
chat template) and the same generation config (which carries EOS), so no
format can lose them. The train run folder, when known, feeds the model card.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


class ExportError(ValueError):
    """A model or option that cannot be exported, as one line."""


@dataclass
class Source:
    path: Path                 # what the user named
    model_dir: Path            # the HF folder holding the (base) weights
    adapter_dir: Path | None   # a LoRA adapter to merge into model_dir
    train_dir: Path | None     # the `codehone train` run folder, if any

    @property
    def tokenizer_dir(self) -> Path:
        a = self.adapter_dir
        return a if a is not None and (a / "tokenizer_config.json").is_file() else self.model_dir


def _adapter_base(adapter: Path) -> Path:
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    base = Path(cfg.get("base_model_name_or_path") or "")
    if not (base / "config.json").is_file():
        raise ExportError(f"{adapter}: its base model {str(base) or '(none named)'} is not a local HF folder")
    return base


def resolve(path: str | Path) -> Source:
    p = Path(path)
    if not p.exists():
        raise ExportError(f"{p}: no such folder")
    train_dir = None
    if (p / "model" / "config.json").is_file():
        train_dir, p = p, p / "model"
    elif (p / "adapter" / "adapter_config.json").is_file():
        train_dir, p = p, p / "adapter"
    elif (p.parent / "summary.json").is_file():
        train_dir = p.parent
    if (p / "adapter_config.json").is_file():
        return Source(Path(path), _adapter_base(p), p, train_dir)
    if (p / "config.json").is_file():
        return Source(Path(path), p, None, train_dir)
    raise ExportError(f"{path}: not an HF model folder, a LoRA adapter folder or a `codehone train` run folder")


def load(src: Source):
    """(fp32 model in eval mode, merged if an adapter; tokenizer; GenerationConfig)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from ..errors import verify_model_files

    for d in (src.model_dir, src.adapter_dir, src.tokenizer_dir):
        bad = verify_model_files(d) if d is not None else None
        if bad:  # a truncated or corrupt file: one line now, not a loader traceback
            raise ExportError(bad)
    try:
        model = AutoModelForCausalLM.from_pretrained(src.model_dir, dtype=torch.float32)
        if src.adapter_dir is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, src.adapter_dir).merge_and_unload()
        tok = AutoTokenizer.from_pretrained(src.tokenizer_dir)
    except (OSError, ValueError, KeyError) as e:
        raise ExportError(f"{src.path}: cannot load ({str(e).splitlines()[0]})") from None
    if tok.eos_token_id is None:
        raise ExportError(f"{src.tokenizer_dir}: the tokenizer has no EOS token, so generation could never stop")
    try:
        gen = GenerationConfig.from_pretrained(src.model_dir)
    except OSError:
        gen = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                               pad_token_id=tok.pad_token_id, do_sample=False)
    if gen.eos_token_id is None:
        gen.eos_token_id = tok.eos_token_id
    model.config.use_cache = True
    return model.eval(), tok, gen


def save_companions(out: Path, model, tok, gen) -> None:
    """Tokenizer files (with chat_template.jinja), generation_config.json and config.json beside any format."""
    tok.save_pretrained(out)
    gen.save_pretrained(out)
    model.config.save_pretrained(out)
