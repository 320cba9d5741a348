"""The Rust judge, on real rustc/clippy: right stage for good and bad code, exact clippy counts, hostile tests contained."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import pytest

from codehone import sandbox
from codehone.targets.rust import judge as rust
from codehone.targets.rust import metrics as rust_metrics

pytestmark = pytest.mark.skipif(shutil.which("rustc") is None, reason="rustc not installed")

GOOD = """\
//! Small numeric helpers.

/// A point on the plane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Horizontal position.
    pub x: i64,
    /// Vertical position.
    pub y: i64,
}

impl Point {
    /// Manhattan distance to the origin.
    pub fn norm1(&self) -> i64 {
        self.x.abs() + self.y.abs()
    }
}

/// Sum of the even numbers.
pub fn sum_even(v: &[i64]) -> i64 {
    v.iter().filter(|x| *x % 2 == 0).sum()
}

/// Parse a number, or say why not.
pub fn parse(s: &str) -> Result<i64, std::num::ParseIntError> {
    let n = s.trim().parse::<i64>()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums() {
        assert_eq!(sum_even(&[1, 2, 3, 4]), 6);
    }

    #[test]
    fn norms() {
        assert_eq!(Point { x: -2, y: 3 }.norm1(), 5);
        assert_eq!(parse(" 7 ").unwrap(), 7);
    }
}
"""

# Exactly four clippy warnings: needless_return, ptr_arg, let_and_return, len_zero.
FOUR_CLIPPY = """\
pub fn add(a: i32, b: i32) -> i32 {
    return a + b;
}

pub fn size(v: &Vec<i32>) -> usize {
    let n = v.len();
    n
}

pub fn empty(v: &[i32]) -> bool {
    v.len() == 0
}
"""


def test_good_code_passes_all_stages():
    v = rust.judge(GOOD)
    assert v.ok, v.diagnostics
    assert v.stage == "test"
    assert v.counts["tests_passed"] == 2 and v.counts["tests_failed"] == 0
    assert v.counts["clippy_warnings"] == 0 and v.counts["errors"] == 0
    assert v.counts["crate_type"] == "lib"
    assert v.isolation == sandbox.best_isolation()
    assert v.scores["doc_rate"] == 1.0
    assert v.scores["idiomatic_score"] > 0.8


def test_exact_clippy_count_per_lint():
    v = rust.judge(FOUR_CLIPPY)
    assert v.ok and v.stage == "lint"
    assert v.counts["clippy_warnings"] == 4
    assert v.counts["clippy"] == {"needless_return": 1, "ptr_arg": 1, "let_and_return": 1, "len_zero": 1}
    lines = sorted(d.line for d in v.diagnostics if d.code and d.code.startswith("clippy::"))
    assert lines == [2, 5, 7, 11]


def test_deny_warnings_fails_at_lint():
    v = rust.judge(FOUR_CLIPPY, deny_warnings=True)
    assert not v.ok and v.stage == "lint"


def test_syntax_error_fails_at_parse():
    v = rust.judge("pub fn f( -> i32 { 1 }\n")
    assert not v.ok and v.stage == "parse"
    assert v.counts["errors"] >= 1


def test_type_error_fails_at_compile_with_code_and_line():
    v = rust.judge('pub fn f() -> i32 {\n    "not a number"\n}\n')
    assert not v.ok and v.stage == "compile"
    assert any(d.code == "E0308" and d.line == 2 for d in v.diagnostics)


def test_failing_test_fails_at_test_stage():
    src = GOOD.replace("assert_eq!(sum_even(&[1, 2, 3, 4]), 6);", "assert_eq!(sum_even(&[1, 2, 3, 4]), 7);")
    v = rust.judge(src)
    assert not v.ok and v.stage == "test"
    assert v.counts["tests_passed"] == 1 and v.counts["tests_failed"] == 1
    assert any(d.code == "test_failed" and "sums" in d.message for d in v.diagnostics)


def test_bin_crate_detected():
    v = rust.judge('fn main() {\n    println!("hi");\n}\n')
    assert v.ok and v.counts["crate_type"] == "bin"


def test_idiomatic_patterns_counted_from_syntax_tree():
    src = """
pub fn f(v: &[i32]) -> i32 {
    let s = "x.unwrap() in a string does not count";
    let _ = s;
    for i in 0..v.len() { let _ = i; }
    v.first().copied().unwrap()
}
#[cfg(test)]
mod tests { #[test] fn t() { Some(1).unwrap(); } }
"""
    m = rust_metrics.analyze(rust_metrics.parse(src))
    assert m["patterns"]["unwrap_in_lib"] == 1  # not the string, not the test
    assert m["patterns"]["index_loop"] == 1
    assert m["doc_rate"] == 0.0 and m["pub_items"] == 1
    assert m["idiomatic_score"] < 0.5


# --- adversarial: each must be contained and reported as a failed verdict ------------------------


def _test_file(body: str) -> str:
    return f"pub fn one() -> i32 {{ 1 }}\n#[cfg(test)]\nmod tests {{\n    #[test]\n    fn attack() {{\n{body}\n    }}\n}}\n"


@pytest.mark.skipif(sandbox.best_isolation() != "bwrap", reason="only bwrap hides host files")
def test_include_str_of_host_file_fails_to_compile():
    v = rust.judge('pub const P: &str = include_str!("/etc/passwd");\n')
    assert not v.ok and v.stage == "compile"
    assert not any("root:x:0" in d.message for d in v.diagnostics)
    v = rust.judge('pub const P: &str = include_str!("../../../../../../etc/hostname");\n')
    assert not v.ok and v.stage == "compile"
    v = rust.judge('#[path = "/etc/passwd"]\nmod leak;\n')
    assert not v.ok and v.stage == "compile"
    assert not any("root:x:0" in d.message for d in v.diagnostics)


def test_infinite_loop_in_test_is_killed():
    t0 = time.monotonic()
    v = rust.judge(_test_file("        loop { std::hint::black_box(1); }"), test_timeout_s=2)
    assert not v.ok and v.stage == "test"
    assert any(d.code == "sandbox" for d in v.diagnostics)
    assert time.monotonic() - t0 < 30


@pytest.mark.skipif(sandbox.best_isolation() != "bwrap", reason="NPROC needs the unprivileged uid")
def test_fork_bomb_in_test_is_contained():
    body = """        let mut kids = Vec::new();
        for _ in 0..10000 {
            match std::process::Command::new("/bin/sleep").arg("30").spawn() {
                Ok(c) => kids.push(c),
                Err(_) => panic!("fork refused after {}", kids.len()),
            }
        }"""
    t0 = time.monotonic()
    v = rust.judge(_test_file(body), test_timeout_s=8)
    assert not v.ok and v.stage == "test"
    assert time.monotonic() - t0 < 30


def test_memory_bomb_in_test_fails():
    body = "        let v = vec![1u8; 1 << 34];\n        assert_eq!(v[12345], 1);"
    v = rust.judge(_test_file(body))
    assert not v.ok and v.stage == "test"


def test_output_flood_in_test_is_capped():
    body = '        loop { println!("flood flood flood flood flood flood flood flood"); }'
    t0 = time.monotonic()
    v = rust.judge(_test_file(body), test_timeout_s=20)
    assert not v.ok and v.stage == "test"
    assert time.monotonic() - t0 < 30


def test_write_outside_temp_dir_fails(tmp_path: Path):
    target = tmp_path / "pwned.txt"
    body = f'        std::fs::write("{target}", "x").unwrap();\n        std::fs::write("here.txt", "x").unwrap();'
    v = rust.judge(_test_file(body))
    assert not v.ok and v.stage == "test"
    assert not target.exists()


@pytest.mark.skipif(sandbox.best_isolation() == "rlimits", reason="no network namespace")
def test_network_connection_fails():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    body = f'        std::net::TcpStream::connect("127.0.0.1:{port}").unwrap();'
    try:
        v = rust.judge(_test_file(body))
    finally:
        srv.close()
    assert not v.ok and v.stage == "test"
    assert v.counts["tests_failed"] == 1


def test_compile_time_infinite_loop_is_stopped():
    v = rust.judge(
        "pub const X: u64 = {\n    let mut i = 0u64;\n    loop {\n        i = i.wrapping_add(1);\n    }\n};\n",
        timeout_s=5,
    )
    assert not v.ok and v.stage == "compile"


@pytest.mark.parametrize("level", ["rlimits", "unshare-net"])
def test_fallback_isolation_is_recorded(level):
    if level == "unshare-net" and sandbox.best_isolation() == "rlimits":
        pytest.skip("no network namespace on this machine")
    v = rust.judge(FOUR_CLIPPY, isolation=level)
    assert v.ok and v.isolation == level and v.counts["clippy_warnings"] == 4
