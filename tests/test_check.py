"""The dispatcher: order-preserving parallel judging, the content-addressed cache, and the CLI's errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codehone.check import CheckError, Item, cache_key, check
from codehone.cli import app

GOOD = "/// One.\npub fn one() -> i32 {\n    1\n}\n"
BAD = 'pub fn one() -> i32 {\n    "one"\n}\n'
LINT = "pub fn add(a: i32, b: i32) -> i32 {\n    return a + b;\n}\n"


def test_parallel_results_keep_input_order(tmp_path: Path):
    cands = [GOOD, BAD, LINT, BAD]
    vs = check("rust", cands, jobs=2, cache_dir=tmp_path / "c")
    assert [v.ok for v in vs] == [True, False, True, False]
    assert [v.stage for v in vs] == ["lint", "compile", "lint", "compile"]
    assert vs[2].counts["clippy"] == {"needless_return": 1}
    assert all(v.isolation and v.toolchain and v.target == "rust" for v in vs)


def test_cache_hit_is_identical_and_fast(tmp_path: Path):
    cache = tmp_path / "verdicts"
    t0 = time.monotonic()
    cold = check("rust", [GOOD, BAD], cache_dir=cache)
    t_cold = time.monotonic() - t0
    t0 = time.monotonic()
    warm = check("rust", [GOOD, BAD], cache_dir=cache)
    t_warm = time.monotonic() - t0
    assert [v.cached for v in cold] == [False, False]
    assert [v.cached for v in warm] == [True, True]
    for a, b in zip(cold, warm, strict=True):
        assert (a.ok, a.stage, a.counts, a.diagnostics) == (b.ok, b.stage, b.counts, b.diagnostics)
    assert t_warm < t_cold / 5
    assert len(list(cache.rglob("*.json"))) == 2


def test_cache_key_covers_candidate_target_toolchain_and_options():
    base = cache_key("rust", GOOD, None, {}, "rustc 1", "bwrap")
    assert base != cache_key("rust", GOOD + " ", None, {}, "rustc 1", "bwrap")
    assert base != cache_key("zig", GOOD, None, {}, "rustc 1", "bwrap")
    assert base != cache_key("rust", GOOD, None, {}, "rustc 2", "bwrap")
    assert base != cache_key("rust", GOOD, None, {"run_tests": False}, "rustc 1", "bwrap")
    assert base != cache_key("rust", GOOD, None, {}, "rustc 1", "rlimits")
    assert base == cache_key("rust", GOOD, None, {}, "rustc 1", "bwrap")


def test_options_change_the_verdict_key(tmp_path: Path):
    src = (
        GOOD
        + "#[cfg(test)]\nmod t {\n    #[test]\n    fn f() {\n        assert_eq!(super::one(), 2);\n    }\n}\n"
    )
    a = check("rust", [src], cache_dir=tmp_path)[0]
    b = check("rust", [src], cache_dir=tmp_path, options={"run_tests": False})[0]
    assert not b.cached
    assert (a.ok, a.stage) == (False, "test")
    assert (b.ok, b.stage) == (True, "lint")


def test_deleted_cache_is_rebuilt(tmp_path: Path):
    import shutil

    check("rust", [GOOD], cache_dir=tmp_path / "c")
    shutil.rmtree(tmp_path / "c")
    v = check("rust", [GOOD], cache_dir=tmp_path / "c")[0]
    assert v.ok and not v.cached


def test_zig_through_the_dispatcher(tmp_path: Path):
    vs = check(
        "zig",
        ["pub fn one() u8 {\n    return 1;\n}\n", "pub fn one() u8 {\n    return 256;\n}\n"],
        jobs=2,
        cache_dir=False,
    )
    assert [(v.ok, v.stage) for v in vs] == [(True, "compile"), (False, "compile")]


def test_bad_inputs_raise_check_error(tmp_path: Path):
    with pytest.raises(CheckError, match="unknown target"):
        check("cobol", [GOOD])
    with pytest.raises(CheckError, match="unit_id"):
        check("rust", [{"candidate": GOOD, "unit_id": "abc"}], cache_dir=False)
    with pytest.raises(CheckError, match='no "candidate"'):
        check("rust", [{"code_missing": 1}], cache_dir=False)
    with pytest.raises(CheckError, match="c-wat needs the reference modules"):
        check("c-wat", [Item("(func)", unit={"id": "u"})], cache_dir=False)


# --- CLI ---------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_jsonl_batch_writes_verdicts(tmp_path: Path):
    samples = tmp_path / "samples.jsonl"
    samples.write_text(
        json.dumps({"candidate": GOOD, "id": "a"}) + "\n" + json.dumps({"candidate": BAD, "id": "b"}) + "\n"
    )
    out = tmp_path / "verdicts.jsonl"
    r = runner.invoke(
        app,
        [
            "check",
            "--target",
            "rust",
            str(samples),
            "-j",
            "2",
            "-o",
            str(out),
            "--cache",
            str(tmp_path / "c"),
        ],
    )
    assert r.exit_code == 1  # one candidate failed
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(x["index"], x["id"], x["verdict"]["ok"]) for x in rows] == [(0, "a", True), (1, "b", False)]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["candidates"] == 2 and summary["ok"] == 1


def test_cli_single_file_passes(tmp_path: Path):
    f = tmp_path / "lib.rs"
    f.write_text(GOOD)
    r = runner.invoke(app, ["check", "-t", "rust", str(f), "--no-cache"])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(
    "args, content, expect",
    [
        (["-t", "rust"], '{"candidate": "x"}\n{broken\n', ":2: malformed JSONL line"),
        (["-t", "cobol"], '{"candidate": "x"}\n', "unknown target 'cobol'"),
        (["-t", "rust"], '{"candidate": "x", "unit_id": "u1"}\n', "no --units file"),
        (["-t", "rust"], None, "no such file"),
    ],
)
def test_cli_bad_input_is_one_line_error(tmp_path: Path, args, content, expect):
    p = tmp_path / "s.jsonl"
    if content is not None:
        p.write_text(content)
    r = runner.invoke(app, ["check", *args, str(p), "--no-cache"])
    assert r.exit_code == 2
    assert expect in r.output
    assert "Traceback" not in r.output
    assert len([x for x in r.output.splitlines() if x.strip()]) == 1


def test_judge_crash_is_an_internal_verdict_and_not_cached(tmp_path: Path):
    """A judge that raises (here: a nonsense option) gives one failed verdict with the reason, never a cache entry."""
    v = check("rust", [GOOD], cache_dir=tmp_path, options={"timeout_s": "soon"})[0]
    assert not v.ok and v.stage == "internal"
    assert "judge crashed: ValueError" in v.diagnostics[0].message
    assert list(tmp_path.rglob("*.json")) == []


def test_c_wat_batches_keep_a_units_candidates_together():
    from codehone.check import batches

    def unit(name):
        return {"name": name, "meta": {"module": "m", "wat_name": "$" + name}}

    items = [Item("c", unit=unit(n)) for n in ["a", "b", "a", "c", "a", "b"]]
    got = batches(list(range(6)), items, jobs=2, by_unit=True)
    assert got == [[0, 2, 4], [1, 5], [3]]
    assert batches([0, 1], items, jobs=2, by_unit=False) == [[0], [1]]
    # one unit, many candidates: halved until every worker has a batch
    one = [Item("c", unit=unit("a")) for _ in range(5)]
    assert batches(list(range(5)), one, jobs=2, by_unit=True) == [[2, 3, 4], [0, 1]]
    assert batches([0], one, jobs=4, by_unit=True) == [[0]]
    assert batches([], one, jobs=2, by_unit=True) == []


def test_a_check_resumed_from_the_cache_writes_the_bytes_of_a_fresh_one(tmp_path: Path):
    """Kill a check half way (here: run its first half), rerun it: -o holds what a fresh run writes."""
    samples = tmp_path / "s.jsonl"
    rows = [{"id": f"c{i}", "candidate": c} for i, c in enumerate([GOOD, BAD, GOOD + "\n// x\n"])]
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    half = tmp_path / "half.jsonl"
    half.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    cache = tmp_path / "cache"
    runner.invoke(app, ["check", "-t", "rust", str(half), "-j", "1", "--cache", str(cache), "-o", str(tmp_path / "h")])
    resumed = runner.invoke(app, ["check", "-t", "rust", str(samples), "-j", "1", "--cache", str(cache),
                                  "-o", str(tmp_path / "resumed.jsonl")])
    fresh = runner.invoke(app, ["check", "-t", "rust", str(samples), "-j", "1", "--no-cache",
                                "-o", str(tmp_path / "fresh.jsonl")])
    assert resumed.exit_code == fresh.exit_code == 1  # BAD fails
    assert '"cached": 2' in resumed.output  # the first two came from the cache
    assert (tmp_path / "resumed.jsonl").read_bytes() == (tmp_path / "fresh.jsonl").read_bytes()
