"""Recipes: YAML files validated by pydantic, with `--set key=value` overrides.

Why pydantic and `extra="forbid"`: a typo in a recipe (`treshold: 0.8`) must be
an error that names the key, not a silently ignored setting that makes a run
quietly different from what its author meant. A recipe file holds one section
per verb (`build:`, later `train:`, `eval:` ...); each verb validates only its
own section, so verbs can grow their sections independently.

Overrides use dotted keys relative to the verb's section (`dedup.threshold=0.8`)
or the whole recipe (`build.dedup.threshold=0.8`); values are parsed as YAML, so
`0.8`, `true`, `[chat, alpaca]` and `null` mean what they look like.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .targets import DEFAULT as DEFAULT_TARGET
from .templates import FORMATS, TemplateError, templates_for


class ConfigError(ValueError):
    """An invalid recipe or override, with a one-line message that names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


# ---------------------------------------------------------------- build


class ExactDedupConfig(_Strict):
    enabled: bool = True


class NearDedupConfig(_Strict):
    """MinHash LSH settings; the defaults are The Stack's (5-gram shingles, 256 permutations, Jaccard 0.7)."""

    enabled: bool = True
    shingle: int = Field(5, ge=1, description="tokens per shingle")
    num_perm: int = Field(256, ge=16, le=1024)
    threshold: float = Field(0.7, gt=0.0, lt=1.0)
    verify: bool = Field(
        True,
        description="confirm each LSH candidate pair by its MinHash Jaccard estimate (fewer false positives)",
    )
    min_tokens: int = Field(
        20,
        ge=1,
        description="shorter units cluster only with copies equal up to renaming (Jaccard is noise there)",
    )
    seed: int = 1

    @model_validator(mode="after")
    def _lsh_params(self) -> NearDedupConfig:
        from datasketch import MinHashLSH

        try:  # datasketch picks bands x rows from these two; some pairs have no valid choice
            MinHashLSH(threshold=self.threshold, num_perm=self.num_perm)
        except ValueError as e:
            raise ValueError(f"threshold {self.threshold} with num_perm {self.num_perm}: {e}") from None
        return self


class DedupConfig(_Strict):
    exact: ExactDedupConfig = ExactDedupConfig()
    near: NearDedupConfig = NearDedupConfig()


class FilterConfig(_Strict):
    """Which units are dropped, each under its own reason. Nothing is truncated: too long means dropped."""

    tokenizer: str | None = Field(
        None, description="model folder (or tokenizer.json) whose tokenizer measures lengths; None = estimate"
    )
    max_prompt_tokens: int | None = Field(1024, ge=1)
    max_completion_tokens: int | None = Field(1024, ge=1)
    max_total_tokens: int | None = Field(2048, ge=1)
    min_completion_tokens: int = Field(1, ge=0)
    licenses: list[str] | None = Field(
        None,
        description="allow-list of SPDX ids; 'permissive' stands for every permissive license; None = all",
    )
    generated: bool = Field(True, description="drop functions from generated files")
    macro_only: bool = Field(True, description="drop functions whose body is only macro invocations")


class DecontamConfig(_Strict):
    """Drop training units whose normalised code overlaps evaluation code."""

    enabled: bool = True
    eval_units: list[str] = Field(
        default_factory=list, description="units.jsonl files held out for evaluation"
    )
    benchmarks: list[str] = Field(
        default_factory=list, description="benchmark files: JSONL (any string fields) or plain source text"
    )
    against_own_eval_splits: bool = Field(
        True, description="also decontaminate train against this build's val/test"
    )
    ngram: int = Field(10, ge=2)
    overlap: float = Field(0.5, gt=0.0, le=1.0, description="fraction of a unit's n-grams seen in eval code")


class SplitConfig(_Strict):
    ratios: dict[str, float] = Field(default_factory=lambda: {"train": 0.70, "val": 0.15, "test": 0.15})
    group_by: Literal["auto", "repo", "file"] = "auto"
    min_groups_per_split: int = Field(
        10,
        ge=1,
        description="auto: group by repository only if the smallest split can expect this many repos",
    )
    salt: str = Field("codehone-split-v1", description="changing it reshuffles every group")

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("at least one split is needed")
        if any(r < 0 for r in v.values()):
            raise ValueError("ratios must be >= 0")
        total = sum(v.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"ratios must sum to 1, not {total:g}")
        if "train" not in v:
            raise ValueError("a 'train' split is required")
        return v


class OutputConfig(_Strict):
    formats: list[str] = Field(default_factory=lambda: ["chat"], description=f"any of {', '.join(FORMATS)}")
    modes: list[str] | None = Field(None, description="prompt modes; None = every mode of the target")
    parquet: bool = True
    plots: bool = True

    @field_validator("formats")
    @classmethod
    def _formats(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one format is needed")
        bad = [f for f in v if f not in FORMATS]
        if bad:
            raise ValueError(f"unknown format {bad[0]!r}; available: {', '.join(FORMATS)}")
        return list(dict.fromkeys(v))


class BuildConfig(_Strict):
    """The `build:` section of a recipe."""

    target: str = DEFAULT_TARGET
    dedup: DedupConfig = DedupConfig()
    filters: FilterConfig = FilterConfig()
    decontam: DecontamConfig = DecontamConfig()
    split: SplitConfig = SplitConfig()
    output: OutputConfig = OutputConfig()

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        try:
            templates_for(v)
        except TemplateError as e:
            raise ValueError(str(e)) from None
        return v

    @model_validator(mode="after")
    def _modes(self) -> BuildConfig:
        modes = templates_for(self.target).modes
        for m in self.output.modes or []:
            if m not in modes:
                raise ValueError(f"unknown mode {m!r} for {self.target}; available: {', '.join(modes)}")
        return self


# ---------------------------------------------------------------- loading


def read_recipe(path: str | Path | None) -> dict[str, Any]:
    """The recipe file as a dict ({} when no file is given)."""
    if path is None:
        return {}
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{p}: cannot read recipe ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a recipe must be a mapping of sections, not {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], sets: list[str], section: str | None = None) -> dict[str, Any]:
    """Apply `key.sub=value` overrides (values parsed as YAML) to a nested dict, in order.

    With `section`, keys not starting with `section.` are taken relative to it.
    """
    out = _deepcopy(data)
    for item in sets:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parts = key.split(".")
        if section and parts[0] != section:
            parts = [section, *parts]
        node = out
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(parts[: i + 1])} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d


def one_line(e: ValidationError, section: str) -> str:
    """The first validation problem as `section.key.path: message` (pydantic's own text is multi-line)."""
    errs = e.errors()
    first = errs[0]
    loc = ".".join(str(x) for x in (section, *first["loc"]))
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown setting"
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{loc}: {msg}{more}"


def load_build_config(recipe: str | Path | None = None, sets: list[str] | None = None) -> BuildConfig:
    """The validated `build:` section of a recipe, after overrides. Raises ConfigError (one line)."""
    data = apply_overrides(read_recipe(recipe), list(sets or []), section="build")
    stray = sorted(set(data) & (set(BuildConfig.model_fields) - {"target"}))
    if stray:
        raise ConfigError(f"{stray[0]}: build settings belong under `build:` in a recipe")
    section = data.get("build") or {}
    if not isinstance(section, dict):
        raise ConfigError("build: must be a mapping of settings")
    try:
        return BuildConfig.model_validate(section)
    except ValidationError as e:
        raise ConfigError(one_line(e, "build")) from None


# ---------------------------------------------------------------- train


class TokenizerConfig(_Strict):
    """Scratch mode only: a byte-level BPE trained on the training split (so no byte is ever unknown)."""

    vocab_size: int | None = Field(None, ge=300, description="None = the model size's default")
    min_frequency: int = Field(2, ge=1)


class ModelConfig(_Strict):
    """Scratch mode: a Llama-style model of a named size; any field given here overrides the size's value."""

    size: Literal["tiny", "small", "base"] = "tiny"
    hidden_size: int | None = Field(None, ge=8)
    num_layers: int | None = Field(None, ge=1)
    num_heads: int | None = Field(None, ge=1)
    intermediate_size: int | None = Field(None, ge=8)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _heads(self) -> ModelConfig:
        if self.hidden_size and self.num_heads and self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        return self


class LoraConfig(_Strict):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | str = Field(
        "all-linear", description="module names, or 'all-linear' (peft picks every linear layer but the head)"
    )


class TrainConfig(_Strict):
    """The `train:` section of a recipe. Paths are relative to the working directory."""

    mode: Literal["scratch", "lora", "qlora", "full"] = "scratch"
    data: str = Field(..., description="a `codehone build` output folder (train.jsonl, val.jsonl, chat format)")
    out: str = Field(..., description="run folder: checkpoints, logs, plots and the final model")
    base_model: str | None = Field(None, description="lora/qlora/full: a local Hugging Face causal-LM folder")
    load_from: str | None = Field(
        None, description="phases: a previous run folder (or its model/adapter folder) to start from"
    )
    tokenizer: TokenizerConfig = TokenizerConfig()
    model: ModelConfig = ModelConfig()
    lora: LoraConfig = LoraConfig()
    seq_len: int = Field(1024, ge=8, description="tokens per packed row; longer examples are dropped and counted")
    packing: bool = True
    batch_size: int = Field(8, ge=1, description="rows per micro-batch")
    grad_accum: int = Field(1, ge=1)
    max_steps: int = Field(200, ge=1, description="optimizer steps")
    max_minutes: float | None = Field(
        None, gt=0.0, description="wall-clock cap: stop (eval, checkpoint, save) at the first step past it"
    )
    lr: float = Field(3e-3, gt=0.0)
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0, description="cosine decays to lr * this")
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.1, ge=0.0)
    grad_clip: float | None = Field(1.0, gt=0.0)
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="auto = bf16 on a GPU, fp32 on a CPU (measured faster there); bf16 forces autocast"
    )
    compile: bool = Field(False, description="torch.compile the layers' MLP and norms (slow start, ~1.08x steps)")
    gradient_checkpointing: bool = False
    eval_every: int = Field(50, ge=1)
    eval_max_batches: int | None = Field(None, ge=1, description="None = the whole val split")
    early_stopping_patience: int | None = Field(None, ge=1, description="evals without a better val loss")
    samples: int = Field(2, ge=0, description="sample generations printed and logged at each eval")
    sample_max_new_tokens: int = Field(96, ge=1)
    save_every: int = Field(100, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(10, ge=1)
    max_examples: int | None = Field(None, ge=1, description="use only the first N training examples")
    merge: bool = Field(False, description="lora: also write a merged full model")
    seed: int = 0

    @model_validator(mode="after")
    def _mode(self) -> TrainConfig:
        if self.mode != "scratch" and not self.base_model and not self.load_from:
            raise ValueError(f"mode {self.mode} needs base_model (a local Hugging Face model folder)")
        return self


def load_train_config(recipe: str | Path, sets: list[str] | None = None) -> TrainConfig:
    """The validated `train:` section of a recipe, after overrides. Raises ConfigError (one line)."""
    p = Path(recipe)
    if not p.is_file():
        raise ConfigError(f"{p}: no such recipe file")
    data = apply_overrides(read_recipe(p), list(sets or []), section="train")
    section = data.get("train")
    if section is None:
        raise ConfigError(f"{p}: the recipe has no `train:` section")
    if not isinstance(section, dict):
        raise ConfigError("train: must be a mapping of settings")
    try:
        return TrainConfig.model_validate(section)
    except ValidationError as e:
        raise ConfigError(one_line(e, "train")) from None
