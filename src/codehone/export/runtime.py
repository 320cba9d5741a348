"""Runtimes for every export format behind one small interface: logits, greedy/sampled tokens, text stream.

Why one interface: the parity check, the speed benchmark and `codehone serve`
all need the same three things from a model (logits over a prompt for parity,
a token loop with a KV cache for speed, and streamed text that stops at EOS),
whatever file format it lives in. Sampling lives here once, in numpy, so
greedy decoding is the same argmax everywhere and deterministic, and a seeded
sampler gives the same tokens on every backend that yields the same logits.

Prompts arrive already rendered (the caller applies the chat template); they
are tokenized with the Hugging Face tokenizer saved beside every export, the
tokenizer the model was trained with, so no backend re-interprets the text.
"""

from __future__ import annotations

import abc
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np


class RuntimeLoadError(ValueError):
    """An export folder or file that cannot be loaded, or a request it cannot serve, as one line."""


def _hf_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    if not (folder / "tokenizer_config.json").is_file():
        raise RuntimeLoadError(f"{folder}: no tokenizer saved beside the model (tokenizer_config.json)")
    return AutoTokenizer.from_pretrained(folder)


def eos_ids(folder: Path, tokenizer) -> set[int]:
    """Every id that ends a turn: generation_config's eos_token_id (int or list) and the tokenizer's EOS."""
    ids: set[int] = set()
    gc = folder / "generation_config.json"
    if gc.is_file():
        e = json.loads(gc.read_text()).get("eos_token_id")
        ids.update(e if isinstance(e, list) else [] if e is None else [e])
    if tokenizer is not None and tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def cache_kw(model) -> str:
    """The forward() keyword for the KV cache: `cache` from transformers 5.24, `past_key_values` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def out_cache(out):
    c = getattr(out, "cache", None)
    return out.past_key_values if c is None else c


def pick(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    """Greedy (temperature 0: argmax, ties to the lowest id) or nucleus sampling."""
    if temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        keep = np.cumsum(p[order]) - p[order] < top_p
        mask = np.zeros_like(p)
        mask[order[keep]] = 1.0
        p = p * mask
        p /= p.sum()
    return int(rng.choice(len(p), p=p))


class LM(abc.ABC):
    """The shared token loop. Subclasses give `_prefill(ids)` and `_decode(token)`: last-position logits."""

    tokenizer = None
    eos: set[int]
    n_ctx: int = 1 << 30

    def encode(self, prompt: str) -> list[int]:
        return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    @abc.abstractmethod
    def logits(self, input_ids: list[int]) -> np.ndarray:
        """Logits as numpy (see the subclasses)."""

    @abc.abstractmethod
    def _prefill(self, ids: list[int]) -> np.ndarray:
        """Logits as numpy (see the subclasses)."""

    @abc.abstractmethod
    def _decode(self, token: int) -> np.ndarray:
        """Logits as numpy (see the subclasses)."""

    def generate_ids(self, input_ids: list[int], *, max_tokens: int, temperature: float = 0.0,
                     top_p: float = 1.0, seed: int | None = None) -> Iterator[int]:
        """New token ids, one at a time; the EOS id that ends the turn is not yielded."""
        if not input_ids:
            raise RuntimeLoadError("empty prompt")
        if len(input_ids) >= self.n_ctx:
            raise RuntimeLoadError(f"prompt of {len(input_ids)} tokens does not fit the context of {self.n_ctx}")
        max_tokens = min(max_tokens, self.n_ctx - len(input_ids))
        rng = np.random.default_rng(seed)
        logits = self._prefill(list(input_ids))
        for i in range(max_tokens):
            tok = pick(logits, temperature, top_p, rng)
            if tok in self.eos:
                return
            yield tok
            if i + 1 < max_tokens:
                logits = self._decode(tok)

    def stream(self, prompt: str, *, max_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
               seed: int | None = None) -> Iterator[str]:
        """Text pieces as they are decoded; a piece that ends inside a UTF-8 character waits for the rest."""
        ids: list[int] = []
        sent = ""
        for tok in self.generate_ids(self.encode(prompt), max_tokens=max_tokens, temperature=temperature,
                                     top_p=top_p, seed=seed):
            ids.append(tok)
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            if text.endswith("\ufffd") or len(text) <= len(sent):
                continue
            yield text[len(sent):]
            sent = text
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if len(text) > len(sent):
            yield text[len(sent):]

    def close(self) -> None:  # noqa: B027 - optional hook: runtimes with native handles release them
        return None


class TorchLM(LM):
    """A transformers causal LM in this process (fp32, merged or int8) with its KV cache."""

    def __init__(self, model, tokenizer, folder: Path | None = None):
        import torch

        self.torch = torch
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.eos = eos_ids(folder, tokenizer) if folder else {int(tokenizer.eos_token_id)}
        self.n_ctx = int(getattr(model.config, "max_position_embeddings", 1 << 30))
        self._past = None
        self._kw = cache_kw(self.model)

    def logits(self, input_ids: list[int]) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model(self.torch.tensor([input_ids])).logits[0].float().numpy()

    def _run(self, ids: list[int], past) -> np.ndarray:
        with self.torch.inference_mode():
            out = self.model(self.torch.tensor([ids]), use_cache=True, **{self._kw: past})
        self._past = out_cache(out)
        return out.logits[0, -1].float().numpy()

    def _prefill(self, ids: list[int]) -> np.ndarray:
        return self._run(ids, None)

    def _decode(self, token: int) -> np.ndarray:
        return self._run([token], self._past)


class HfLM(TorchLM):
    """A Hugging Face folder (the source model, or a merged export)."""

    def __init__(self, path: str | Path):
        from transformers import AutoModelForCausalLM

        p = Path(path)
        if not (p / "config.json").is_file():
            raise RuntimeLoadError(f"{p}: not a Hugging Face model folder (no config.json)")
        super().__init__(AutoModelForCausalLM.from_pretrained(p, dtype="float32"), _hf_tokenizer(p), p)


INT8_WEIGHTS = "model_int8.pt"


def quantize_int8(model):
    """torch dynamic int8 quantization of every nn.Linear (weights int8, activations quantized per batch)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice in favour of torchao
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8)


class Int8LM(TorchLM):
    """An int8 export: config.json + model_int8.pt (the quantized state dict) + tokenizer."""

    def __init__(self, path: str | Path):
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        p = Path(path)
        if not (p / INT8_WEIGHTS).is_file() or not (p / "config.json").is_file():
            raise RuntimeLoadError(f"{p}: not an int8 export (needs config.json and {INT8_WEIGHTS})")
        model = quantize_int8(AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(p)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Packed int8 weights are pickled objects, which weights_only loading refuses; this file is
            # one codehone wrote, so it is trusted like any local checkpoint.
            state = torch.load(p / INT8_WEIGHTS, map_location="cpu", weights_only=False)
        model.load_state_dict(state)
        super().__init__(model, _hf_tokenizer(p), p)


ONNX_FILE = "model.onnx"


class OnnxLM(LM):
    """An ONNX export run by onnxruntime, with the KV cache carried as stacked tensors between steps.

    Inputs: input_ids [batch, seq], past_keys / past_values [layers, batch, kv_heads, past, head_dim]
    (past may be 0 long). Outputs: logits [batch, seq, vocab] and the extended present_keys/values.
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        p = Path(path)
        f = p / ONNX_FILE if p.is_dir() else p
        folder = f.parent
        if not f.is_file() or not (folder / "config.json").is_file():
            raise RuntimeLoadError(f"{p}: not an ONNX export (needs {ONNX_FILE} and config.json)")
        cfg = json.loads((folder / "config.json").read_text())
        self.layers = int(cfg["num_hidden_layers"])
        self.kv_heads = int(cfg.get("num_key_value_heads") or cfg["num_attention_heads"])
        self.head_dim = int(cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"])
        self.n_ctx = int(cfg.get("max_position_embeddings") or 1 << 30)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(f), opts, providers=["CPUExecutionProvider"])
        self.tokenizer = _hf_tokenizer(folder)
        self.eos = eos_ids(folder, self.tokenizer)
        self._k = self._v = None

    def _empty(self) -> np.ndarray:
        return np.zeros((self.layers, 1, self.kv_heads, 0, self.head_dim), np.float32)

    def _run(self, ids: list[int], k: np.ndarray, v: np.ndarray):
        return self.session.run(None, {"input_ids": np.asarray([ids], np.int64), "past_keys": k, "past_values": v})

    def logits(self, input_ids: list[int]) -> np.ndarray:
        return self._run(input_ids, self._empty(), self._empty())[0][0]

    def _prefill(self, ids: list[int]) -> np.ndarray:
        logits, self._k, self._v = self._run(ids, self._empty(), self._empty())
        return logits[0, -1]

    def _decode(self, token: int) -> np.ndarray:
        logits, self._k, self._v = self._run([token], self._k, self._v)
        return logits[0, -1]


def find_gguf(path: str | Path) -> Path:
    p = Path(path)
    if p.is_file() and p.suffix == ".gguf":
        return p
    found = sorted(p.glob("*.gguf")) if p.is_dir() else []
    if len(found) != 1:
        raise RuntimeLoadError(f"{p}: expected one .gguf file, found {len(found)}")
    return found[0]


class GgufLM(LM):
    """A GGUF file run by llama.cpp (llama-cpp-python). Tokenizes with the HF tokenizer saved beside it
    when there is one (the exact training tokenizer), else with llama.cpp's own tokenizer."""

    def __init__(self, path: str | Path, threads: int | None = None, n_ctx: int | None = None):
        try:
            import llama_cpp
        except ImportError:
            raise RuntimeLoadError("the gguf backend needs llama-cpp-python, the [gguf] extra: "
                                   "pip install 'codehone[gguf]'") from None
        self.ll = llama_cpp
        self.file = find_gguf(path)
        self.threads = threads or os.cpu_count() or 1
        self.model = llama_cpp.Llama(str(self.file), n_ctx=n_ctx or 0, n_threads=self.threads,  # 0: trained ctx
                                     n_threads_batch=self.threads, logits_all=False, verbose=False)
        self.n_ctx = min(self.model.n_ctx(), self.model._model.n_ctx_train())  # llama.cpp rounds n_ctx up
        self.metadata = dict(self.model.metadata)
        folder = self.file.parent
        self.tokenizer = _hf_tokenizer(folder) if (folder / "tokenizer_config.json").is_file() else None
        self.eos = eos_ids(folder, self.tokenizer) | {int(self.model.token_eos())}
        self._full = None

    def encode(self, prompt: str) -> list[int]:
        if self.tokenizer is not None:
            return super().encode(prompt)
        return self.model.tokenize(prompt.encode(), add_bos=False, special=True)

    def llama_tokenize(self, prompt: str) -> list[int]:
        """llama.cpp's own tokenization (special tokens parsed), for the parity check."""
        return self.model.tokenize(prompt.encode(), add_bos=False, special=True)

    def _last(self) -> np.ndarray:
        ptr = self.ll.llama_get_logits_ith(self.model._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.model.n_vocab(),)).copy()

    def logits(self, input_ids: list[int]) -> np.ndarray:
        if self._full is None:  # a second context that keeps every position's logits
            self._full = self.ll.Llama(str(self.file), n_ctx=self.n_ctx, n_threads=self.threads,
                                       n_threads_batch=self.threads, logits_all=True, verbose=False)
        self._full.reset()
        self._full.eval(list(input_ids))
        return np.array(self._full.scores[: len(input_ids)], dtype=np.float32)

    def _prefill(self, ids: list[int]) -> np.ndarray:
        self.model.reset()
        self.model.eval(ids)
        return self._last()

    def _decode(self, token: int) -> np.ndarray:
        self.model.eval([token])
        return self._last()

    def stream(self, prompt: str, **kw) -> Iterator[str]:
        if self.tokenizer is not None:
            yield from super().stream(prompt, **kw)
            return
        buf = b""
        for tok in self.generate_ids(self.encode(prompt), **kw):
            buf += self.model.detokenize([tok])
            try:
                piece = buf.decode("utf-8")
            except UnicodeDecodeError:
                continue
            buf = b""
            yield piece

    def close(self) -> None:
        for m in (self.model, self._full):
            if m is not None:
                m.close()
        self._full = None


BACKENDS = ("hf", "int8", "onnx", "gguf")


def detect_backend(path: str | Path) -> str:
    """The format of an export folder: export.json's record, else the files present."""
    p = Path(path)
    if p.is_file() and p.suffix == ".gguf":
        return "gguf"
    meta = p / "export.json"
    if meta.is_file():
        fmt = json.loads(meta.read_text()).get("format")
        return {"merged": "hf"}.get(fmt, fmt)
    if (p / ONNX_FILE).is_file():
        return "onnx"
    if (p / INT8_WEIGHTS).is_file():
        return "int8"
    if list(p.glob("*.gguf")):
        return "gguf"
    return "hf"


def load_runtime(path: str | Path, backend: str | None = None, **kw) -> LM:
    """Load `path` with `backend` ("hf" | "int8" | "onnx" | "gguf"; None: detect from the folder)."""
    backend = backend or detect_backend(path)
    cls = {"hf": HfLM, "int8": Int8LM, "onnx": OnnxLM, "gguf": GgufLM}.get(backend)
    if cls is None:
        raise RuntimeLoadError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not Path(path).exists():
        raise RuntimeLoadError(f"{path}: no such file or folder")
    return cls(path, **kw)
