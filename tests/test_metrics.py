"""The verdict schema's rates count what their names say, on verdicts from the real rust and zig judges.

Each test here failed before the schema (targets/verdict.py): zig counted a failing test as a
compile error, rust counted a killed compiler as a compile, and the clippy average took failed
compiles in at 0 warnings each.
"""

from __future__ import annotations

from codehone.check import check, summarize
from codehone.targets import verdict as schema

RUST_OK = "/// Adds one.\npub fn inc(x: i32) -> i32 {\n    x + 1\n}\n"
RUST_FIVE_CLIPPY = """\
pub fn f(v: &Vec<i32>) -> i32 {
    let mut n = 0;
    for i in 0..v.len() {
        n += v[i];
    }
    return n;
}

pub fn g(x: bool) -> bool {
    if x == true { true } else { false }
}
"""
RUST_BROKEN = "pub fn f() -> i32 { \"not an int\" }\n"
ZIG_FAILING_TEST = """\
const std = @import("std");
pub fn add(a: i32, b: i32) i32 {
    return a + b;
}
test "add" {
    try std.testing.expect(add(1, 2) == 4);
}
"""
ZIG_TYPE_ERROR = "pub fn f() i32 {\n    return \"x\";\n}\n"


def _check(target, codes, **options):
    return check(target, codes, jobs=1, cache_dir=False, options=options)


def test_zig_code_that_compiles_but_fails_its_test_is_compiled():
    fail_test, type_error = _check("zig", [ZIG_FAILING_TEST, ZIG_TYPE_ERROR])
    assert fail_test.stage == "test" and not fail_test.ok
    assert fail_test.counts["compiled"] and fail_test.counts["errors"] == 0
    assert fail_test.counts["run"] == 1 and fail_test.counts["failed"] == 1
    assert not type_error.counts["compiled"] and type_error.counts["errors"] >= 1
    s = summarize([fail_test, type_error], 1.0)
    assert s["compile_rate"] == 0.5 and s["pass_rate"] == 0.0


def test_a_rust_compile_that_times_out_is_not_compiled():
    (v,) = _check("rust", [RUST_OK], timeout_s=0.01)
    assert not v.ok and not v.counts["compiled"] and v.counts["timeouts"] == 1 and v.counts["errors"] == 0
    assert summarize([v], 1.0)["compile_rate"] == 0.0


def test_clippy_average_is_over_compiled_code_only():
    five, broken = _check("rust", [RUST_FIVE_CLIPPY, RUST_BROKEN])
    assert five.counts["compiled"] and five.counts["clippy_warnings"] == 5, five.counts["clippy"]
    assert not broken.counts["compiled"]
    s = summarize([five, broken], 1.0)
    assert s["avg_clippy_warnings"] == 5.0 and s["compile_rate"] == 0.5
    assert s["avg_warnings"] == five.counts["warnings"] >= 5


def test_rust_without_tests_passes_the_judge_but_is_not_a_verified_pass():
    (v,) = _check("rust", [RUST_OK])
    assert v.ok and v.counts["compiled"] and v.counts["run"] == 0
    assert not schema.verified(v) and schema.passed_without_running(v)
    s = summarize([v], 1.0)
    assert s["ok"] == 1 and s["pass_rate"] == 0.0 and s["passed_without_running"] == 1
