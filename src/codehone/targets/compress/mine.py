"""The compress target's mining: every function of a Python or C file, with its reference notation.

A unit is one function (Python: a top-level `def` or a method, decorators included and the
block dedented; C: a `function_definition`), its source as written (comments and layout
included: that is what the compressor removes) and, as the artifact, the reference
compressor's notation. A unit is kept only when the notation expands back to the same tree,
so every training pair is verified and no teacher is needed.
"""

from __future__ import annotations

import ast
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from ...records import FileResult, Unit, content_hash
from ...sources import Source, detect_license, read_text
from . import c_code, python_code, tokens

TARGET = "compress"
LANGUAGES = {".py": "python", ".c": "c", ".h": "c"}
CODECS = {"python": python_code, "c": c_code}


@dataclass(frozen=True)
class MineOptions:
    min_chars: int = 80  # a one-liner has nothing to compress
    max_chars: int = 2400  # a tiny model's context; longer functions are counted, not kept
    tokenizer: str = tokens.DEFAULT


def language_of(path: str | Path) -> str | None:
    return LANGUAGES.get(Path(path).suffix)


def _python_functions(text: str):
    """(name, line, source) of each top-level function and each method, dedented."""
    tree = python_code.parse(text)
    lines = text.splitlines(keepends=True)
    todo = list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, ast.ClassDef):
            todo[:0] = node.body
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            src = textwrap.dedent("".join(lines[start - 1:node.end_lineno]))
            yield node.name, start, src


def _c_functions(text: str):
    from ..c_wat.functions import extract

    for f in extract(text):
        if not f.has_error:
            yield f.name, f.line, f.source


def mine_file(path: Path, src: Source, opts: MineOptions) -> FileResult:
    t0 = time.monotonic()
    rel = str(path.relative_to(src.root))
    res = FileResult(path=rel)
    lang = language_of(path)
    text, res.non_utf8 = read_text(path)
    if lang is None:
        res.file_reason = "unsupported_language"
        return res
    if res.non_utf8:
        res.file_reason = "non_utf8"
        res.examples["non_utf8"] = f"{rel}: not UTF-8"
        return res
    codec = CODECS[lang]
    finder = _python_functions if lang == "python" else _c_functions
    try:
        funcs = list(finder(text))
    except (python_code.CodecError, c_code.CodecError, RecursionError) as e:
        res.file_reason = "parse_error"
        res.examples["parse_error"] = f"{rel}: {e}"
        return res
    res.functions = len(funcs)

    def count(s: str) -> int:
        return tokens.count(s, opts.tokenizer)

    for name, line, source in funcs:
        why = None
        if len(source) < opts.min_chars:
            why = "too_short"
        elif len(source) > opts.max_chars:
            why = "too_long"
        if why:
            res.failures[why] += 1
            res.examples.setdefault(why, f"{rel}:{line} {name}: {len(source)} characters")
            continue
        try:
            artifact = codec.compress(source, count)
            ok = codec.same(source, codec.expand(artifact))
        except (python_code.CodecError, c_code.CodecError, RecursionError) as e:
            reason = "not_lossless" if "lossless" in str(e) else "parse_error"
            res.failures[reason] += 1
            res.examples.setdefault(reason, f"{rel}:{line} {name}: {e}")
            continue
        if not ok:
            res.failures["not_lossless"] += 1
            res.examples.setdefault("not_lossless", f"{rel}:{line} {name}: the round trip changed the tree")
            continue
        before, after = count(source), count(artifact)
        if after >= before:  # nothing to compress (no comment, already tight): no lesson in it
            res.failures["incompressible"] += 1
            res.examples.setdefault("incompressible", f"{rel}:{line} {name}: {before} tokens, notation {after}")
            continue
        unit = Unit(
            id=content_hash(TARGET, src.name, rel, name, str(line), source),
            target=TARGET, language=lang, repo=src.name, repo_url=src.url, commit=src.commit, path=rel,
            line=line, license=src.license, name=name, signature=source.strip().splitlines()[0][:200], doc=None,
            source=source, artifact=artifact,
            meta={"tokenizer": opts.tokenizer, "tokens_before": before, "tokens_after": after,
                  "ratio": round(before / max(after, 1), 4), "symbols": artifact.startswith("~"),
                  "norm_hash": content_hash(lang, codec.expand(artifact))},
        )
        res.units.append(unit.__dict__)
    res.seconds = time.monotonic() - t0
    return res


def default_corpus() -> list[Source]:
    """The Python standard library of the running interpreter: real code, present everywhere."""
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    return [Source(root=root, name="python-stdlib", commit=f"python-{'.'.join(map(str, __import__('sys').version_info[:3]))}",
                   license=detect_license(root) or "PSF-2.0")]
