"""The pieces of `codehone build`: templates, config, tokens, heuristics, split, licenses, dedup helpers."""

from __future__ import annotations

import pytest

from build_fixtures import ADLER, make_unit
from codehone import templates
from codehone.config import ConfigError, SplitConfig, load_build_config
from codehone.dedup import DedupStats, canonical_tokens, code_tokens, near_dedup
from codehone.filters import estimate_tokens, is_generated, is_macro_only
from codehone.licenses import allowed, rank
from codehone.split import assign, choose_group_by


def test_translate_template_pairs_c_with_its_wat_only():
    u = make_unit(
        "f", "int f(int x) { return x + 1; }", artifact="(func $f (param i32) (result i32)\n  local.get 0)"
    )
    system, user, assistant = templates.render("c-wat", "translate", u)
    assert "WAT" in system and "at -O2." in system
    u["meta"]["opt"] = "-Os"
    assert "at -Os." in templates.render("c-wat", "translate", u)[0]
    assert (
        user.startswith("Translate this C function") and "```c\nint f(int x) { return x + 1; }\n```" in user
    )
    assert assistant == "(func $f (param i32) (result i32)\n  local.get 0)"


def test_implement_template_uses_doc_or_falls_back_to_signature():
    u = make_unit("f", "int f(int x)\n{ return x + 1; }", doc="Add one to x.")
    _, user, _ = templates.render("c-wat", "implement", u)
    # the wasm type comes from the reference's header, so the model copies the param list, never guesses it
    assert user == "Implement: int f(int x)\nType: (param i32) (result i32)\n\nAdd one to x."
    u["doc"] = None
    _, user, _ = templates.render("c-wat", "implement", u)
    assert user == "Implement: int f(int x)\nType: (param i32) (result i32)"
    u["meta"]["wasm_type"] = "(param i64)"  # a recorded type wins over the header
    assert templates.render("c-wat", "implement", u)[1] == "Implement: int f(int x)\nType: (param i64)"
    # Inference needs only the fields the mode reads: no artifact, no source.
    assert (
        templates.render_prompt("c-wat", "implement", {"signature": "int  f(int x)", "doc": None})[1]
        == "Implement: int f(int x)"
    )


def test_wasm_type_is_read_off_the_header():
    from codehone.targets.c_wat.templates import wasm_type

    assert wasm_type("(func $f (param i32) (result i32)\n  local.get 0)") == "(param i32) (result i32)"
    assert wasm_type("(func $g (type 3) (param $x i32) (param i64 f32)\n  nop)") == "(param i32 i64 f32)"
    assert wasm_type("(func $h\n  nop)") == "(no params, no result)"
    assert wasm_type("not wat") is None


def test_formats_are_made_from_the_same_parts():
    p = templates.render_parts("c-wat", "implement", make_unit("f", "int f(void) { return 0; }", doc="Zero."))
    chat = templates.as_format("chat", p)
    pc = templates.as_format("prompt_completion", p)
    alpaca = templates.as_format("alpaca", p)
    text = templates.as_format("text", p)
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant"]
    assert pc["prompt"] + pc["completion"] == text["text"]
    assert pc["prompt"].endswith("### Response:\n") and "### Input:\nZero." in pc["prompt"]
    assert alpaca == {
        "system": p.system,
        "instruction": "Implement: int f(void)\nType: (param i32) (result i32)",
        "input": "Zero.",
        "output": p.assistant,
    }
    with pytest.raises(templates.TemplateError, match="unknown format 'xml'"):
        templates.as_format("xml", p)
    with pytest.raises(templates.TemplateError, match="unknown target"):
        templates.render("cobol", "translate", {})


def test_recipe_file_and_overrides(tmp_path):
    r = tmp_path / "r.yaml"
    r.write_text(
        "train: {steps: 10}\nbuild:\n  dedup:\n    near: {threshold: 0.8}\n  output: {formats: [alpaca]}\n"
    )
    cfg = load_build_config(r, ["build.output.parquet=false", "split.ratios={train: 0.8, val: 0.2}"])
    assert (
        cfg.dedup.near.threshold == 0.8 and cfg.output.formats == ["alpaca"] and cfg.output.parquet is False
    )
    assert list(cfg.split.ratios) == ["train", "val"]
    r.write_text("dedup:\n  near: {threshold: 0.8}\n")
    with pytest.raises(ConfigError, match="dedup: build settings belong under `build:`"):
        load_build_config(r)
    r.write_text("build: [1, 2]\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_build_config(r)
    r.write_text("build:\n  target: [unclosed\n")
    with pytest.raises(ConfigError, match=r"r.yaml:\d+: not valid YAML"):
        load_build_config(r)


def test_estimate_counts_code_pieces():
    assert estimate_tokens("x = y;") == 4
    assert estimate_tokens("local.get 0\n") == 6  # lo|cal . get 0 \n
    assert estimate_tokens("a_very_long_identifier") == 6  # 22 chars / 4, rounded up


@pytest.mark.parametrize(
    "src,expected",
    [
        ("int f(int a)\n{\n    CHECK(a);\n    return MAX(a, 1);\n}", True),
        ("int f(void) { FOO_BODY }", True),
        ("void f(void) { LOCK(&m); UNLOCK(&m); }", True),
        ("int f(int a) { return MAX(a, 1) + 1; }", False),
        ("int f(int a) { CHECK(a); return a; }", False),
        ("int f(void) { }", False),
    ],
)
def test_macro_only_bodies(src, expected):
    assert is_macro_only(make_unit("f", src)) is expected


def test_generated_markers():
    assert is_generated(make_unit("f", "int f(void) { return 0; }", path="parser/lex.yy.c"))
    assert is_generated(make_unit("f", "int f(void) { return 0; }", path="proto/msg.pb-c.c"))
    assert is_generated(
        make_unit("f", "int f(void) { return 0; }", doc="Automatically generated by tables.py")
    )
    assert not is_generated(
        make_unit("f", "int f(void) { return 0; }", path="src/generator.c", doc="Generate it.")
    )


def test_split_assignment_is_a_pure_function_of_the_key():
    ratios = {"train": 0.7, "val": 0.15, "test": 0.15}
    keys = [f"repo{i}" for i in range(3000)]
    first = [assign(k, ratios, "s") for k in keys]
    assert first == [assign(k, ratios, "s") for k in keys]
    share = first.count("train") / len(first)
    assert 0.66 < share < 0.74
    assert [assign(k, ratios, "other") for k in keys] != first  # the salt reshuffles


def test_auto_grouping_needs_enough_repositories():
    cfg = SplitConfig()
    few = [{"repo": f"r{i}"} for i in range(66)]
    many = [{"repo": f"r{i}"} for i in range(67)]
    assert choose_group_by(few, cfg) == "file"  # 66 x 0.15 < 10
    assert choose_group_by(many, cfg) == "repo"
    assert choose_group_by(few, SplitConfig(group_by="repo")) == "repo"


def test_license_rank_and_allow_list():
    assert rank("MIT") == 0 and rank("GPL-2.0") == 1 and rank(None) == 2
    assert rank("GPL-2.0 OR MIT") == 0
    assert allowed("Zlib", ["permissive"]) and not allowed("GPL-3.0", ["permissive"])
    assert allowed(None, ["permissive", "unknown"]) and not allowed(None, ["MIT"])


def test_canonical_tokens_ignore_renaming_but_keep_calls_fields_and_literals():
    a = canonical_tokens("int f(struct s *p, int n) { return g(p->len, n, 'x'); }")
    b = canonical_tokens("int h(struct s *q, int m) { return g(q->len, m, 'x'); }")
    c = canonical_tokens("int f(struct s *p, int n) { return k(p->cap, n, 'y'); }")
    assert a == b
    assert a != c and {"k", "cap", "'y'"} <= set(c)
    assert code_tokens("a->b /* c */ + d") == ["a", "b", "d"]


def test_short_units_cluster_only_when_equal_up_to_renaming():
    units = [
        make_unit("px", "int px(const struct point *p) { return p->x; }"),
        make_unit("py", "int py(const struct point *p) { return p->y; }"),
        make_unit("qx", "int qx(const struct point *q) { return q->x; }", doc="X of a point."),
    ]
    kept, dropped = near_dedup(units, DedupStats())
    assert [d.unit["name"] for d in dropped] == ["px"]  # qx is documented, so it is kept
    assert {u["name"] for u in kept} == {"py", "qx"}


def test_near_dedup_scales_in_bulk():
    import time

    units = [
        make_unit(
            f"f{i}", ADLER.replace("adler_update", f"f{i}").replace("sum2 += adler;", f"sum2 += adler + {i};")
        )
        for i in range(300)
    ]
    t0 = time.perf_counter()
    kept, dropped = near_dedup(units, DedupStats())
    assert time.perf_counter() - t0 < 5
    assert len(kept) == 1 and len(dropped) == 299
