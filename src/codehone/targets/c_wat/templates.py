"""The c-wat prompts: translate (C source → WAT) and implement (signature + doc → WAT).

The response is the function's single `(func ...)` form alone: no module, no fences, no
prose, so a completion is exactly what the judge splices into the reference module.
Rendering (chat, alpaca, prompt/completion, text) is `codehone.templates`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...templates import Mode, TargetTemplates


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
            instruction=lambda u: "Translate this C function to WebAssembly text (WAT).",
            input=lambda u: f"```c\n{u['source'].strip()}\n```",
            description="the C function's source",
        ),
        # The signature stays even when there is a doc comment: the WAT names the
        # function and types its parameters, and the judge splices it in by name.
        "implement": Mode(
            name="implement",
            instruction=lambda u: f"Implement: {' '.join(u['signature'].split())}",
            input=lambda u: (u.get("doc") or "").strip(),
            description="`Implement: <signature>`, then the doc comment when there is one",
        ),
    },
    response=lambda u: u["artifact"].strip(),
    response_description="the function's (func ...) WAT only",
)
