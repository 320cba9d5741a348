"""`codehone build` end to end, on small hand-written units (no corpus, no compiler)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from build_fixtures import ADLER, ADLER_PLANTED, MIN_INT, SIMILAR_SHAPES, corpus, make_unit, write_units
from codehone.cli import app
from codehone.config import ConfigError, load_build_config
from codehone.dataset import BuildError, run_build

FAST = ["output.plots=false"]


def build(tmp: Path, units: list[dict], sets: list[str] = (), name: str = "ds", extra_lines=None) -> dict:
    src = write_units(tmp / f"{name}_in" / "units.jsonl", units, extra_lines)
    cfg = load_build_config(None, [*FAST, *sets])
    return run_build([src], tmp / name, cfg)


def read_jsonl(p: Path) -> list[dict]:
    return [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]


def test_planted_near_duplicate_is_caught_and_documented_copy_kept(tmp_path):
    units = [make_unit(n, s, repo=f"r{i}") for i, (n, s) in enumerate(SIMILAR_SHAPES.items())]
    orig = make_unit("adler_update", ADLER, repo="zlib", doc="Update a running Adler-32 checksum.")
    planted = make_unit("checksum_step", ADLER_PLANTED, repo="fork")
    stats = build(tmp_path, [*units, planted, orig], ["split.group_by=repo"])
    assert stats["dedup"]["near_duplicates"] == 1
    assert stats["dedup"]["near_clusters"] == {"2": 1}
    dropped = read_jsonl(tmp_path / "ds" / "dropped.jsonl")
    near = [d for d in dropped if d["reason"] == "near_duplicate"]
    # The documented original wins the cluster over the undocumented copy.
    assert [(d["name"], d["kept_id"]) for d in near] == [("checksum_step", orig["id"])]


def test_similar_shapes_are_not_near_duplicates(tmp_path):
    units = [make_unit(n, s) for n, s in SIMILAR_SHAPES.items()]
    stats = build(tmp_path, units)
    assert stats["dedup"]["near_duplicates"] == 0
    assert stats["dedup"]["exact_duplicates"] == 0
    assert stats["units_out"] == len(units)


def test_exact_duplicates_ignore_comments_and_whitespace(tmp_path):
    a = make_unit("f", "int f(int x)\n{\n    return x + 1;\n}", repo="a", license=None)
    b = make_unit("f", "int f(int x) { /* inc */ return x + 1; }", repo="b", license="MIT")
    stats = build(tmp_path, [a, b, make_unit("g", SIMILAR_SHAPES["max_int"])])
    assert stats["dedup"]["exact_duplicates"] == 1
    dropped = read_jsonl(tmp_path / "ds" / "dropped.jsonl")
    assert [(d["repo"], d["reason"]) for d in dropped] == [("a", "exact_duplicate")]  # MIT beats unknown


def test_no_repository_leaks_across_splits(tmp_path):
    units = corpus(repos=80, files=2, per_file=2)
    stats = build(tmp_path, units)
    assert stats["split"]["group_by"] == "repo"  # 80 repos x 0.15 >= 10
    kept = read_jsonl(tmp_path / "ds" / "units.jsonl")
    splits_of: dict[str, set] = {}
    for u in kept:
        splits_of.setdefault(u["repo"], set()).add(u["split"])
    assert all(len(s) == 1 for s in splits_of.values())
    assert {s for ss in splits_of.values() for s in ss} == {"train", "val", "test"}
    # Every example is in the split of its unit.
    unit_split = {u["id"]: u["split"] for u in kept}
    for s in ("train", "val", "test"):
        for ex in read_jsonl(tmp_path / "ds" / f"{s}.jsonl"):
            assert ex["split"] == s == unit_split[ex["unit_id"]]


def test_few_repositories_fall_back_to_file_groups(tmp_path):
    units = corpus(repos=3, files=12, per_file=3)
    stats = build(tmp_path, units)
    assert stats["split"]["group_by"] == "file"
    kept = read_jsonl(tmp_path / "ds" / "units.jsonl")
    files: dict[tuple, set] = {}
    for u in kept:
        files.setdefault((u["repo"], u["path"]), set()).add(u["split"])
    assert all(len(s) == 1 for s in files.values())
    assert len({u["split"] for u in kept}) == 3


def test_split_is_stable_when_data_grows(tmp_path):
    base = corpus(repos=80, files=1, per_file=2)
    build(tmp_path, base, ["split.group_by=repo"], name="a")
    grown = base + corpus(repos=60, files=1, per_file=2, start=80)
    build(tmp_path, grown, ["split.group_by=repo"], name="b")
    before = {u["id"]: u["split"] for u in read_jsonl(tmp_path / "a" / "units.jsonl")}
    after = {u["id"]: u["split"] for u in read_jsonl(tmp_path / "b" / "units.jsonl")}
    assert len(after) > len(before)
    moved = [i for i, s in before.items() if after.get(i) != s]
    assert moved == []


def test_decontamination_against_benchmark_files_and_eval_units(tmp_path):
    clean = [make_unit(n, s, repo="r") for n, s in SIMILAR_SHAPES.items()]
    leaked = make_unit("adler_update", ADLER, repo="r")
    short = make_unit("twice", "int twice(int v) { return v * 2; }", repo="r")
    bench = tmp_path / "bench.jsonl"
    # The benchmark holds the same code, reformatted and with a comment: still a normalised match.
    bench.write_text(
        json.dumps({"task": "t1", "canonical_solution": "/* ref */ " + " ".join(ADLER.split())}) + "\n"
    )
    evals = write_units(
        tmp_path / "evals.jsonl",
        [make_unit("twice", "int twice(int v)\n{\n  return v * 2;\n}", repo="held-out")],
    )
    stats = build(
        tmp_path,
        [*clean, leaked, short],
        ["split.ratios={train: 1.0}", f"decontam.benchmarks=[{bench}]", f"decontam.eval_units=[{evals}]"],
    )
    assert stats["decontam"]["dropped"] == 2
    assert stats["decontam"]["by_source"] == {"benchmark": 1, "eval_units": 1}
    names = {u["name"] for u in read_jsonl(tmp_path / "ds" / "units.jsonl")}
    assert "adler_update" not in names and "twice" not in names
    assert set(SIMILAR_SHAPES) <= names
    assert "decontaminated (train) | 2" in (tmp_path / "ds" / "README.md").read_text()


def test_decontamination_against_own_eval_splits(tmp_path):
    units = corpus(repos=3, files=12, per_file=3)
    # A copy of a val/test function, slightly changed, with near-dedup off so that it reaches decontamination.
    stats = build(tmp_path, units, ["dedup.near.enabled=false"], name="probe")
    held = [u for u in read_jsonl(tmp_path / "probe" / "units.jsonl") if u["split"] != "train"][0]
    # Find a file key that lands in train for the copy.
    for k in range(50):
        copy = make_unit(
            "copy_fn", held["source"].replace("int acc", "long acc"), repo="other", path=f"x/{k}.c"
        )
        stats = build(tmp_path, [*units, copy], ["dedup.near.enabled=false"], name="d")
        if stats["decontam"]["dropped"]:
            break
    assert stats["decontam"]["by_source"] == {"split": 1}
    assert copy["id"] not in {u["id"] for u in read_jsonl(tmp_path / "d" / "units.jsonl")}


def _tiny_tokenizer(folder: Path) -> Path:
    """A real tokenizers WordLevel tokenizer: one token per word or punctuation character."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        ["int f ( x ) { return x ; }"], trainers.WordLevelTrainer(special_tokens=["[UNK]"])
    )
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    return folder


def test_every_filter_reason_is_counted(tmp_path):
    long_body = (
        "int long_fn(int x)\n{\n"
        + "".join(f"    x = x * {i} + {i};\n" for i in range(60))
        + "    return x;\n}"
    )
    long_wat = "(func $w (param i32) (result i32)\n" + "  i32.const 1\n  drop\n" * 100 + "  local.get 0)"
    units = [
        make_unit("ok_fn", SIMILAR_SHAPES["max_int"]),
        make_unit("zig_fn", MIN_INT, target="zig"),  # other_target
        make_unit("no_art", SIMILAR_SHAPES["sum_ints"], artifact="  "),  # no_artifact
        make_unit("gpl_fn", SIMILAR_SHAPES["my_strlen"], license="GPL-2.0"),  # license
        make_unit("yyparse", SIMILAR_SHAPES["count_char"], path="gram.tab.c"),  # generated (path)
        make_unit(
            "gen_fn", "/* Code generated by protoc. DO NOT EDIT. */\n" + SIMILAR_SHAPES["point_x"]
        ),  # marker
        make_unit(
            "mac_fn", "int mac_fn(int a, int b)\n{\n    CHECK(a);\n    return MAX(a, b);\n}"
        ),  # macro_only
        make_unit("long_fn", long_body),  # translate prompt too long (implement fits)
        make_unit("big_wat", SIMILAR_SHAPES["my_memcpy"], artifact=long_wat),  # completion too long
        make_unit(
            "mid_fn", SIMILAR_SHAPES["my_memset"], artifact="(func $m\n" + "  nop\n" * 100 + ")"
        ),  # fits each limit, not the total
        make_unit("tiny", SIMILAR_SHAPES["my_isdigit"], artifact="(func $t)"),  # completion too short
    ]
    tok = _tiny_tokenizer(tmp_path / "model")
    stats = build(
        tmp_path,
        units,
        [
            "filters.licenses=[permissive]",
            f"filters.tokenizer={tok}",
            "filters.max_prompt_tokens=130",
            "filters.max_completion_tokens=150",
            "filters.max_total_tokens=190",
            "filters.min_completion_tokens=6",
        ],
    )
    assert stats["filtered"] == {
        "generated": 2,
        "license": 1,
        "macro_only": 1,
        "no_artifact": 1,
        "other_target": 1,
    }
    assert stats["lengths"]["estimated"] is False
    ex = stats["examples_filtered"]
    assert ex["prompt_too_long"] == 1  # long_fn translate
    assert ex["completion_too_long"] == 2  # big_wat, both modes
    assert ex["total_too_long"] == 1  # mid_fn translate
    assert ex["completion_too_short"] == 2  # tiny, both modes
    dropped = read_jsonl(tmp_path / "ds" / "dropped.jsonl")
    assert {d["reason"] for d in dropped} >= {
        "other_target",
        "no_artifact",
        "license",
        "generated",
        "macro_only",
        "prompt_too_long",
        "completion_too_long",
        "total_too_long",
        "completion_too_short",
    }
    # Nothing silent: every unit in is either out, or dropped with a reason.
    out_ids = {u["id"] for u in read_jsonl(tmp_path / "ds" / "units.jsonl")}
    assert out_ids | {d["unit_id"] for d in dropped} == {u["id"] for u in units}
    assert stats["units_without_examples"] == 2  # big_wat, tiny: every mode dropped
    assert {u["name"] for u in read_jsonl(tmp_path / "ds" / "units.jsonl")} == {"ok_fn", "long_fn", "mid_fn"}
    # Nothing truncated: every kept completion is the whole artifact.
    by_id = {u["id"]: u for u in units}
    for s in ("train", "val", "test"):
        for e in read_jsonl(tmp_path / "ds" / f"{s}.jsonl"):
            assert e["messages"][2]["content"] == by_id[e["unit_id"]]["artifact"].strip()
    card = (tmp_path / "ds" / "README.md").read_text()
    for reason in ("macro_only", "generated", "license", "prompt_too_long", "total_too_long"):
        assert f"| {reason} |" in card


@pytest.mark.parametrize(
    "fmt,columns",
    [
        ("chat", {"messages"}),
        ("prompt_completion", {"prompt", "completion"}),
        ("alpaca", {"system", "instruction", "input", "output"}),
        ("text", {"text"}),
    ],
)
def test_datasets_round_trip(tmp_path, fmt, columns):
    import datasets

    datasets.disable_progress_bars()
    units = corpus(repos=2, files=10, per_file=2)
    units[0]["doc"] = "Fold the context into the accumulator."
    stats = build(tmp_path, units, [f"output.formats=[{fmt}]"])
    out = tmp_path / "ds"
    files = {s: str(out / f"{s}.jsonl") for s, n in stats["split"]["examples"].items() if n}
    dj = datasets.load_dataset("json", data_files=files, cache_dir=str(tmp_path / "hf"))
    dp = datasets.load_dataset(
        "parquet",
        data_files={s: f.replace(".jsonl", ".parquet") for s, f in files.items()},
        cache_dir=str(tmp_path / "hf"),
    )
    for s in files:
        assert set(dj[s].column_names) == {"id", "unit_id", "split", "mode"} | columns
        assert dj[s].num_rows == dp[s].num_rows == stats["split"]["examples"][s]
        assert dj[s].to_list() == [{k: r[k] for k in dj[s].column_names} for r in dp[s].to_list()]
    # The card's front matter makes the folder itself loadable.
    dd = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf"))
    assert {s: dd[s].num_rows for s in dd} == {s: n for s, n in stats["split"]["examples"].items() if n}


def test_several_formats_share_ids(tmp_path):
    stats = build(tmp_path, corpus(repos=2, files=6, per_file=1), ["output.formats=[chat,alpaca,text]"])
    out = tmp_path / "ds"
    ids = {
        f: [e["id"] for e in read_jsonl(out / sub / "train.jsonl")]
        for f, sub in (("chat", ""), ("alpaca", "alpaca"), ("text", "text"))
    }
    assert (
        ids["chat"] == ids["alpaca"] == ids["text"]
        and len(ids["chat"]) == stats["split"]["examples"]["train"]
    )


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_idempotent_and_input_order_independent(tmp_path):
    units = corpus(repos=3, files=6, per_file=2) + [make_unit(n, s) for n, s in SIMILAR_SHAPES.items()]
    units.append(make_unit("checksum_step", ADLER_PLANTED, repo="fork"))
    units.append(make_unit("adler_update", ADLER, repo="zlib"))
    src = write_units(tmp_path / "in.jsonl", units)
    rev = write_units(tmp_path / "rev.jsonl", units[::-1])
    cfg = load_build_config(None, ["output.formats=[chat,alpaca]"])  # plots on
    run_build([src], tmp_path / "a", cfg)
    first = _digest(tmp_path / "a")
    assert "plots/prompt_tokens.png" in first
    assert run_build([src], tmp_path / "a", cfg, force=True).get("up_to_date") is None
    assert _digest(tmp_path / "a") == first
    run_build([rev], tmp_path / "b", cfg)
    b = _digest(tmp_path / "b")
    # Only the card (which names the input file) and stats.json differ.
    assert {k for k in first if first[k] != b.get(k)} == {"README.md", "stats.json"}


def test_rerun_skips_an_up_to_date_build(tmp_path):
    units = corpus(repos=2, files=4, per_file=1)
    src = write_units(tmp_path / "in.jsonl", units)
    cfg = load_build_config(None, FAST)
    first = run_build([src], tmp_path / "ds", cfg)
    assert "up_to_date" not in first
    again = run_build([src], tmp_path / "ds", cfg)
    assert again["up_to_date"] is True and again["fingerprint"] == first["fingerprint"]
    (tmp_path / "ds" / "val.parquet").unlink()  # a missing output file means: build again
    assert "up_to_date" not in run_build([src], tmp_path / "ds", cfg)
    write_units(src, units[:-1])  # changed input
    assert run_build([src], tmp_path / "ds", cfg)["units_in"] == len(units) - 1
    assert "up_to_date" not in run_build(
        [src], tmp_path / "ds", load_build_config(None, [*FAST, "split.salt=x"])
    )


def test_rebuild_with_fewer_formats_removes_stale_files(tmp_path):
    units = corpus(repos=2, files=4, per_file=1)
    build(tmp_path, units, ["output.formats=[chat,text]"])
    assert (tmp_path / "ds" / "text" / "train.jsonl").exists()
    build(tmp_path, units, ["output.formats=[chat]"])
    assert not (tmp_path / "ds" / "text" / "train.jsonl").exists()


# ---------------------------------------------------------------- bad inputs


def test_malformed_lines_are_reported_with_line_numbers(tmp_path):
    units = corpus(repos=1, files=3, per_file=1)
    bad = ["{not json", json.dumps({"id": "x"}), "[1, 2]"]
    stats = build(tmp_path, units, extra_lines=bad)
    assert stats["inputs"]["malformed"] == 3
    probs = stats["inputs"]["problems"]
    assert probs[0].endswith(
        "units.jsonl:4: malformed JSON (Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1))"
    )
    assert ":5: unit lacks field 'target'" in probs[1]
    assert ":6: not a JSON object but list" in probs[2]
    assert stats["units_in"] == 3


def test_empty_input_is_a_one_line_error(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(BuildError, match="no valid units .* \\(empty input\\)"):
        run_build([tmp_path / "empty.jsonl"], tmp_path / "ds", load_build_config())
    with pytest.raises(BuildError, match="no such units file"):
        run_build([tmp_path / "missing"], tmp_path / "ds", load_build_config())


@pytest.mark.parametrize(
    "sets,message",
    [
        (["target=cobol-wat"], "build.target: unknown target 'cobol-wat'; available: c-wat"),
        (["output.formats=[chat,sharegpt]"], "build.output.formats: unknown format 'sharegpt'"),
        (["dedup.near.treshold=0.8"], "build.dedup.near.treshold: unknown setting"),
        (["dedup.near.threshold=high"], "build.dedup.near.threshold: Input should be a valid number"),
        (["split.ratios={train: 0.5, val: 0.2}"], "build.split.ratios: ratios must sum to 1, not 0.7"),
        (["output.modes=[translate,explain]"], "unknown mode 'explain' for c-wat"),
        (
            ["dedup.near.threshold=0.99"],
            "build.dedup.near: threshold 0.99 with num_perm 256: The number of bands",
        ),
        (["novalue"], "expected key=value"),
    ],
)
def test_bad_config_is_one_line(sets, message):
    with pytest.raises(ConfigError) as e:
        load_build_config(None, sets)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    runner = CliRunner()
    (tmp_path / "empty.jsonl").write_text("\n")
    write_units(tmp_path / "ok.jsonl", corpus(repos=1, files=2, per_file=1))
    cases = [
        ["build", str(tmp_path / "empty.jsonl"), "-o", str(tmp_path / "o")],
        ["build", str(tmp_path / "ok.jsonl"), "-o", str(tmp_path / "o"), "--set", "target=nope"],
        ["build", str(tmp_path / "ok.jsonl"), "-o", str(tmp_path / "o"), "--set", "output.formats=[xml]"],
        [
            "build",
            str(tmp_path / "ok.jsonl"),
            "-o",
            str(tmp_path / "o"),
            "--recipe",
            str(tmp_path / "none.yaml"),
        ],
        ["build", "-o", str(tmp_path / "o")],
        [
            "build",
            str(tmp_path / "ok.jsonl"),
            "-o",
            str(tmp_path / "o"),
            "--set",
            f"filters.tokenizer={tmp_path}",
        ],
        ["build", str(tmp_path / "ok.jsonl"), "-o", str(tmp_path / "o"), "--set", "split.ratios={val: 1.0}"],
    ]
    for args in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert "Traceback" not in r.output
        assert r.exception is None or isinstance(r.exception, SystemExit)
        assert r.output.strip().startswith("error:") and len(r.output.strip().splitlines()) == 1, r.output
    # Markup-like text in a message (here a path) is printed as is.
    r = runner.invoke(app, ["build", str(tmp_path / "units[1].jsonl"), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and "units[1].jsonl: no such units file" in r.output


def test_cli_build_with_recipe(tmp_path):
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "c-wat-tiny-scratch.yaml"
    write_units(tmp_path / "ok.jsonl", corpus(repos=2, files=4, per_file=1))
    r = CliRunner().invoke(
        app,
        [
            "build",
            str(tmp_path / "ok.jsonl"),
            "-o",
            str(tmp_path / "o"),
            "--recipe",
            str(recipe),
            "--set",
            "output.plots=false",
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["units_in"] == 8
    assert (tmp_path / "o" / "README.md").exists()


def test_the_fingerprint_covers_the_target_package(monkeypatch):
    """The prompts live in the target's package: a change there must make a new build, not an up-to-date one."""
    from codehone import dataset

    files = [p.name for p in dataset._target_code("c-wat")]
    assert "templates.py" in files and "judge.py" in files
    cfg = load_build_config(None, FAST)
    before = dataset.fingerprint([], cfg)
    monkeypatch.setattr(dataset, "_target_code", lambda _t: [Path(__file__)])  # any other code
    assert dataset.fingerprint([], cfg) != before
