"""Chat examples → token ids with completion-only targets → packed rows with document masks.

Why targets are built per example, before packing: the label of position t is
token t+1 of the *same* example, and only when that token belongs to the
assistant's completion. The last position of every example has no target, so
once examples are concatenated no position ever learns to predict the next
example's first token (the cross-contamination that naive packing has).

Why the prompt and completion are tokenized separately: at inference the model
reads exactly `tokenizer(prompt)` and writes the completion after it, so training
on the same split point is what generation will see.

Long examples are dropped and counted (`Encoded.dropped_long`), never cut.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..records import read_jsonl

IGNORE = -100


class DataError(ValueError):
    """A dataset folder or file that cannot be trained on, as one line."""


def split_file(data_dir: str | Path, split: str) -> Path:
    """The chat-format JSONL of a split in a `codehone build` folder (or `chat/` under it)."""
    d = Path(data_dir)
    if not d.is_dir():
        raise DataError(f"{d}: no such dataset folder (give a `codehone build` output folder)")
    for p in (d / f"{split}.jsonl", d / "chat" / f"{split}.jsonl"):
        if p.is_file():
            return p
    raise DataError(f"{d}: no {split}.jsonl in it (is it a `codehone build` output folder?)")


def load_chat(path: Path, limit: int | None = None) -> list[dict]:
    out = []
    for lineno, ex in enumerate(read_jsonl(path), 1):
        msgs = ex.get("messages")
        if not isinstance(msgs, list) or not msgs or msgs[-1].get("role") != "assistant":
            raise DataError(f"{path}:{lineno}: not a chat example ending with an assistant message "
                            "(build with output.formats including chat, listed first)")
        out.append(ex)
        if limit and len(out) >= limit:
            break
    return out


def prompt_and_completion(tok, messages: list[dict]) -> tuple[str, str]:
    """The rendered prompt (up to the open assistant turn) and the completion text, ending in EOS.

    Both come from the tokenizer's chat template; the completion is the rest of the
    fully rendered conversation, so a template that adds its own EOS is honoured and
    one that does not gets EOS appended.
    """
    prompt = tok.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
    full = tok.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):  # a template that renders the last turn differently
        completion = messages[-1]["content"] + tok.eos_token
    else:
        completion = full[len(prompt):]
    eos_at = completion.rfind(tok.eos_token)
    completion = completion[: eos_at + len(tok.eos_token)] if eos_at >= 0 else completion + tok.eos_token
    return prompt, completion


@dataclass
class Encoded:
    """Tokenized examples: (input ids, targets) pairs, and what was dropped for length."""

    items: list[tuple[list[int], list[int]]] = field(default_factory=list)
    dropped_long: int = 0
    completion_tokens: int = 0


def encode(tok, examples: list[dict], max_len: int) -> Encoded:
    """ids = prompt + completion; targets[t] = ids[t+1] where ids[t+1] is a completion token, else IGNORE."""
    enc = Encoded()
    for ex in examples:
        prompt, completion = prompt_and_completion(tok, ex["messages"])
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        c = tok(completion, add_special_tokens=False)["input_ids"]
        ids = p + c
        if len(ids) > max_len:
            enc.dropped_long += 1
            continue
        targets = [IGNORE] * (len(p) - 1) + c + [IGNORE]
        enc.items.append((ids, targets))
        enc.completion_tokens += len(c)
    return enc


def pack(items: list[tuple[list[int], list[int]]], seq_len: int, seed: int, packing: bool = True,
         open_rows: int = 64) -> list[list[int]]:
    """Group example indices into rows of at most `seq_len` tokens, in a seeded order.

    First-fit over a window of open rows: nearly as tight as first-fit-decreasing,
    linear time, and the order still depends only on the seed (exact resume).
    Without packing each example is its own row.
    """
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    if not packing:
        return [[i] for i in order]
    rows: list[list[int]] = []
    opened: list[tuple[int, list[int]]] = []  # (free tokens, indices)
    for i in order:
        n = len(items[i][0])
        for j, (free, idx) in enumerate(opened):
            if n <= free:
                idx.append(i)
                opened[j] = (free - n, idx)
                break
        else:
            opened.append((seq_len - n, [i]))
            if len(opened) > open_rows:
                opened.sort(key=lambda r: r[0])
                rows.append(opened.pop(0)[1])
    rows.extend(idx for _, idx in opened)
    random.Random(seed + 1).shuffle(rows)
    return rows


def collate(items: list[tuple[list[int], list[int]]], rows: list[list[int]], pad_id: int,
            seq_len: int | None = None) -> dict[str, torch.Tensor]:
    """Rows of example indices → input_ids, targets, position_ids and a block-diagonal causal mask.

    Position ids restart at 0 for every example, and the boolean mask (B, 1, T, T)
    lets a token see only earlier tokens of its own example. Padding forms its
    own segment (so no row of the mask is empty) and has no targets.
    `doc_lens` (the example lengths, row by row) and `row_lens` (the real tokens
    of each row) let the trainer drop the padding and the mask (see packed.py).
    """
    width = seq_len or max(sum(len(items[i][0]) for i in r) for r in rows)
    B = len(rows)
    ids = torch.full((B, width), pad_id, dtype=torch.long)
    tgt = torch.full((B, width), IGNORE, dtype=torch.long)
    pos = torch.zeros((B, width), dtype=torch.long)
    seg = torch.full((B, width), -1, dtype=torch.long)
    doc_lens: list[int] = []
    row_lens: list[int] = []
    for b, r in enumerate(rows):
        t = 0
        for s, i in enumerate(r):
            x, y = items[i]
            n = len(x)
            ids[b, t:t + n] = torch.tensor(x)
            tgt[b, t:t + n] = torch.tensor(y)
            pos[b, t:t + n] = torch.arange(n)
            seg[b, t:t + n] = s
            doc_lens.append(n)
            t += n
        row_lens.append(t)
        if t < width:
            pos[b, t:] = torch.arange(width - t)
            seg[b, t:] = len(r)
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    mask = (seg[:, :, None] == seg[:, None, :]) & causal
    return {"input_ids": ids, "targets": tgt, "position_ids": pos, "attention_mask": mask[:, None],
            "doc_lens": torch.tensor(doc_lens, dtype=torch.long), "row_lens": torch.tensor(row_lens, dtype=torch.long)}


class Batches:
    """An endless, seeded stream of micro-batches; `state()` / `load_state()` give the exact position.

    Epoch e packs and orders rows with seed + e, so resuming needs only (epoch, row).
    """

    def __init__(self, items, seq_len: int, batch_size: int, pad_id: int, seed: int, packing: bool):
        if not items:
            raise DataError("no training examples left after the length filter")
        self.items, self.seq_len, self.bs, self.pad_id = items, seq_len, batch_size, pad_id
        self.seed, self.packing = seed, packing
        self.epoch, self.row = 0, 0
        self._rows = pack(items, seq_len, seed, packing)
        self._targets = [sum(1 for y in tgt if y != IGNORE) for _, tgt in items]

    def state(self) -> dict:
        return {"epoch": self.epoch, "row": self.row}

    def load_state(self, s: dict) -> None:
        self.epoch, self.row = s["epoch"], s["row"]
        self._rows = pack(self.items, self.seq_len, self.seed + 1000 * self.epoch, self.packing)

    def rows_per_epoch(self) -> int:
        return len(self._rows)

    def next_rows(self) -> list[list[int]]:
        """The next micro-batch as rows of example indices (the same on every process of a run)."""
        if self.row >= len(self._rows):
            self.epoch, self.row = self.epoch + 1, 0
            self._rows = pack(self.items, self.seq_len, self.seed + 1000 * self.epoch, self.packing)
        rows = self._rows[self.row:self.row + self.bs]
        self.row += len(rows)
        return rows

    def collate(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        return collate(self.items, rows, self.pad_id, self.seq_len if self.packing else None)

    def tokens(self, rows: list[list[int]]) -> tuple[int, int]:
        """(tokens, target tokens) of `rows`, counted without building the batch."""
        n = sum(len(self.items[i][0]) for r in rows for i in r)
        return n, sum(self._targets[i] for r in rows for i in r)

    def next(self) -> dict[str, torch.Tensor]:
        return self.collate(self.next_rows())
