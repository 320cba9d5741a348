"""The `c-wat` target: C functions → WebAssembly text (WAT), judged by differential execution.

Everything about it lives in this package:
  mine.py                 compile each C file once in context, slice one `(func ...)` per function
  functions.py            tree-sitter C: functions, doc comments, signatures
  dwarf.py                parameter types and struct layouts from the build's DWARF
  wat.py, wat_prune.py    WAT slicing, and the module pruned to what a function needs
  templates.py            the translate / implement prompts (with the wasm type)
  grammar.py              the answer grammar for constrained decoding (llguidance, Lark)
  judge.py                assemble, validate, splice into the reference, run both in wasmtime
  explore.py, inputs.py,  the differential inputs: arenas laid out from the C types, explored
  layout.py               until the reference's branches are covered
  wasm_run.py             one limited wasmtime store per run (fuel, memory, epoch deadline)
  memory_diff.py          reference outcomes kept as a difference from the start image
  scratch.py              a RAM-backed folder for the runs' stdout/stderr files

Nothing here imports wasmtime at import time: a rust or zig check must not pay for it.
"""

from __future__ import annotations

import functools
import json
import re

from .. import Miner, Target
from .templates import C_WAT

NAME = "c-wat"


def _load_judge():
    from . import judge as judge_module

    fn = getattr(judge_module, "judge", None)
    if not callable(fn):
        raise RuntimeError("codehone.targets.c_wat.judge has no `judge` function")
    return fn


def _judge(candidate: str, *, unit: dict | None = None, **kw):
    """`judge(candidate, *, unit, modules_dir, ...)` from judge.py, imported on first use."""
    return _load_judge()(candidate, unit=unit, **kw)


def _unavailable() -> str | None:
    try:
        _load_judge()
    except Exception as e:  # noqa: BLE001 - any import failure makes the judge unavailable, with the reason
        return f"the c-wat judge failed to load: {type(e).__name__}: {e}"
    return None


def _warm_worker() -> None:
    """wasmtime and its engine, ~0.3 s a worker, before the first task."""
    from . import wasm_run

    _load_judge()
    wasm_run.engine()


def toolchain_version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as pkg_version

    from ...toolchains import wabt, zig

    try:
        wt = pkg_version("wasmtime")
    except PackageNotFoundError:  # pragma: no cover
        wt = "?"
    return f"zig {zig.version()} + {wabt.version()} + wasmtime {wt}"


_BLOCK_COMMENT = re.compile(r"\(;.*?;\)", re.S)
_LINE_COMMENT = re.compile(r";;[^\n]*")


def strip_comments(code: str) -> str:
    """WAT without its `;;` and `(; ;)` comments."""
    return _LINE_COMMENT.sub(" ", _BLOCK_COMMENT.sub(" ", code))


_FUNC = re.compile(r"^\s*\(func\s+\$([^\s()]+)")
_ANY_FUNC = re.compile(r"\(func\s+\$([^\s()]+)")


def code_name(code: str) -> str | None:
    """The name of the first `(func $name ...)` in an answer."""
    m = _ANY_FUNC.search(code or "")
    return m.group(1) if m else None


def with_reference_name(code: str, reference: str) -> str:
    """WAT code with its function (and calls to itself) named as in the reference answer.

    Why: the judge splices a candidate into the module by position, so a passing answer may
    carry another function's name (`$fp_environ` for `fp_barrierf`); kept as it is, it would teach
    the model wrong names. Code that is not a named WAT function is returned unchanged.
    """
    ref, got = _FUNC.match(reference or ""), _FUNC.match(code or "")
    if not ref or not got or got.group(1) == ref.group(1):
        return code
    return re.sub(rf"\${re.escape(got.group(1))}(?=[\s()]|$)", lambda _m: "$" + ref.group(1), code)


def request_mode(prompt: str) -> str:
    """translate when the prompt holds a C function body, else implement (a signature, then its doc)."""
    return "translate" if "{" in prompt else "implement"


@functools.lru_cache(maxsize=1024)
def type_of_c(code: str) -> str | None:
    """The wasm type clang gives a C function (its source, or a bare signature), or None.

    A bare signature is compiled with a body that never returns, so the type comes from the
    compiler exactly as it does for a mined unit, not from a table of C types. Cached: a compile
    costs 0.2-0.9 s, and serve and mcp see the same request again (suggest_fix's attempts).
    """
    import tempfile
    from pathlib import Path

    from ...sources import Source
    from .mine import MineOptions, mine_file
    from .templates import wasm_type

    text = code.strip()
    if "{" not in text:
        text = f"{text.rstrip(';')} {{ __builtin_unreachable(); }}"
    try:
        with tempfile.TemporaryDirectory(prefix="codehone-type-") as d:
            f = Path(d) / "request.c"
            f.write_text(text + "\n", encoding="utf-8")
            res = mine_file(f, Source(root=Path(d), name="request"), MineOptions(timeout_s=20.0))
    except Exception:  # noqa: BLE001 - no type is a prompt without the type line, never a failed request
        return None
    return wasm_type(res.units[0]["artifact"]) if len(res.units) == 1 else None


def request_unit(prompt: str, mode: str | None) -> tuple[str, dict]:
    """A serve/mcp request → (mode, the unit fields that mode's template reads), with the wasm type
    compiled from the C so that the prompt reads as the training prompts do."""
    mode = mode or request_mode(prompt)
    if mode == "translate":
        return mode, {"source": prompt, "meta": {"wasm_type": type_of_c(prompt)}}
    if mode == "implement":
        sig, _, doc = prompt.strip().partition("\n")
        sig = sig.removeprefix("Implement:").strip()
        return mode, {"signature": sig, "doc": doc.strip(), "meta": {"wasm_type": type_of_c(sig)}}
    raise ValueError(f"unknown mode {mode!r} for c-wat; available: translate, implement")


def _grammar(unit: dict | None) -> str:
    from .grammar import for_unit

    return for_unit(unit)


# ---------------------------------------------------------------- mine


def _options(opt_level: str = "-O2", timeout_s: float = 60.0, include_dirs=(), defines=(), memory_mb: int = 2048):
    from .mine import MineOptions

    return MineOptions(opt_level=opt_level, timeout_s=timeout_s, extra_include_dirs=list(include_dirs),
                       defines=list(defines), memory_mb=memory_mb)


def _options_key(opts) -> list[str]:
    return [opts.opt_level, json.dumps(opts.defines), json.dumps(opts.extra_include_dirs)]


def _new_state(src) -> dict:
    """Built once per source in the parent, from the tree alone, and handed read-only to every worker."""
    from .mine import HeaderIndex

    index = HeaderIndex(src.root)
    index.include_dirs()  # computed here, once, not per worker
    return {"index": index}


def _mine_file(path, src, opts, state):
    from .mine import mine_file

    return mine_file(path, src, opts, state["index"])


def _warm(opts) -> str | None:
    from .mine import warm_toolchain

    err = warm_toolchain(opts)
    return f"the zig toolchain cannot build for wasm32-wasi: {err}" if err else None


def _default_corpus():
    from .mine import default_corpus

    return default_corpus()


TARGET = Target(
    name=NAME,
    answer_lang="wat",
    answer_name="WebAssembly text (WAT)",
    judge=_judge,
    toolchain_version=toolchain_version,
    miner=Miner(
        options=_options,
        options_key=_options_key,
        default_corpus=_default_corpus,
        corpus_description="zig's wasi-libc",
        new_state=_new_state,
        mine_file=_mine_file,
        warm=_warm,
        warm_message="preparing the toolchain (builds wasi libc into the zig cache once, ~30 s)",
    ),
    templates=C_WAT,
    request_unit=request_unit,
    regenerate_mode="translate",
    code_name=code_name,
    needs_unit=True,
    needs_modules=True,
    runs_tests=False,
    runs_native=False,  # generated WAT runs in wasmtime only: no host process executes it
    batch_by_unit=True,
    warm_worker=_warm_worker,
    compile_metric="assemble_rate",
    compile_label="assemble rate",
    strip_comments=strip_comments,
    canonical=with_reference_name,
    quickstart_recipe="c-wat-tiny-scratch.yaml",
    grammar=_grammar,
    metric_notes="assembles = the WAT assembles and validates spliced into the reference module; pass@1/pass@k = "
                 "differential execution against the reference in wasmtime agrees on every generated input.",
    unavailable=_unavailable,
    description="C functions → WebAssembly text, judged by differential execution in wasmtime",
)
