"""QLoRA: a local Hugging Face model loaded in 4-bit NF4 through bitsandbytes, with LoRA on top.

Why the checks come first: bitsandbytes' 4-bit kernels need a CUDA GPU, and
discovering that halfway through loading a multi-GB checkpoint gives a long
traceback. `check_ready` answers in one line before anything is read.

Why NF4 with double quantisation and a bf16 compute dtype: these are the QLoRA
paper's settings (Dettmers et al. 2023): NF4 is the 4-bit type that fits
normally distributed weights, double quantisation saves ~0.4 bit a parameter on
the quantisation constants, and the matmuls run in bf16.

Why the merged model is rebuilt from a bf16 base: merging an adapter into 4-bit
weights would round the result back to 4 bits; the adapter is applied to the
base in bf16 instead, which is the model the adapter was trained against up to
the quantisation error.

Not run in this project's sessions so far: they had no GPU (see README).
"""

from __future__ import annotations

from pathlib import Path

import torch


class QLoraError(ValueError):
    """QLoRA cannot run here, as one line."""


def check_ready(device: torch.device) -> None:
    """Raise QLoraError unless a CUDA GPU and bitsandbytes are both there."""
    if device.type != "cuda":
        raise QLoraError("train.mode=qlora needs a CUDA GPU with bitsandbytes; use mode=lora on a CPU")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise QLoraError("train.mode=qlora needs bitsandbytes: pip install bitsandbytes "
                         "(or use mode=lora)") from None


def quant_config():
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                              bnb_4bit_use_double_quant=True)


def load_4bit(path: str | Path, gradient_checkpointing: bool):
    """The model in NF4 on GPU 0, prepared for k-bit training (frozen, norms in fp32, input grads on)."""
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    from .model import ModelError

    p = Path(path)
    if not (p / "config.json").is_file():
        raise ModelError(f"{p}: not a Hugging Face model folder (no config.json)")
    try:
        model = AutoModelForCausalLM.from_pretrained(p, quantization_config=quant_config(), dtype=torch.bfloat16,
                                                     device_map={"": torch.cuda.current_device()})
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"{p}: cannot load in 4-bit ({str(e).splitlines()[0]})") from None
    model.config.use_cache = False
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)


def merged_from_bf16_base(base_dir: str | Path, adapter_dir: Path):
    """The base loaded in bf16 with the trained adapter merged in (for `merge: true`)."""
    from peft import PeftModel

    from .model import load_pretrained

    base = load_pretrained(base_dir, dtype=torch.bfloat16)
    return PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
