"""Prompt templates: one source of truth per target, for build, train, eval and serve alike.

Why one module: the Zig system this replaces trained on one prompt layout and
served another, so the model never saw at inference the text it learned from.
Every stage that turns a unit (or a user's request) into model text calls
`render` / `render_prompt` here, and every file format is derived from the same
parts by `as_format`, so the wording cannot drift between stages.

A mode is an (instruction, input) pair. The chat `user` message is the
instruction, then the input after a blank line; alpaca keeps the two apart;
prompt/completion and plain text use `PLAIN_LAYOUT`. The response (`assistant`)
is the target artifact alone (no fences, no prose), so a completion is exactly
what the judge checks. Each target defines its own `TargetTemplates` in its
package (`targets/<name>/templates.py`); this module only renders them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

FORMATS = ("chat", "prompt_completion", "alpaca", "text")

# The layout for formats without roles. The response follows the last line directly.
PLAIN_LAYOUT = "{system}\n\n### Instruction:\n{instruction}\n\n{input_block}### Response:\n"


@dataclass(frozen=True)
class Mode:
    """One way of asking for the artifact: `instruction(unit)` and `input(unit)` (may be "")."""

    name: str
    instruction: Callable[[Mapping[str, Any]], str]
    input: Callable[[Mapping[str, Any]], str]
    description: str


@dataclass(frozen=True)
class TargetTemplates:
    """A target's templates. `system(unit)` may read the unit (e.g. its optimisation level)."""

    target: str
    system: Callable[[Mapping[str, Any]], str]
    modes: dict[str, Mode]
    response: Callable[[Mapping[str, Any]], str]
    response_description: str


@dataclass(frozen=True)
class Parts:
    """A rendered example: what every format is made from."""

    system: str
    instruction: str
    input: str
    assistant: str | None

    @property
    def user(self) -> str:
        return f"{self.instruction}\n\n{self.input}" if self.input else self.instruction


# ---------------------------------------------------------------- API


class TemplateError(ValueError):
    """Unknown target, mode or format."""


def templates_for(target: str) -> TargetTemplates:
    from .targets import NAMES, TargetError, get

    try:
        t = get(target).templates
    except TargetError as e:
        raise TemplateError(str(e)) from None
    if t is None:
        have = [n for n in NAMES if _has_templates(n)]
        raise TemplateError(f"target {target!r} has no prompt templates; available: {', '.join(sorted(have))}")
    return t


def _has_templates(name: str) -> bool:
    from .targets import TargetError, get

    try:
        return get(name).templates is not None
    except TargetError:
        return False


def modes(target: str) -> list[str]:
    return list(templates_for(target).modes)


def _as_mapping(unit: Any) -> Mapping[str, Any]:
    return dataclasses.asdict(unit) if dataclasses.is_dataclass(unit) else unit


def render_parts(target: str, mode: str, unit: Any, with_response: bool = True) -> Parts:
    t = templates_for(target)
    m = t.modes.get(mode)
    if m is None:
        raise TemplateError(f"unknown mode {mode!r} for {target}; available: {', '.join(t.modes)}")
    u = _as_mapping(unit)
    return Parts(
        system=t.system(u),
        instruction=m.instruction(u),
        input=m.input(u),
        assistant=t.response(u) if with_response else None,
    )


def render(target: str, mode: str, unit: Any) -> tuple[str, str, str]:
    """(system, user, assistant) for one unit: the chat triple every stage shares."""
    p = render_parts(target, mode, unit)
    return p.system, p.user, p.assistant or ""


def render_prompt(target: str, mode: str, unit: Any) -> tuple[str, str]:
    """(system, user) for inference: `unit` needs only the fields the mode reads (e.g. signature, doc)."""
    p = render_parts(target, mode, unit, with_response=False)
    return p.system, p.user


def plain_prompt(parts: Parts) -> str:
    """The prompt text of the role-less formats (prompt/completion, text)."""
    block = f"### Input:\n{parts.input}\n\n" if parts.input else ""
    return PLAIN_LAYOUT.format(system=parts.system, instruction=parts.instruction, input_block=block)


def as_format(fmt: str, parts: Parts) -> dict[str, Any]:
    """The fields of one example in a file format (without id/unit_id/split/mode)."""
    a = parts.assistant or ""
    if fmt == "chat":
        return {
            "messages": [
                {"role": "system", "content": parts.system},
                {"role": "user", "content": parts.user},
                {"role": "assistant", "content": a},
            ]
        }
    if fmt == "prompt_completion":
        return {"prompt": plain_prompt(parts), "completion": a}
    if fmt == "alpaca":
        return {"system": parts.system, "instruction": parts.instruction, "input": parts.input, "output": a}
    if fmt == "text":
        return {"text": plain_prompt(parts) + a}
    raise TemplateError(f"unknown format {fmt!r}; available: {', '.join(FORMATS)}")


def prompt_and_completion(fmt: str, parts: Parts) -> tuple[str, str]:
    """What the model reads and what it must write, in a format's own text (for length limits and plots)."""
    if fmt == "chat":
        return f"{parts.system}\n{parts.user}", parts.assistant or ""
    return plain_prompt(parts), parts.assistant or ""


def describe(target: str) -> dict[str, Any]:
    """A human-readable summary of a target's templates (for the dataset card)."""
    t = templates_for(target)
    return {
        "system": t.system({}),
        "response": t.response_description,
        "modes": {name: m.description for name, m in t.modes.items()},
        "plain_layout": PLAIN_LAYOUT,
    }
