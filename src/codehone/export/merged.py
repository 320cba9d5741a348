"""`--to merged`: the model as a plain Hugging Face folder, a LoRA adapter merged into its base.

Why: an adapter needs peft and its base at load time; a merged folder loads with
`AutoModelForCausalLM.from_pretrained` alone and is what every other tool takes.
The merge itself (peft's merge_and_unload) happens when the source is loaded.
"""

from __future__ import annotations

from pathlib import Path

from .source import save_companions


def write(model, tok, gen, out: Path) -> dict:
    model.generation_config = gen
    model.save_pretrained(out, safe_serialization=True)
    save_companions(out, model, tok, gen)
    return {"files": ["model.safetensors", "config.json", "generation_config.json", "tokenizer.json"]}
