"""The compress target: the notation, the Python and C codecs, the judge, mining and the unit contract."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from typer.testing import CliRunner

from codehone import targets
from codehone.check import Item, check
from codehone.cli import app as cli
from codehone.iterate import select
from codehone.targets.compress import c_code, python_code, tokens
from codehone.targets.compress.judge import judge
from codehone.targets.compress.notation import Notation, NotationError, parse

PY = '''
import os.path as osp, collections.abc
from xml.etree import ElementTree as ET

# a comment that the compressor drops
@decorator_factory(flag=True)
async def fetch_configuration_values(configuration_path, *extra_arguments, default_value=None, **options):
    """Read the configuration.

    Its docstring stays: it is part of the syntax tree.
    """
    global configuration_cache
    configuration_values = {}
    for configuration_key in sorted(options):
        configuration_values[configuration_key] = options[configuration_key]   # trailing comment
    if (configuration_count := len(configuration_values)) > 2:
        print(f"{configuration_count} values from {configuration_path!r:>10}")
    match configuration_values:
        case {"mode": configuration_mode, **configuration_rest}:
            return configuration_mode, configuration_rest
        case [first_item, *other_items]:
            return first_item
    lambda configuration_values=configuration_values: configuration_values
    try:
        pass
    except OSError as configuration_error:
        raise ValueError(configuration_error) from None
    return await default_value.configuration_values(osp.join(configuration_path, 'x'))


class ConfigurationHolder(collections.abc.Mapping):
    def configuration_method(self):
        nonlocal_holder = 1

        def inner():
            nonlocal nonlocal_holder
            nonlocal_holder += 1
        return self.configuration_method, inner
'''

C = r'''
#include <stdio.h>
#include "local.h"
#define WIDTH (1) /* object-like: the space before ( matters */
#define ADD(a, b) ((a) + (b))
#if defined(LONG_NAMES) && LONG_NAMES > 1
static int configuration_counter = 0;
#else
static long configuration_counter = 0;
#endif

/* a doc comment */
static int configuration_total(const char *configuration_text, int configuration_length) {
    int configuration_index, configuration_sum = 0; // sum
    for (configuration_index = 0; configuration_index < configuration_length; configuration_index++)
        configuration_sum += configuration_text[configuration_index] - -1 + + configuration_length;
    printf("%d\n\t\"quoted\"", configuration_sum);
    return configuration_sum > WIDTH ? ADD(configuration_sum, 'x') : configuration_counter++;
}
'''


def count(s: str) -> int:
    return tokens.count(s)


# ---------------------------------------------------------------- notation


def test_notation_round_trip_and_malformed_maps():
    n = Notation(body="def b(a):\n return a", symbols={"a": "value", "b": "compute"})
    assert parse(n.render()) == n
    assert parse("x = 1") == Notation(body="x = 1")
    assert Notation(body="~x").render() == "~\n~x"  # a body that starts with the mark always gets a map line
    assert parse(Notation(body="~x").render()).body == "~x"
    for bad in ("~a=b a=c\nx", "~a=\nx", "~a b\nx", "~1a=b\nx", "~a=b-c\nx"):
        with pytest.raises(NotationError):
            parse(bad)


# ---------------------------------------------------------------- codecs


def test_python_round_trip_is_exact_and_shorter():
    note = python_code.compress(PY, count)
    assert note.startswith("~"), "repeated long identifiers get aliases"
    assert "comment" not in note
    assert not re.search(r"\bconfiguration_values\b", note.split("\n", 1)[1])
    assert python_code.same(PY, python_code.expand(note))
    # fewer tokens than the original, and than the same tree laid out by ast.unparse (formatting alone)
    assert count(note) < count(python_code.expand(note)) < count(PY)
    # every renamed position: f-string, match capture and rest, walrus, nonlocal, except name, dotted import
    expanded = python_code.expand(note)
    for name in ("configuration_rest", "configuration_error", "nonlocal_holder", "configuration_count", "osp"):
        assert name in expanded


def test_python_expansion_detects_a_changed_program():
    note = python_code.compress(PY, count)
    head, body = note.split("\n", 1)
    entries = head[1:].split()
    swapped = "~" + " ".join([entries[1].split("=")[0] + "=" + entries[0].split("=")[1],
                              entries[0].split("=")[0] + "=" + entries[1].split("=")[1], *entries[2:]])
    assert not python_code.same(PY, python_code.expand(swapped + "\n" + body))
    assert not python_code.same(PY, python_code.expand(note.replace(" + 1", " + 2").replace(">", ">=", 1)))


def test_python_unparsable_is_a_codec_error():
    with pytest.raises(python_code.CodecError, match="does not parse"):
        python_code.compress("def f(:\n", count)
    with pytest.raises(python_code.CodecError):
        python_code.expand("~a=b\ndef (")


def test_c_round_trip_keeps_directives_literals_and_operator_spacing():
    note = c_code.compress(C, count)
    expanded = c_code.expand(note)
    assert c_code.same(C, expanded)
    assert "#define WIDTH (1)" in expanded  # not `WIDTH(1)`: that would be a function-like macro
    assert "#define ADD(a,b) ((a) + (b))" in expanded  # name and ( stay together; the body is verbatim
    assert '"%d\\n\\t\\"quoted\\""' in expanded
    assert "- -1" in expanded and "+ +" in expanded
    assert "comment" not in note
    assert count(note) < count(C)
    body = note.split("\n", 1)[1] if note.startswith("~") else note
    assert not re.search(r"\bconfiguration_index\b", body)


def test_c_changed_program_and_syntax_errors():
    note = c_code.compress(C, count)
    assert not c_code.same(C, c_code.expand(note.replace("<", "<=", 1)))
    with pytest.raises(c_code.CodecError):
        c_code.compress("int f( { return", count)


# ---------------------------------------------------------------- judge


def unit_for(src: str, lang: str = "python") -> dict:
    codec = python_code if lang == "python" else c_code
    return {"id": "u1", "target": "compress", "language": lang, "source": src,
            "artifact": codec.compress(src, count), "meta": {"tokenizer": "cl100k_base"}}


def test_judge_verdicts_by_stage():
    u = unit_for(PY)
    ok = judge(u["artifact"], unit=u)
    assert ok.ok and ok.stage == "test" and ok.counts["compiled"] and ok.counts["run"] == 1
    assert ok.counts["ratio"] == round(count(PY) / count(u["artifact"]), 4) > 1.05
    assert ok.counts["tokens_before"] == count(PY)
    plain = judge(python_code.expand(u["artifact"]), unit=u)  # no map, standard layout: still the same program
    assert plain.ok and plain.counts["ratio"] < ok.counts["ratio"]
    copy = judge(PY, unit=u)  # the input itself round-trips, but compresses nothing: not a pass
    assert not copy.ok and copy.stage == "test" and copy.counts["round_trip"] and copy.counts["failed"] == 1
    bad_map = judge("~a=b a=c\npass", unit=u)
    assert not bad_map.ok and bad_map.stage == "parse" and not bad_map.counts["compiled"]
    garbage = judge("def def def", unit=u)
    assert not garbage.ok and garbage.stage == "compile" and not garbage.counts["compiled"]
    wrong = judge("def f():\n return 1", unit=u)
    assert not wrong.ok and wrong.stage == "test" and wrong.counts["compiled"] and wrong.counts["failed"] == 1
    assert not judge("x", unit=None).ok
    c = unit_for(C, "c")
    assert judge(c["artifact"], unit=c).ok
    assert not judge(c["artifact"].replace("return", "return -", 1), unit=c).ok


def test_check_contract_and_cli_on_mined_units(tmp_path):
    src = tmp_path / "repo"
    src.mkdir()
    (src / "mod.py").write_text(PY)
    (src / "lib.c").write_text(C)
    (src / "broken.py").write_text("def f(:\n    pass\n")
    (src / "latin1.py").write_bytes(b"x = '\xe9'\n")
    (src / "short.py").write_text("def f():\n    return 1\n")
    out = tmp_path / "mine"
    r = CliRunner().invoke(cli, ["mine", "--target", "compress", str(src), "-o", str(out), "-j", "1"])
    assert r.exit_code == 0, r.output
    units = [json.loads(line) for line in (out / "units.jsonl").read_text().splitlines()]
    names = {u["name"] for u in units}
    assert {"fetch_configuration_values", "configuration_method", "configuration_total"} <= names
    assert {u["language"] for u in units} == {"python", "c"}
    stats = json.loads((out / "stats.json").read_text())
    assert stats["failure_reasons"].get("too_short", 0) >= 1  # `short.py`, and `inner`
    assert {"parse_error", "non_utf8"} <= set(stats["files_failed"]), stats["files_failed"]
    verdicts = check("compress", [Item(candidate=u["artifact"], unit=u) for u in units], cache_dir=False)
    assert all(v.ok and v.counts["run"] == 1 for v in verdicts)
    r = CliRunner().invoke(cli, ["check", "--target", "compress", "--units", str(out / "units.jsonl"),
                                 "--no-cache"])
    assert r.exit_code == 0, r.output
    assert f"{len(units)} ok" in r.output or "100.0%" in r.output


def test_best_of_k_minimises_the_targets_answer_cost(monkeypatch):
    """iterate keeps, per prompt, the passing sample of least `answer_cost` (here: the longest, to tell the
    target's cost from the default character length)."""
    longest = dataclasses.replace(targets.get("compress"), name="t-longest", answer_cost=lambda c: -len(c))
    monkeypatch.setitem(targets.REGISTRY, "t-longest", "unused")
    monkeypatch.setitem(targets._LOADED, "t-longest", longest)
    verdict = {"ok": True, "stage": "test", "counts": {"compiled": True, "run": 1, "passed": 1}}
    samples = [{"example_id": "e", "ok": True, "verdict": verdict, "code": c} for c in ("x=1", "x = 1  ", "x =  1")]
    kept, _ = select(samples, "best_of_k", "t-longest")
    assert [s["code"] for s in kept] == ["x = 1  "]
    kept, _ = select(samples, "best_of_k", "compress")
    assert count(kept[0]["code"]) == min(count(s["code"]) for s in samples)


def test_token_counts_of_long_texts_add_up_exactly(monkeypatch):
    """bpe-openai refuses 1M characters at once; cut at line breaks, the counts are unchanged."""
    text = (PY + C + "\n\n   \n") * 20
    whole = len(tokens.encoding().encode_ordinary(text))
    monkeypatch.setattr(tokens, "CHUNK", 500)
    assert len(list(tokens._pieces(text))) > 20
    assert tokens.count(text) == whole
