"""Runs llama.cpp's own convert_hf_to_gguf.py, teaching it our tokenizer's pre-tokenizer.

Why a shim and not a patched copy: the converter names a BPE pre-tokenizer by
hashing the token ids of a fixed text (`get_vocab_base_pre`), so any vocabulary
trained here has a hash it has never seen and it raises. Its documented remedy,
convert_hf_to_gguf_update.py, downloads reference tokenizers from the Hub. The
hash identifies a *vocabulary*, but what llama.cpp needs is the *splitting
rule*: our tokenizers are byte-level BPE whose pre-tokenizer is exactly
`ByteLevel(use_regex=True)` with no normalizer, i.e. the GPT-2 regex, which
llama.cpp implements as pre-tokenizer "gpt-2". So when the hash is unknown and
tokenizer.json says exactly that, this shim answers "gpt-2"; anything else
still raises as before. The export's parity check then compares llama.cpp's
tokenization with the HF tokenizer on the fixed prompts.

Usage (a subprocess, so the converter's imports stay out of our process):
    python convert_shim.py LLAMA_CPP_DIR [converter args...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def gpt2_byte_level(model_dir: Path) -> bool:
    """True when tokenizer.json splits text exactly as the GPT-2 regex does."""
    try:
        tj = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    pre = tj.get("pre_tokenizer") or {}
    return (tj.get("normalizer") is None and (tj.get("model") or {}).get("type") == "BPE"
            and pre.get("type") == "ByteLevel" and pre.get("use_regex", True)
            and not pre.get("add_prefix_space", False))


def main() -> None:
    llama_dir = Path(sys.argv[1]).resolve()
    sys.path.insert(0, str(llama_dir))
    sys.path.insert(1, str(llama_dir / "gguf-py"))
    sys.argv = [str(llama_dir / "convert_hf_to_gguf.py"), *sys.argv[2:]]
    from conversion.base import TextModel

    original = TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            if gpt2_byte_level(Path(self.dir_model)):
                return "gpt-2"
            raise

    TextModel.get_vocab_base_pre = get_vocab_base_pre
    import runpy

    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
