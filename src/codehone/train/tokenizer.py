"""The scratch tokenizer and the chat template, saved together so every stage renders prompts alike.

Why byte-level BPE trained on the training split: code and compiler output are far from the
natural language that stock tokenizers were fitted on, and a byte-level
alphabet means no input is ever `<unk>`. Only the train split is seen, so
val/test text cannot leak into the vocabulary.

Why the template lives in the tokenizer: the seed Zig system trained on one
prompt layout and served another. Here `tokenizer.apply_chat_template` is the
single renderer for train, eval and serve, and it is written into
tokenizer_config.json by `save_pretrained`.

Every message ends with `<|end|>`, which is also the EOS token, so a completion
ends in EOS and generation stops where training taught it to.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD = "<|bos|>", "<|end|>", "<|pad|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
SPECIAL_TOKENS = [PAD, BOS, EOS, *ROLE_TOKENS]

# Jinja, as transformers renders it. `add_generation_prompt` opens the assistant turn;
# the assistant's text is followed by EOS exactly like every other message.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "{{ '<|' + m['role'] + '|>\n' + m['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def training_texts(examples: Iterable[dict]) -> Iterable[str]:
    """The message contents of chat examples: what the BPE merges are learned from."""
    for ex in examples:
        for m in ex["messages"]:
            yield m["content"]


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """A byte-level BPE over `texts` with the chat special tokens and template attached."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        additional_special_tokens=ROLE_TOKENS,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def ensure_chat_ready(tok) -> None:
    """A pretrained tokenizer without a chat template or pad token gets ours / its EOS (lora, full)."""
    if not getattr(tok, "chat_template", None):
        if tok.eos_token is None:
            raise ValueError("the base model's tokenizer has neither a chat template nor an EOS token")
        tok.chat_template = (
            "{% for m in messages %}{{ '### ' + m['role'] + ':\n' + m['content'] + eos_token + '\n' }}"
            "{% endfor %}{% if add_generation_prompt %}{{ '### assistant:\n' }}{% endif %}"
        )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
