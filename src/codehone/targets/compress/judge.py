"""The compress judge: expand → parse → compare with the unit's source, and count the tokens.

No model is trusted: the expander is deterministic (`notation.parse` + the language codec), and
the comparison is against the unit's original source, not against the reference notation, so
an answer shorter than the reference passes when it means the same program.

Stages: parse (the notation's map line), compile (the expanded body parses in the unit's
language: `compiled`), test (`run` = 1: the trees are equal *and* the answer has fewer tokens
than the source, else `failed` = 1). Why "fewer tokens" is part of a pass: the source itself
round-trips, so a model that copies its input would otherwise pass every prompt without
compressing anything. `round_trip` says whether the trees were equal, whatever the length.
Counts add tokens_before (the source), tokens_after (the answer, map included) and ratio, in
the named tokenizer (`tokens.DEFAULT` unless the unit says otherwise).
"""

from __future__ import annotations

import time
from typing import Any

from ...records import Diagnostic, Verdict
from ..verdict import standard_counts
from . import c_code, python_code, tokens
from .notation import NotationError
from .notation import parse as parse_notation

CODECS = {"python": python_code, "c": c_code}
MAX_CHARS = 1_000_000  # a runaway generation is judged as too long, never parsed


def _fail(stage: str, msg: str, code: str, counts: dict, timings: dict, compiled: bool = False,
          run: int = 0) -> Verdict:
    counts.update(standard_counts(compiled=compiled, errors=0 if compiled else 1, run=run, failed=run))
    return Verdict(ok=False, stage=stage, diagnostics=[Diagnostic(msg[:500], code=code)], counts=counts,
                   timings=timings)


def judge(candidate: str, *, unit: dict | None = None, **_: Any) -> Verdict:
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    counts: dict[str, Any] = {}
    if not unit or not unit.get("source"):
        return _fail("parse", "a compress candidate is judged against its unit's source: no unit given",
                     "no_unit", counts, timings)
    lang = unit.get("language") or "python"
    codec = CODECS.get(lang)
    if codec is None:
        return _fail("parse", f"no compress codec for language {lang!r} (have: {', '.join(CODECS)})",
                     "language", counts, timings)
    name = (unit.get("meta") or {}).get("tokenizer") or tokens.DEFAULT
    counts["tokens_before"] = before = tokens.count(unit["source"], name)
    text = candidate if isinstance(candidate, str) else ""
    if len(text) > MAX_CHARS:
        return _fail("parse", f"answer of {len(text)} characters, over the {MAX_CHARS} limit", "too_long",
                     counts, timings)
    counts["tokens_after"] = after = tokens.count(text, name)
    counts["ratio"] = round(before / max(after, 1), 4)
    try:
        note = parse_notation(text)
    except NotationError as e:
        return _fail("parse", str(e), "symbol_map", counts, timings)
    try:
        expanded = codec.expand(text)
    except (python_code.CodecError, c_code.CodecError, RecursionError) as e:
        timings["expand"] = round(time.monotonic() - t0, 4)
        return _fail("compile", f"the body {e}" if "parse" in str(e) else str(e), "syntax", counts, timings)
    counts["symbols"] = len(note.symbols)
    try:
        equal = codec.same(unit["source"], expanded)
    except (python_code.CodecError, c_code.CodecError, RecursionError) as e:
        return _fail("internal", f"the unit's own source: {e}", "unit_source", counts, timings, compiled=True)
    timings["total"] = round(time.monotonic() - t0, 4)
    counts["round_trip"] = equal
    if not equal:
        return _fail("test", "expands to a different program (syntax trees differ)", "tree_differs", counts,
                     timings, compiled=True, run=1)
    if after >= before:
        return _fail("test", f"the same program, but not compressed: {after} tokens for a {before}-token source",
                     "not_shorter", counts, timings, compiled=True, run=1)
    counts.update(standard_counts(compiled=True, run=1, passed=1))
    return Verdict(ok=True, stage="test", counts=counts, timings=timings)
