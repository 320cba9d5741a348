"""Target-aware chat messages for the MCP tools and the terminal chat.

Requests for a target with dataset templates reuse them (the target's
`templates` and `request_unit`), so a model trained by codehone reads at serve
time the very prompt it learned from. Targets that have no dataset templates
yet get a short system line naming the language; a model fine-tuned on them
through another layout should be served with /v1/chat/completions and its own
messages.

Every function here builds a fresh message list from its arguments alone: no
history is ever carried from one tool call into the next.
"""

from __future__ import annotations

import re

from ..targets import NAMES, TargetError, get
from ..templates import render_prompt
from . import ServeError

TARGETS = NAMES
_FENCE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\n(.*?)```", re.S)


def check_target(target: str) -> str:
    try:
        get(target)
    except TargetError as e:
        raise ServeError(str(e)) from None
    return target


def _system(target: str) -> str:
    t = get(target)
    if t.templates is not None:
        return t.templates.system({})
    return f"You write {t.answer_name} code. Answer with the code only, in one fenced code block."


def generate_messages(target: str, prompt: str, mode: str | None = None) -> list[dict]:
    """The messages for a `generate` request on `target`."""
    check_target(target)
    t = get(target)
    if t.templates is not None and t.request_unit is not None:
        try:
            mode, unit = t.request_unit(prompt, mode)
        except ValueError as e:
            raise ServeError(str(e)) from None
        system, user = render_prompt(target, mode, unit)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]
    if mode:
        raise ServeError(f"target {target} has no prompt modes")
    return [{"role": "system", "content": _system(target)}, {"role": "user", "content": prompt}]


def fix_messages(target: str, code: str, error: str) -> list[dict]:
    """Ask for a corrected version of `code`, with the judge's error in the prompt."""
    check_target(target)
    t = get(target)
    lang = t.answer_lang
    user = (f"Fix this {t.answer_name} code so that it passes the {target} judge.\n\n"
            f"```{lang}\n{code.strip()}\n```\n\nThe judge reported:\n{error.strip()}\n\n"
            "Answer with the corrected code only.")
    return [{"role": "system", "content": _system(target)}, {"role": "user", "content": user}]


def extract_code(text: str) -> str:
    """The first fenced block of a reply, else the reply itself (stripped)."""
    m = _FENCE.search(text)
    return (m.group(1) if m else text).strip()
