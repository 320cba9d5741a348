"""Inference backends behind serve / mcp / chat: one interface, three formats.

The interface is the one `codehone export`'s runtimes implement
(`codehone.export.runtime.load_runtime(path, backend)`): an object with
`.tokenizer` (a Hugging Face tokenizer carrying the chat template) and
`.stream(prompt_text, *, max_tokens, temperature, top_p, seed) -> Iterator[str]`
that stops at EOS. The hf backend here implements it for Hugging Face folders,
PEFT adapters and `codehone train` run folders, and adds `stream_batch`: several
prompts generated together as one left-padded batch with a KV cache, which is
what lets the HTTP server answer concurrent requests in one forward pass per
token instead of one per request. ONNX and GGUF runtimes are imported lazily, so
serving an HF model never needs onnxruntime or llama.cpp.

Why a hand-written decode loop and not `model.generate`: the server streams
every row of a batch as it goes, stops rows independently (EOS, their own
max_tokens, a cancelled client, a deadline) and samples each row with its own
temperature, top_p and seed; `generate` offers none of that per row.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from . import ServeError

BACKENDS = ("hf", "int8", "onnx", "gguf")


@dataclass
class GenParams:
    """Sampling settings of one request. temperature 0 means greedy."""

    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None


@dataclass
class Event:
    """One step of a row in a batch: new text, and a finish reason on the row's last event.

    finish is "stop" (EOS), "length" (max_tokens or the context), "cancelled" or "timeout".
    """

    row: int
    text: str = ""
    tokens: int = 0
    finish: str | None = None


# ---------------------------------------------------------------- loading


def load_backend(path: str | Path, backend: str = "hf", threads: int | None = None):
    """The backend object for `path`: HFBackend here, or export's int8/ONNX/GGUF runtime.

    `threads` goes to onnxruntime / llama.cpp (torch's count is process-wide: set by the caller);
    both default to every core, which on a busy CPU spins far more than it computes."""
    if backend not in BACKENDS:
        raise ServeError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    if backend == "hf":
        return HFBackend.load(path)
    if not Path(path).exists():
        raise ServeError(f"{path}: no such {backend} export")
    from ..errors import verify_model_files

    bad = verify_model_files(Path(path)) if Path(path).is_dir() else None
    if bad:
        raise ServeError(bad)
    try:
        from ..export.runtime import load_runtime
    except ImportError as e:
        raise ServeError(f"the {backend} backend needs codehone.export.runtime, which cannot be imported "
                         f"in this build ({e})") from None
    try:
        rt = load_runtime(path, backend, **({"threads": threads} if threads and backend in ("onnx", "gguf") else {}))
    except (OSError, ValueError, RuntimeError) as e:
        raise ServeError(f"{path}: cannot load as {backend}: {str(e).splitlines()[0] if str(e) else e}") from None
    return RuntimeBackend(rt, backend, Path(path))


def _cache_of(out):
    c = getattr(out, "cache", None)
    return c if c is not None else out.past_key_values


def _eos_ids(tok, gen_cfg) -> set[int]:
    ids: set[int] = set()
    for v in (getattr(gen_cfg, "eos_token_id", None), tok.eos_token_id):
        if isinstance(v, int):
            ids.add(v)
        elif isinstance(v, list | tuple):
            ids.update(int(x) for x in v)
    return ids


# ---------------------------------------------------------------- hf


class HFBackend:
    """A transformers causal LM (a LoRA adapter is merged for inference) with batched streaming."""

    name = "hf"
    supports_batching = True

    def __init__(self, model, tokenizer, source: Path):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.source = source
        self.eos_ids = _eos_ids(tokenizer, getattr(model, "generation_config", None))
        if not self.eos_ids:
            raise ServeError(f"{source}: the tokenizer has no EOS token, so generation would never stop")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.context_length = int(getattr(model.config, "max_position_embeddings", 0) or 0) or None
        # transformers 5 renamed the forward's `past_key_values` to `cache`; accept either.
        self._cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    @classmethod
    def load(cls, path: str | Path) -> HFBackend:
        """Through eval's loader (codehone.sampling.load_model), so eval and serve run the same model:
        an HF folder, a PEFT adapter (merged onto its local base) or a train run's model/ or adapter/."""
        from ..sampling import SamplingError, load_model

        try:
            model, tok = load_model(path)
        except SamplingError as e:
            raise ServeError(str(e)) from None
        return cls(model, tok, Path(path))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def stream(self, prompt_text: str, *, max_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
               seed: int | None = None) -> Iterator[str]:
        """The export-runtime interface: text pieces of one completion, ending at EOS or max_tokens."""
        for ev in self.stream_batch([self.encode(prompt_text)], [GenParams(max_tokens, temperature, top_p, seed)]):
            if ev.text:
                yield ev.text

    @torch.inference_mode()
    def stream_batch(self, prompts: list[list[int]], params: list[GenParams],
                     stop: Callable[[int], str | None] | None = None) -> Iterator[Event]:
        """Generate every prompt (token ids) together, left-padded; yield each row's text as it grows.

        `stop(row)` is asked after every step; a reason it returns ("cancelled", "timeout") ends that row.
        Each row ends with exactly one Event whose `finish` is set.
        """
        n = len(prompts)
        if n == 0:
            return
        dev = next(self.model.parameters()).device
        width = max(len(p) for p in prompts)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, p in enumerate(prompts):
            if p:
                ids[i, width - len(p):] = torch.tensor(p)
                mask[i, width - len(p):] = 1
        budget = []
        for p, gp in zip(prompts, params, strict=True):
            room = (self.context_length - len(p)) if self.context_length else gp.max_tokens
            budget.append(max(0, min(gp.max_tokens, room)))
        gens = [torch.Generator().manual_seed(gp.seed if gp.seed is not None else random.getrandbits(63))
                for gp in params]
        out_ids: list[list[int]] = [[] for _ in range(n)]
        sent = [""] * n
        done = [False] * n
        for i in range(n):
            if budget[i] == 0:
                done[i] = True
                yield Event(i, finish="length")
        ids, mask = ids.to(dev), mask.to(dev)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
        past, logits = _cache_of(out), out.logits[:, -1, :].float()
        pos = pos[:, -1:]
        while not all(done):
            nxt = [self._pick(logits[i], params[i], gens[i]) if not done[i] else self.pad_id for i in range(n)]
            for i in range(n):
                if done[i]:
                    continue
                reason = stop(i) if stop else None
                if reason:
                    done[i] = True
                    yield Event(i, finish=reason)
                    continue
                if nxt[i] in self.eos_ids:
                    done[i] = True
                    yield Event(i, text=self._flush(out_ids[i], sent, i), finish="stop")
                    continue
                out_ids[i].append(nxt[i])
                piece = self._delta(out_ids[i], sent, i)
                if len(out_ids[i]) >= budget[i]:
                    done[i] = True
                    yield Event(i, text=piece + self._flush(out_ids[i], sent, i), tokens=1, finish="length")
                else:
                    yield Event(i, text=piece, tokens=1)
            if all(done):
                break
            mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=dev)], dim=1)
            pos = pos + 1
            step = torch.tensor(nxt, dtype=torch.long, device=dev).unsqueeze(1)
            out = self.model(input_ids=step, attention_mask=mask, position_ids=pos, use_cache=True,
                             **{self._cache_kw: past})
            past, logits = _cache_of(out), out.logits[:, -1, :].float()

    @staticmethod
    def _pick(logits: torch.Tensor, gp: GenParams, gen: torch.Generator) -> int:
        if gp.temperature <= 0:
            return int(logits.argmax())
        probs = torch.softmax(logits.cpu() / gp.temperature, dim=-1)
        if gp.top_p < 1.0:
            sp, si = probs.sort(descending=True)
            keep = sp.cumsum(0) - sp < gp.top_p  # the smallest prefix whose mass reaches top_p
            probs = torch.zeros_like(probs).scatter(0, si[keep], sp[keep])
        return int(torch.multinomial(probs, 1, generator=gen))

    def _delta(self, ids: list[int], sent: list[str], i: int) -> str:
        return _delta(self.tokenizer, ids, sent, i)

    def _flush(self, ids: list[int], sent: list[str], i: int) -> str:
        return _flush(self.tokenizer, ids, sent, i)


def _delta(tok, ids: list[int], sent: list[str], i: int) -> str:
    """New text since the last piece; held back while it ends inside a multi-byte character."""
    text = tok.decode(ids, skip_special_tokens=True)
    if text.endswith("\ufffd"):
        return ""
    piece, sent[i] = text[len(sent[i]):], text
    return piece


def _flush(tok, ids: list[int], sent: list[str], i: int) -> str:
    text = tok.decode(ids, skip_special_tokens=True)
    piece, sent[i] = text[len(sent[i]):], text
    return piece


# ---------------------------------------------------------------- export runtimes


class RuntimeBackend:
    """export's int8/ONNX/GGUF runtime behind the same batch interface, one row at a time (no batching)."""

    supports_batching = False

    def __init__(self, runtime, name: str, source: Path):
        self.runtime = runtime
        self.name = name
        self.source = source
        self.tokenizer = runtime.tokenizer
        n_ctx = getattr(runtime, "n_ctx", None)
        self.context_length = n_ctx if n_ctx and n_ctx < (1 << 30) else None

    def encode(self, text: str) -> list[int]:
        enc = getattr(self.runtime, "encode", None)
        return list(enc(text)) if enc else self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def stream(self, prompt_text: str, **kw) -> Iterator[str]:
        return self.runtime.stream(prompt_text, **kw)

    def stream_batch(self, prompts: list[list[int]], params: list[GenParams],
                     stop: Callable[[int], str | None] | None = None) -> Iterator[Event]:
        """Rows one after another, through the runtime's token loop (`generate_ids`), which stops at EOS."""
        for i, (p, gp) in enumerate(zip(prompts, params, strict=True)):
            ids: list[int] = []
            sent = [""]
            finish = "stop"
            for tok in self.runtime.generate_ids(p, max_tokens=gp.max_tokens, temperature=gp.temperature,
                                                 top_p=gp.top_p, seed=gp.seed):
                reason = stop(i) if stop else None
                if reason:
                    finish = reason
                    break
                ids.append(tok)
                yield Event(i, text=_delta(self.tokenizer, ids, sent, 0), tokens=1)
            else:
                if len(ids) >= gp.max_tokens or (self.context_length and len(p) + len(ids) >= self.context_length):
                    finish = "length"
            yield Event(i, text=_flush(self.tokenizer, ids, sent, 0), finish=finish)


def render_chat(tok, messages: list[dict]) -> str:
    """The prompt text for a conversation: the model's own saved template, assistant turn opened."""
    try:
        return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except Exception as e:  # noqa: BLE001 - jinja errors from user messages become one line
        raise ServeError(f"cannot render the messages with the model's chat template: {e}") from None



@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish: str
    dropped_turns: int = 0  # chat: old exchanges dropped to fit the context


def complete(backend, prompt_text: str, params: GenParams, on_text: Callable[[str], None] | None = None) -> Completion:
    """One completion of `prompt_text` (already rendered), optionally streamed piece by piece to `on_text`."""
    ids = backend.encode(prompt_text)
    if backend.context_length and len(ids) >= backend.context_length:
        raise ServeError(f"the prompt is {len(ids)} tokens; this model's context is {backend.context_length}")
    text, n, finish = "", 0, "stop"
    for ev in backend.stream_batch([ids], [params]):
        text += ev.text
        n += ev.tokens
        if ev.text and on_text:
            on_text(ev.text)
        if ev.finish:
            finish = ev.finish
    return Completion(text, len(ids), n, finish)
