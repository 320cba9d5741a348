"""The c-wat prompts: translate (C source → WAT) and implement (signature + doc → WAT).

The response is the function's single `(func ...)` form alone: no module, no fences, no
prose, so a completion is exactly what the judge splices into the reference module.
Rendering (chat, alpaca, prompt/completion, text) is `codehone.templates`'s job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ...templates import Mode, TargetTemplates

_HEADER = re.compile(r"^\s*\(func\s+\$[^\s()]+((?:\s*\((?:type|param|result)\b[^()]*\))*)")
_PART = re.compile(r"\((param|result)\b([^()]*)\)")


def wasm_type(artifact: str) -> str | None:
    """The function's wasm type as its header spells it: "(param i32 i32) (result i32)".

    Why in the prompt: 92 of 160 failing samples once had a wrong `(param ...)` list. The
    type is fixed by the C ABI (clang's lowering of the signature), so the model should copy
    it, not guess it. Named params (`(param $x i32)`) are reduced to their types.
    """
    m = _HEADER.match(artifact or "")
    if not m:
        return None
    params: list[str] = []
    results: list[str] = []
    for kind, body in _PART.findall(m.group(1)):
        types = [t for t in body.split() if not t.startswith("$")]
        (params if kind == "param" else results).extend(types)
    parts = ([f"(param {' '.join(params)})"] if params else []) + ([f"(result {' '.join(results)})"] if results else [])
    return " ".join(parts) or "(no params, no result)"


def _type_line(u: Mapping[str, Any]) -> str:
    """"\nType: ..." from the unit's recorded type, else its artifact's header; "" when unknown."""
    t = (u.get("meta") or {}).get("wasm_type") or wasm_type(u.get("artifact") or "")
    return f"\nType: {t}" if t else ""


def _c_wat_system(u: Mapping[str, Any]) -> str:
    """The optimisation level is part of the task: -O0 and -O2 WAT differ a lot. -O2 (mine's default)
    when the unit does not say, e.g. at inference from a bare signature."""
    opt = ((u.get("meta") or {}).get("opt") or "-O2").strip()
    return (
        "You are a C compiler backend. You write the WebAssembly text format (WAT) that clang produces "
        f"for a C function compiled for wasm32-wasi at {opt}. Answer with the function's single (func ...) "
        "form and nothing else."
    )


C_WAT = TargetTemplates(
    target="c-wat",
    system=_c_wat_system,
    modes={
        "translate": Mode(
            name="translate",
            instruction=lambda u: "Translate this C function to WebAssembly text (WAT)." + _type_line(u),
            input=lambda u: f"```c\n{u['source'].strip()}\n```",
            description="the C function's source",
        ),
        # The signature stays even when there is a doc comment: the WAT names the
        # function and types its parameters, and the judge splices it in by name.
        "implement": Mode(
            name="implement",
            instruction=lambda u: f"Implement: {' '.join(u['signature'].split())}" + _type_line(u),
            input=lambda u: (u.get("doc") or "").strip(),
            description="`Implement: <signature>`, then the doc comment when there is one",
        ),
    },
    response=lambda u: u["artifact"].strip(),
    response_description="the function's (func ...) WAT only",
)
