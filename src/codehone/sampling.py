"""Load a trained model and sample chat completions from it, batched, with the KV cache.

Why prompts go through `tok.apply_chat_template` and `tok(prompt,
add_special_tokens=False)`: that is exactly how `codehone train` built its
inputs (train/data.py), so the model reads at eval time what it was trained to
continue.

Why sampling uses one random generator per (seed, prompt, sample) rather than
`generate(do_sample=True)`: HF samples a whole batch from the global RNG, so a
sample would change with the batch size, the order of the prompts or a resume
halfway through. Here a logits processor draws each row's token from that row's
own generator and hands `generate` a one-hot score, which its greedy step then
takes; a sample depends only on the model, the prompt, the seed and its index.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import weakref
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)


class SamplingError(ValueError):
    """A model folder that cannot be loaded, or bad sampling settings, as one line."""


@dataclass
class Completion:
    """One sampled reply: its text (special tokens removed), whether it ended in EOS, tokens generated."""

    text: str
    stopped_at_eos: bool
    new_tokens: int


def resolve_model_dir(path: str | Path) -> tuple[Path, str]:
    """(folder, kind) with kind "model" (a HF causal-LM folder) or "adapter" (a PEFT adapter folder).

    A `codehone train` OUT folder resolves to its model/ (merged or scratch) and else its adapter/.
    """
    p = Path(path)
    if not p.exists():
        raise SamplingError(f"{p}: no such model folder")
    if not p.is_dir():
        raise SamplingError(f"{p}: not a folder (give a Hugging Face model folder, a PEFT adapter folder "
                            "or a `codehone train` output folder)")
    if (p / "adapter_config.json").is_file():
        return p, "adapter"
    if (p / "config.json").is_file():
        return p, "model"
    if (p / "model" / "config.json").is_file():
        return p / "model", "model"
    if (p / "adapter" / "adapter_config.json").is_file():
        return p / "adapter", "adapter"
    raise SamplingError(f"{p}: not a model (no config.json or adapter_config.json here, nor a model/ or "
                        "adapter/ folder of a `codehone train` run)")


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _tokenizer(path: Path):
    from transformers import AutoTokenizer

    from .train.tokenizer import ensure_chat_ready

    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError) as e:
        raise SamplingError(f"{path}: cannot load its tokenizer ({str(e).splitlines()[0]})") from None
    try:
        ensure_chat_ready(tok)
    except ValueError as e:
        raise SamplingError(f"{path}: {e}") from None
    return tok


def _causal_lm(path: Path, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError, KeyError) as e:
        raise SamplingError(f"{path}: cannot load as a causal LM ({str(e).splitlines()[0]})") from None


def load_model(path: str | Path, dtype: torch.dtype | None = None):
    """(model, tokenizer) in eval mode on the best device; an adapter is loaded onto its base and merged.

    Merging once costs a second and makes every generated token cheaper (no LoRA side matmuls).
    """
    from .errors import verify_model_files

    folder, kind = resolve_model_dir(path)
    bad = verify_model_files(folder)  # a truncated or corrupt file: one line now, not a loader traceback
    if bad:
        raise SamplingError(bad)
    dev = _device()
    dtype = dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    if kind == "model":
        tok, model = _tokenizer(folder), _causal_lm(folder, dtype)
    else:
        try:
            acfg = json.loads((folder / "adapter_config.json").read_text())
        except (OSError, ValueError) as e:
            raise SamplingError(f"{folder}/adapter_config.json: unreadable ({e})") from None
        base = acfg.get("base_model_name_or_path")
        if not base or not (Path(base) / "config.json").is_file():
            raise SamplingError(f"{folder}: the adapter's base model {base!r} is not a local model folder "
                                "(adapter_config.json: base_model_name_or_path)")
        bad = verify_model_files(Path(base))
        if bad:
            raise SamplingError(bad)
        from peft import PeftModel

        tok = _tokenizer(folder if (folder / "tokenizer_config.json").is_file() else Path(base))
        try:
            model = PeftModel.from_pretrained(_causal_lm(Path(base), dtype), folder).merge_and_unload()
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise SamplingError(f"{folder}: cannot apply the adapter to {base} ({str(e).splitlines()[0]})") from None
    model.to(dev)
    model.eval()
    model.config.use_cache = True
    return model, tok


def row_seed(seed: int, key: str, index: int) -> int:
    """The generator seed of one sample: a hash, so neighbouring seeds give unrelated streams."""
    h = hashlib.sha256(f"{seed}\0{key}\0{index}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


class RowSampler:
    """A logits processor that samples each row with its own generator and returns a one-hot score.

    Temperature, then nucleus (top-p) filtering as in HF's TopPLogitsWarper: the
    smallest set of tokens whose probability reaches `top_p` (at least one) is kept.
    The draw is by inverse CDF: one uniform number per row from the row's
    generator, looked up in the cumulative sorted probabilities (one sort and one
    small `rand` per row and step; a `multinomial` per row was a third slower).
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device: torch.device):
        self.temperature, self.top_p = temperature, top_p
        self.gens = []
        for s in seeds:
            g = torch.Generator(device=device)
            g.manual_seed(s)
            self.gens.append(g)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = (scores.float() / self.temperature).softmax(-1)
        sp, idx = torch.sort(probs, descending=True, dim=-1)
        if self.top_p < 1.0:
            sp = sp * ((sp.cumsum(-1) - sp) < self.top_p)  # keep tokens until the mass reaches top_p
        cum = sp.cumsum(-1)
        u = torch.cat([torch.rand(1, generator=g, device=scores.device) for g in self.gens])
        at = torch.searchsorted(cum, (u * cum[:, -1])[:, None], right=True).clamp(max=cum.shape[-1] - 1)
        picks = idx.gather(1, at)[:, 0]
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(out.shape[0]), picks] = 0.0
        return out


# llguidance's view of a tokenizer (its token trie, ~0.1 s to build), kept for as long as the tokenizer lives.
_LL_TOKENIZERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class GrammarMask:
    """A logits processor: row r may only take tokens that keep its answer inside `grammars[r]`.

    llguidance (a Lark grammar, an Earley parser over the tokenizer's vocabulary) computes the
    allowed tokens after each step; rows without a grammar are left alone. It runs before the
    row sampler, so a seeded draw picks among allowed tokens only, and greedy takes the best of
    them. When a row's answer is complete the grammar allows only EOS.
    """

    def __init__(self, tok, grammars: list[str | None], width: int):
        import llguidance
        import llguidance.hf
        import llguidance.torch

        lt = _LL_TOKENIZERS.get(tok)
        if lt is None:
            lt = _LL_TOKENIZERS[tok] = llguidance.hf.from_tokenizer(tok)
        self.matchers = [llguidance.LLMatcher(lt, llguidance.grammar_from("lark", g)) if g else None
                         for g in grammars]
        for m in self.matchers:
            if m is not None and m.is_error():
                raise SamplingError(f"bad grammar: {m.get_error().splitlines()[0]}")
        self.width = width
        self.eos = tok.eos_token_id
        self.vocab = lt.vocab_size
        self.mask = llguidance.torch.allocate_token_bitmask(len(grammars), lt.vocab_size)
        self._fill = llguidance.torch.fill_next_token_bitmask
        self._shifts = torch.arange(32, dtype=torch.int32)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.width
        self.mask.fill_(-1)  # all bits set: unconstrained rows keep every token
        for r, m in enumerate(self.matchers):
            if m is None:
                continue
            if step > 0 and not m.is_stopped() and not m.is_error():
                m.consume_token(int(input_ids[r, -1]))
            if m.is_error():
                continue  # off the grammar (cannot happen through the mask): leave the row be
            self._fill(m, self.mask, r)  # a complete answer (the matcher stopped) allows EOS only
        constrained = [r for r, m in enumerate(self.matchers) if m is not None and not m.is_error()]
        if constrained:
            # The bitmask unpacked in plain torch: llguidance's own kernel is torch.compile'd, which
            # costs ~2 s per process on a CPU and needs a C++ toolchain at run time.
            rows = torch.tensor(constrained)
            bits = ((self.mask[rows].unsqueeze(-1) >> self._shifts) & 1).bool().reshape(len(constrained), -1)
            allowed = torch.zeros((len(constrained), scores.shape[1]), dtype=torch.bool)
            n = min(self.vocab, scores.shape[1])
            allowed[:, :n] = bits[:, :n]
            scores[rows] = scores[rows].masked_fill(~allowed.to(scores.device), float("-inf"))
        return scores


def cpu_threads() -> int:
    """Torch threads for generation on a CPU: the cores the load average leaves free, at least one.

    Decoding runs hundreds of tiny matmuls, and torch's thread pool spin-waits:
    on this 2-core machine under a load of 8, one thread took 0.03-0.04 s per
    step of the tiny model (batch 8) and two threads 0.24-0.91 s. On an idle
    machine every core is used.
    """
    cores = os.cpu_count() or 1
    try:
        busy = round(os.getloadavg()[0])
    except OSError:  # pragma: no cover - no load average on this platform
        busy = 0
    return max(1, min(cores, cores - busy))


def render(tok, messages: list[dict]) -> str:
    """The prompt text, up to the open assistant turn, through the saved chat template."""
    if messages and messages[-1].get("role") == "assistant":
        messages = messages[:-1]
    return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def sample(
    model,
    tok,
    prompts: list[list[dict]],
    *,
    n: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 512,
    seed: int = 0,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    threads: int | None = None,
    keys: list[str] | None = None,
    on_batch: Callable[[list[tuple[int, int, Completion]]], None] | None = None,
    skip: set[tuple[int, int]] | None = None,
    grammars: list[str | None] | None = None,
) -> list[list[Completion]]:
    """`n` completions for each chat prompt (a trailing assistant message is ignored).

    temperature 0 is greedy: the n completions are one completion repeated (a
    warning says so). `keys` name the prompts for the per-sample seeds (default:
    their rendered text), `on_batch` receives (prompt index, sample index,
    completion) as each batch finishes, and `skip` lists (prompt, sample) pairs
    that already exist (a resume): they come back as None.
    `progress(done, total)` counts samples. `threads`: torch threads on a CPU
    (default `cpu_threads()`). `grammars` (one Lark grammar or None per prompt) constrain each
    prompt's samples to its grammar (GrammarMask).
    """
    if n < 1:
        raise SamplingError(f"n must be at least 1, not {n}")
    if temperature < 0 or not 0 < top_p <= 1 or max_new_tokens < 1 or batch_size < 1:
        raise SamplingError("need temperature >= 0, 0 < top_p <= 1, max_new_tokens >= 1 and batch_size >= 1")
    greedy = temperature == 0
    if greedy and n > 1:
        log.warning("temperature 0 is greedy: the %d samples per prompt are copies of one", n)
    texts = [render(tok, m) for m in prompts]
    keys = keys or texts
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    skip = skip or set()
    # Jobs: (prompt, sample). Greedy generates sample 0 only; longest prompts first, so a batch's
    # rows have similar lengths (little padding) and the slowest batches show up early.
    draws = 1 if greedy else n
    jobs = [(p, s) for p in range(len(prompts)) for s in range(draws)
            if not (greedy and all((p, j) in skip for j in range(n))) and (greedy or (p, s) not in skip)]
    jobs.sort(key=lambda j: (-len(ids[j[0]]), j))
    out: list[list[Completion | None]] = [[None] * n for _ in prompts]
    total = sum((p, j) not in skip for p in range(len(prompts)) for j in range(n))
    dev = next(model.parameters()).device
    limit = getattr(model.config, "max_position_embeddings", None)
    caps = [max(1, min(max_new_tokens, limit - len(x))) if limit else max_new_tokens for x in ids]
    short = sum(c < max_new_tokens for c in caps)
    if short:
        log.info("%d prompts leave fewer than %d of the model's %d positions: their samples stop there",
                 short, max_new_tokens, limit)
    if progress:
        progress(0, total)
    done = 0
    with _threads((threads or cpu_threads()) if dev.type == "cpu" else None):
        for b in range(0, len(jobs), batch_size):
            finished = _run_batch(model, tok, ids, jobs[b:b + batch_size], n, greedy, skip, out, dev,
                                  sampler_args=(seed, keys, temperature, top_p), caps=caps, grammars=grammars)
            if on_batch:
                on_batch(finished)
            done += len(finished)
            if progress:
                progress(done, total)
    return out  # type: ignore[return-value]


@contextmanager
def _threads(n: int | None):
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class RowLimit:
    """A stopping criterion: row r is done after `caps[r]` new tokens (its prompt + them fill the context).

    Per row, not per batch, so a sample never depends on which prompts shared its batch.
    """

    def __init__(self, caps: list[int], width: int):
        self.caps, self.width = torch.tensor(caps), width

    def __call__(self, input_ids: torch.LongTensor, scores, **kw) -> torch.BoolTensor:
        return (input_ids.shape[1] - self.width >= self.caps).to(input_ids.device)


def _run_batch(model, tok, ids, batch, n, greedy, skip, out, dev, sampler_args, caps, grammars=None):
    """Generate one batch of (prompt, sample) jobs; fills `out` and returns what it filled.

    Generation positions past the model's context are not trained, so each row
    stops at its prompt's share of `max_position_embeddings` (`caps`).
    """
    from transformers import StoppingCriteriaList

    eos = tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    width = max(len(ids[p]) for p, _ in batch)
    inp = torch.full((len(batch), width), pad, dtype=torch.long)
    att = torch.zeros((len(batch), width), dtype=torch.long)
    for r, (p, _) in enumerate(batch):  # left padding: every row's next token is at the same column
        inp[r, width - len(ids[p]):] = torch.tensor(ids[p])
        att[r, width - len(ids[p]):] = 1
    kw: dict = {}
    processors: list = []
    if grammars is not None and any(grammars[p] for p, _ in batch):
        processors.append(GrammarMask(tok, [grammars[p] for p, _ in batch], width))
    if not greedy:
        seed, keys, temperature, top_p = sampler_args
        processors.append(RowSampler([row_seed(seed, keys[p], s) for p, s in batch], temperature, top_p, dev))
    if processors:
        from transformers import LogitsProcessorList

        kw["logits_processor"] = LogitsProcessorList(processors)
    with torch.inference_mode():
        row_caps = [caps[p] for p, _ in batch]
        kw["stopping_criteria"] = StoppingCriteriaList([RowLimit(row_caps, width)])
        gen = model.generate(input_ids=inp.to(dev), attention_mask=att.to(dev), max_new_tokens=max(row_caps),
                             do_sample=False, use_cache=True, eos_token_id=eos, pad_token_id=pad,
                             num_beams=1, top_k=None, top_p=None, temperature=None, **kw)
    finished = []
    for r, (p, s) in enumerate(batch):
        new = gen[r, width:width + row_caps[r]].tolist()
        stopped = eos in new
        if stopped:
            new = new[: new.index(eos) + 1]
        c = Completion(tok.decode(new[:-1] if stopped else new, skip_special_tokens=True), stopped, len(new))
        for j in range(n) if greedy else [s]:
            if (p, j) not in skip:
                out[p][j] = c
                finished.append((p, j, c))
    return finished
