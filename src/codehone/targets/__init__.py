"""The target contract, and the registry: a plain dict from a target's name to its package.

A target is everything about one kind of task (C → WAT, Zig, Rust, ...), in one package
`targets/<name>/`. The stages (mine, build, check, eval, iterate, sweep, serve, mcp,
quickstart) only ever talk to the `Target` object below; they never import a target's
internals, so adding a target is one folder plus one line in `REGISTRY`.

What a new target must supply, in `targets/<name>/__init__.py` as `TARGET = Target(...)`:

  name, answer_lang, answer_name     what the model writes (a fence tag, a human name)
  judge(candidate, *, unit=None, **options) -> Verdict
                                     the verifier; `unit.artifact` (the reference answer) must
                                     always pass it (`codehone check --units`)
  toolchain_version() -> str         every tool version that can change a verdict (cache key)

The judge fills the verdict schema of `targets/verdict.py` (compiled, errors, warnings, run,
passed, failed, timeouts); every rate is computed there from it, never per target.

It may also supply (the defaults are in the dataclass):

  miner: Miner                       `codehone mine` for this target (extract units from files)
  templates: TargetTemplates         prompts for build/train/eval/serve (codehone.templates)
  request_unit(prompt, mode)         serve/mcp: a user's request → (mode, the unit fields it reads)
  regenerate_mode                    suggest_fix: the mode that regenerates an answer from the unit's source
  code_name(code)                    the function an answer defines (mcp finds its unit by that name)
  needs_unit, needs_modules          the judge needs each candidate's unit / the mine modules folder
  runs_tests                         the judge runs a file's tests and takes `run_tests=False`
  runs_native                        the judge runs generated code as host processes (so it needs a real
                                     sandbox: check/eval/iterate/tools refuse without one unless the user
                                     accepts the risk); False for a judge that only runs it in wasm
  batch_by_unit                      check hands one unit's candidates to one worker (warm caches)
  warm_worker()                      loads heavy judge state in a pool worker before the first task
  compile_metric                     another name for eval's compile rate ("assemble_rate" for WAT)
  metric_extras(samples, built)      target-only figures of metrics.json
  tokenizer_extras(samples, tok, units)  figures of metrics.json counted in the model's own tokenizer
  answer_cost(code)                  what iterate's best_of_k minimises among passing answers
                                     (default: the normalised code's length)
  strip_comments(code)               for iterate's dedup of near-identical answers
  canonical(code, reference)         an answer rewritten as the reference would name it (iterate)
  quickstart_recipe                  the recipe file `codehone quickstart` trains with
  metric_notes                       what the compile rate and a pass mean, for reports
  grammar(unit) -> str               a Lark grammar of a well-formed answer (eval --constrained)

Heavy imports (wasmtime, tree-sitter grammars) belong in the functions, not at a package's top:
a rust check must not pay for the c-wat judge, nor carry its threads into a worker.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# name → the package that defines TARGET. The first entry is the default target of every verb.
REGISTRY: dict[str, str] = {
    "c-wat": "codehone.targets.c_wat",
    "rust": "codehone.targets.rust",
    "zig": "codehone.targets.zig",
    "compress": "codehone.targets.compress",
}
DEFAULT = next(iter(REGISTRY))
NAMES = tuple(REGISTRY)


class TargetError(ValueError):
    """An unknown target, or one whose package cannot be loaded; the message is one line."""


@dataclass(frozen=True)
class Miner:
    """How `codehone mine` extracts a target's units from source files.

    `options(...)` builds the target's own options object from the CLI's flags; `options_key`
    lists what in it changes the units (part of the resume key); `new_state(source)` is the
    per-source state a worker keeps between files (e.g. a header index); `mine_file(path,
    source, options, state)` returns a `records.FileResult`; `warm(options)` prepares the
    toolchain once before the workers start (an error line, or None); `extensions` are the
    file endings the walk keeps.
    """

    options: Callable[..., Any]
    options_key: Callable[[Any], list[str]]
    default_corpus: Callable[[], list]
    corpus_description: str
    new_state: Callable[[Any], dict]
    mine_file: Callable[..., Any]
    warm: Callable[[Any], str | None] = lambda _opts: None
    warm_message: str = "preparing the toolchain"
    extensions: tuple[str, ...] = (".c", ".h")  # the files `mine` walks


@dataclass(frozen=True)
class Target:
    """One target: what the stages may ask of it (the module docstring lists every field)."""

    name: str
    answer_lang: str
    answer_name: str
    judge: Callable[..., Any]
    toolchain_version: Callable[[], str]
    miner: Miner | None = None
    templates: Any = None  # codehone.templates.TargetTemplates
    request_unit: Callable[[str, str | None], tuple[str, dict]] | None = None
    regenerate_mode: str | None = None
    code_name: Callable[[str], str | None] = lambda _code: None
    needs_unit: bool = False
    needs_modules: bool = False
    runs_tests: bool = True
    runs_native: bool = True
    batch_by_unit: bool = False
    warm_worker: Callable[[], None] = lambda: None
    compile_metric: str = "compile_rate"
    compile_label: str = "compile rate"
    metric_extras: Callable[[list, list], dict] = lambda _samples, _built: {}
    tokenizer_extras: Callable[..., dict] = lambda _samples, _tokenizer, units=None: {}
    answer_cost: Callable[[str], float] | None = None
    strip_comments: Callable[[str], str] = lambda code: code
    canonical: Callable[[str, str], str] = lambda code, _reference: code
    quickstart_recipe: str | None = None
    grammar: Callable[[dict | None], str] | None = None
    metric_notes: str = "compiles = the compiler accepts it; pass@1/pass@k = the judge passes it."
    description: str = ""  # one line for listings
    unavailable: Callable[[], str | None] = lambda: None  # why the judge cannot run here, or None


_LOADED: dict[str, Target] = {}


def get(name: str) -> Target:
    """The target called `name`; a `TargetError` naming the available ones when there is none."""
    if name in _LOADED:
        return _LOADED[name]
    path = REGISTRY.get(name)
    if path is None:
        raise TargetError(f"unknown target {name!r}; available: {', '.join(NAMES)}")
    try:
        mod = importlib.import_module(path)
    except Exception as e:  # noqa: BLE001 - a broken target package must not take the others down
        raise TargetError(f"target {name} failed to load ({path}): {type(e).__name__}: {e}") from None
    tgt = getattr(mod, "TARGET", None)
    if not isinstance(tgt, Target):
        raise TargetError(f"{path} defines no TARGET")
    _LOADED[name] = tgt
    return tgt


def available(name: str) -> str | None:
    """None when `name` can be judged here, else the reason it cannot."""
    try:
        return get(name).unavailable()
    except TargetError as e:
        return str(e)


def with_miner() -> list[str]:
    """The targets `codehone mine` can mine for."""
    out = []
    for n in NAMES:
        try:
            if get(n).miner is not None:
                out.append(n)
        except TargetError:
            continue
    return out


def recipe_path(name: str) -> Path | None:
    """The quickstart recipe of a target: the installed copy, else the repository's `recipes/`."""
    fname = get(name).quickstart_recipe
    if not fname:
        return None
    here = Path(__file__).resolve().parents[1]
    for cand in (here / "recipes" / fname, here.parents[1] / "recipes" / fname):
        if cand.is_file():
            return cand
    return None
