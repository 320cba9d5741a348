"""The `iterate:` recipe section and the sweep file, validated like every other recipe section.

Why a file of its own: both verbs drive `train` and `eval` rather than adding
settings to them, so their sections hold only what the loop decides (how many
samples, what to keep, when to stop, what to vary) and point at the `train:`
section for everything else. Same rules as config.py: unknown keys and bad
values are one-line errors that name the key.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .config import ConfigError, TrainConfig, apply_overrides, load_train_config, one_line, read_recipe

# train: keys the loops set themselves; a recipe may not override them per round or per trial.
MANAGED_TRAIN_KEYS = ("data", "out", "load_from")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvalSpec(_Strict):
    """How a model is evaluated (the arguments of `codehone eval`)."""

    split: str = "test"
    k: int = Field(1, ge=1, description="pass@k is reported for this k (and pass@1)")
    n: int | None = Field(None, ge=1, description="samples per prompt; None = k")
    limit: int | None = Field(None, ge=1, description="evaluate only the first N prompts")
    temperature: float | None = Field(None, ge=0.0, description="None = greedy for n=1, else eval's default")
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_new_tokens: int = Field(512, ge=1)
    batch_size: int = Field(8, ge=1)
    jobs: int = Field(1, ge=1, description="candidates judged in parallel")

    @model_validator(mode="after")
    def _n(self) -> EvalSpec:
        if self.n is not None and self.n < self.k:
            raise ValueError(f"n ({self.n}) must be at least k ({self.k}) for pass@{self.k}")
        return self


class PlateauConfig(_Strict):
    """Stop when the metric has not beaten its best by more than min_delta for `patience` rounds."""

    patience: int = Field(2, ge=1)
    min_delta: float = Field(0.0, ge=0.0)


def _check_metric(metric: str, k: int) -> str:
    m = re.fullmatch(r"pass@(\d+)", metric)
    if m and int(m.group(1)) not in (1, k):
        raise ValueError(f"metric {metric} is not measured: eval reports pass@1 and pass@{k} (eval.k={k})")
    return metric


class IterateConfig(_Strict):
    """The `iterate:` section: expert iteration (rejection-sampling fine-tuning) around `train:`."""

    model: str | None = Field(None, description="start model (HF folder or train run folder); None = train.out")
    dataset: str | None = Field(None, description="a `codehone build` folder; None = train.data")
    modules: str | None = Field(None, description="reference modules folder (for a judge that needs one); None = eval's default")
    k: int = Field(4, ge=1, description="samples per training prompt each round")
    temperature: float = Field(0.8, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_new_tokens: int = Field(512, ge=1)
    batch_size: int = Field(8, ge=1)
    jobs: int = Field(1, ge=1, description="candidates judged in parallel")
    constrained: bool = Field(False, description="constrained decoding (the target's answer grammar) for the "
                              "round's sampling and its evals")
    train_limit: int | None = Field(None, ge=1, description="training prompts sampled per round; None = all")
    prompts: Literal["random", "first", "shortest"] = Field(
        "random", description="which train_limit prompts: a fresh seeded draw each round, the split's first, "
        "or those with the shortest reference answers (a curriculum for models that pass nothing longer)")
    keep: Literal["all", "best_of_k"] = Field(
        "all", description="all: every passing sample, deduplicated by normalised code per prompt; "
        "best_of_k: one per prompt, the best by `score`")
    score: Literal["shortest"] = Field("shortest", description="best_of_k: the shortest normalised code wins")
    mix_original: float = Field(0.0, ge=0.0, le=1.0,
                                description="fraction of the original train split mixed into each round's data")
    accumulate: bool = Field(False, description="also train on the samples kept in earlier rounds")
    init: Literal["base", "continue"] = Field(
        "continue", description="base: fine-tune the start model each round; continue: the previous round's model")
    train: dict[str, Any] = Field(default_factory=dict,
                                  description="train: settings for the rounds (e.g. max_steps, lr)")
    eval: EvalSpec = EvalSpec()
    metric: str = "pass@1"
    plateau: PlateauConfig = PlateauConfig()
    seed: int = 0

    @field_validator("train")
    @classmethod
    def _train(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in MANAGED_TRAIN_KEYS:
            if key in v:
                raise ValueError(f"{key} is set by iterate for each round")
        return v

    @model_validator(mode="after")
    def _metric(self) -> IterateConfig:
        _check_metric(self.metric, self.eval.k)
        return self


class SweepConfig(_Strict):
    """A sweep file: which `train:` keys to vary, how, within what budget, judged by which metric."""

    method: Literal["grid", "random"] = "grid"
    params: dict[str, list[Any]] = Field(..., description="train keys (--set paths) → values to try")
    trials: int | None = Field(None, ge=1, description="at most this many trials (random: how many to draw)")
    budget_minutes: float | None = Field(None, gt=0.0, description="no new trial starts after this")
    metric: str = "pass@1"
    eval: EvalSpec = EvalSpec()
    dataset: str | None = Field(None, description="the `codehone build` folder evaluated (its eval.split); "
                                "None = train.data (trials train on train.data either way)")
    modules: str | None = Field(None, description="reference modules folder (for a judge that needs one); None = eval's default")
    seed: int = 0

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if not v:
            raise ValueError("at least one parameter to vary is needed")
        for key, values in v.items():
            if not values:
                raise ValueError(f"{key}: an empty list of values")
            if key.removeprefix("train.").split(".")[0] == "out":
                raise ValueError(f"{key} is set by sweep for each trial")
        return v

    @model_validator(mode="after")
    def _metric(self) -> SweepConfig:
        if self.method == "random" and self.trials is None:
            raise ValueError("method random needs trials (how many to draw)")
        _check_metric(self.metric, self.eval.k)
        return self


def as_set(key: str, value: Any) -> str:
    """A `--set` string for a value (JSON is YAML, so lists, strings and numbers round-trip)."""
    return f"{key}={json.dumps(value)}"


def split_sets(sets: list[str], section: str) -> tuple[list[str], list[str]]:
    """(overrides of `train:`/`build:` (absolute), overrides relative to `section`)."""
    absolute, relative = [], []
    for s in sets:
        head = s.partition("=")[0].strip().split(".")[0]
        (absolute if head in ("train", "build") else relative).append(s)
    return absolute, relative


def load_iterate_config(recipe: str | Path, sets: list[str] | None = None) -> tuple[IterateConfig, TrainConfig]:
    """(`iterate:`, `train:`) of a recipe. `--set train.x=..` changes train:, other keys are relative to iterate:."""
    p = Path(recipe)
    absolute, relative = split_sets(list(sets or []), "iterate")
    base = load_train_config(p, absolute)
    data = apply_overrides(read_recipe(p), relative, section="iterate")
    section = data.get("iterate") or {}
    if not isinstance(section, dict):
        raise ConfigError("iterate: must be a mapping of settings")
    try:
        cfg = IterateConfig.model_validate(section)
    except ValidationError as e:
        raise ConfigError(one_line(e, "iterate")) from None
    round_train_cfg(base, cfg.train, out=base.out, load_from=None)  # bad round settings fail before any work
    return cfg, base


def round_train_cfg(base: TrainConfig, overrides: dict[str, Any], *, out: str, load_from: str | None,
                    data: str | None = None, where: str = "iterate.train") -> TrainConfig:
    """`base` with the loop's overrides and its own data/out/load_from, validated (one-line errors)."""
    merged = {**base.model_dump(), **overrides, "out": out, "load_from": load_from}
    if data is not None:
        merged["data"] = data
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**base.model_dump()[key], **value}
    try:
        return TrainConfig.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(one_line(e, where)) from None


def load_sweep_config(recipe: str | Path, sweep: str | Path | None) -> SweepConfig:
    """The sweep file (its top level, or its `sweep:` section), or the recipe's `sweep:` section."""
    if sweep is None:
        data = read_recipe(recipe).get("sweep")
        if data is None:
            raise ConfigError(f"{recipe}: no `sweep:` section; pass --sweep SWEEP.yaml")
    else:
        if not Path(sweep).is_file():
            raise ConfigError(f"{sweep}: no such sweep file")
        data = read_recipe(sweep)
        if "sweep" in data and len(data) == 1:
            data = data["sweep"]
    if not isinstance(data, dict):
        raise ConfigError("sweep: must be a mapping of settings")
    try:
        return SweepConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(one_line(e, "sweep")) from None
