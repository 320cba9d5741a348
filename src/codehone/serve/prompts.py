"""Target-aware chat messages for the MCP tools and the terminal chat.

c-wat requests reuse the dataset's own templates (codehone/templates.py), so a
model trained by codehone reads at serve time the very prompt it learned from:
C source → the `translate` mode, a signature (+ doc) → `implement`. Targets that
have no dataset templates yet (zig, rust) get a short system line naming the
language; a model fine-tuned on them through another layout should be served
with /v1/chat/completions and its own messages.

Every function here builds a fresh message list from its arguments alone: no
history is ever carried from one tool call into the next.
"""

from __future__ import annotations

import re

from ..templates import TEMPLATES, render_prompt
from . import ServeError

TARGETS = ("c-wat", "zig", "rust")
LANG = {"c-wat": "wat", "zig": "zig", "rust": "rust"}
_NAMES = {"c-wat": "WebAssembly text (WAT)", "zig": "Zig", "rust": "Rust"}
_FENCE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\n(.*?)```", re.S)


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise ServeError(f"unknown target {target!r}; available: {', '.join(TARGETS)}")
    return target


def _system(target: str) -> str:
    if target in TEMPLATES:
        return TEMPLATES[target].system({})
    return f"You write {_NAMES[target]} code. Answer with the code only, in one fenced code block."


def c_wat_mode(prompt: str) -> str:
    """translate when the prompt holds a C function body, else implement (a signature, then its doc)."""
    return "translate" if "{" in prompt else "implement"


def generate_messages(target: str, prompt: str, mode: str | None = None) -> list[dict]:
    """The messages for a `generate` request on `target`."""
    check_target(target)
    if target == "c-wat":
        mode = mode or c_wat_mode(prompt)
        if mode == "translate":
            unit = {"source": prompt}
        elif mode == "implement":
            sig, _, doc = prompt.strip().partition("\n")
            unit = {"signature": sig.removeprefix("Implement:").strip(), "doc": doc.strip()}
        else:
            raise ServeError(f"unknown mode {mode!r} for c-wat; available: translate, implement")
        system, user = render_prompt("c-wat", mode, unit)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]
    if mode:
        raise ServeError(f"target {target} has no prompt modes")
    return [{"role": "system", "content": _system(target)}, {"role": "user", "content": prompt}]


def fix_messages(target: str, code: str, error: str) -> list[dict]:
    """Ask for a corrected version of `code`, with the judge's error in the prompt."""
    check_target(target)
    lang = LANG[target]
    user = (f"Fix this {_NAMES[target]} code so that it passes the {target} judge.\n\n"
            f"```{lang}\n{code.strip()}\n```\n\nThe judge reported:\n{error.strip()}\n\n"
            "Answer with the corrected code only.")
    return [{"role": "system", "content": _system(target)}, {"role": "user", "content": user}]


def extract_code(text: str) -> str:
    """The first fenced block of a reply, else the reply itself (stripped)."""
    m = _FENCE.search(text)
    return (m.group(1) if m else text).strip()
