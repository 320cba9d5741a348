"""The Zig judge, on the real zig 0.17 compiler: right stage for good and bad code, hostile tests contained.

The first test of a session warms the judge's seed zig cache (compiler_rt and
std, ~10 s once per machine); after that a check with tests takes 1-2 s.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from codehone import sandbox
from codehone.targets.zig import judge as zig

GOOD = """\
const std = @import("std");

/// Sum of a slice.
pub fn sum(xs: []const i64) i64 {
    var total: i64 = 0;
    for (xs) |x| total += x;
    return total;
}

fn twice(x: i64) i64 {
    return 2 * x;
}

test "sum" {
    try std.testing.expectEqual(@as(i64, 6), sum(&.{ 1, 2, 3 }));
}

test "twice" {
    try std.testing.expectEqual(@as(i64, 8), twice(4));
}
"""


def test_good_code_passes_and_runs_tests():
    v = zig.judge(GOOD)
    assert v.ok, v.diagnostics
    assert v.stage == "test"
    assert v.counts["tests_passed"] == 2 and v.counts["tests_failed"] == 0
    assert v.isolation == sandbox.best_isolation()


def test_code_without_tests_stops_at_compile():
    v = zig.judge("pub fn one() u8 {\n    return 1;\n}\n")
    assert v.ok and v.stage == "compile"


def test_syntax_error_fails_at_parse():
    v = zig.judge("pub fn f( u8 {}\n")
    assert not v.ok and v.stage == "parse"
    assert v.diagnostics and v.diagnostics[0].line == 1


def test_type_error_in_unreferenced_function_is_caught():
    """ast-check alone passes this; only the reference block makes zig analyse `bad`."""
    src = "fn bad() u8 {\n    return 300;\n}\npub fn ok() u8 {\n    return 1;\n}\n"
    v = zig.judge(src)
    assert not v.ok and v.stage == "compile"
    assert any(d.line == 2 and "300" in d.message for d in v.diagnostics)


def test_generic_functions_are_referenced_without_address():
    src = "pub fn max(comptime T: type, a: T, b: T) T {\n    return if (a > b) a else b;\n}\n"
    assert "_ = max;" in zig.references(src)
    v = zig.judge(src)
    assert v.ok, v.diagnostics


def test_failing_test_fails_at_test_stage():
    v = zig.judge(GOOD.replace("@as(i64, 8), twice(4)", "@as(i64, 9), twice(4)"))
    assert not v.ok and v.stage == "test"
    assert v.counts["tests_passed"] == 1 and v.counts["tests_failed"] == 1
    assert any("twice" in d.message for d in v.diagnostics)


# --- adversarial ------------------------------------------------------------------------------


def test_embed_file_of_host_file_fails():
    v = zig.judge('const p = @embedFile("/etc/passwd");\npub fn n() usize {\n    return p.len;\n}\n')
    assert not v.ok and v.stage == "compile"
    assert not any("root:x:0" in d.message for d in v.diagnostics)


def test_infinite_loop_in_test_is_killed():
    src = (
        'const std = @import("std");\n'
        'test "spin" {\n    var i: u64 = 0;\n    while (true) {\n        i +%= 1;\n'
        "        std.mem.doNotOptimizeAway(i);\n    }\n}\n"
    )
    t0 = time.monotonic()
    v = zig.judge(src, test_timeout_s=2)
    assert not v.ok and v.stage == "test"
    assert any(d.code == "sandbox" for d in v.diagnostics)
    assert time.monotonic() - t0 < 60


def test_memory_bomb_in_test_fails():
    src = (
        'const std = @import("std");\n'
        'test "mem" {\n    const buf = try std.heap.page_allocator.alloc(u8, 1 << 34);\n    @memset(buf, 1);\n}\n'
    )
    v = zig.judge(src)
    assert not v.ok and v.stage == "test"


def test_output_flood_in_test_is_killed():
    src = 'const std = @import("std");\ntest "flood" {\n    while (true) std.debug.print("flood flood\\n", .{});\n}\n'
    v = zig.judge(src, test_timeout_s=20)
    assert not v.ok and v.stage == "test"
    assert any(d.code == "sandbox" for d in v.diagnostics)


def test_write_outside_temp_dir_does_not_reach_host(tmp_path: Path):
    target = tmp_path / "pwned.txt"
    src = (
        'const std = @import("std");\n'
        'test "write" {\n    const io = std.testing.io;\n'
        f'    const f = try std.Io.Dir.cwd().createFile(io, "{target}", .{{}});\n    f.close(io);\n}}\n'
    )
    v = zig.judge(src)
    assert not v.ok and v.stage == "test"
    assert not target.exists()


@pytest.mark.skipif(sandbox.best_isolation() == "rlimits", reason="no network namespace")
def test_network_connection_fails():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    src = (
        'const std = @import("std");\n'
        'test "net" {\n    const io = std.testing.io;\n'
        f'    const addr = try std.Io.net.IpAddress.parse("127.0.0.1", {port});\n'
        "    var s = try addr.connect(io, .{ .mode = .stream });\n    s.close(io);\n}\n"
    )
    try:
        v = zig.judge(src)
    finally:
        srv.close()
    assert not v.ok and v.stage == "test"
    assert v.counts["tests_failed"] == 1


def test_seed_cache_is_not_changed_by_a_run():
    """Every run works on a private copy of the warmed zig cache, so no candidate can poison it."""
    seed = zig.seed_cache()
    before = sorted((str(p.relative_to(seed)), p.stat().st_mtime_ns) for p in seed.rglob("*"))
    v = zig.judge(
        'const std = @import("std");\ntest "fmt" {\n    try std.testing.expect(std.fmt.count("{d}", .{7}) == 1);\n}\n'
    )
    assert v.ok, v.diagnostics
    after = sorted((str(p.relative_to(seed)), p.stat().st_mtime_ns) for p in seed.rglob("*"))
    assert before == after


def test_comptime_infinite_loop_is_killed():
    src = (
        "pub const x = blk: {\n    @setEvalBranchQuota(1 << 31);\n    var i: u64 = 0;\n"
        "    while (true) {\n        i +%= 1;\n    }\n    break :blk i;\n};\n"
    )
    t0 = time.monotonic()
    v = zig.judge(src, timeout_s=3)
    assert not v.ok and v.stage == "compile"
    assert any("timeout" in d.message for d in v.diagnostics)
    assert time.monotonic() - t0 < 20


def test_fallback_isolation_is_recorded():
    v = zig.judge("pub fn one() u8 {\n    return 1;\n}\n", isolation="rlimits")
    assert v.ok and v.isolation == "rlimits"


def test_memory_leak_in_test_fails():
    src = (
        'const std = @import("std");\n'
        'test "leak" {\n    _ = try std.testing.allocator.alloc(u8, 10);\n}\n'
        'test "fine" {\n    try std.testing.expect(true);\n}\n'
    )
    v = zig.judge(src)
    assert not v.ok and v.stage == "test"
    assert v.counts["tests_leaked"] == 1 and v.counts["tests_failed"] == 1 and v.counts["tests_passed"] == 1
    assert any(d.code == "test_leak" and "test.leak" in d.message for d in v.diagnostics)


def test_worker_cache_is_put_back_exactly(tmp_path):
    # What a compile leaves in the writable cache copy must not reach the next candidate.
    from codehone.targets.zig.judge import _WorkerCache

    seed = tmp_path / "seed"
    (seed / "z").mkdir(parents=True)
    (seed / "z" / "a").write_bytes(b"zir")
    (seed / "h").mkdir()
    (seed / "h" / "m").write_text("manifest")
    wc = _WorkerCache(seed)
    assert wc.restore() == 0
    (wc.dir / "z" / "a").write_bytes(b"poisoned")  # modified
    (wc.dir / "h" / "m").unlink()  # removed
    (wc.dir / "o").mkdir()  # added folder with a file
    (wc.dir / "o" / "x.o").write_bytes(b"obj")
    (wc.dir / "z" / "new").write_bytes(b"added")
    assert wc.restore() == 4
    assert (wc.dir / "z" / "a").read_bytes() == b"zir" and (wc.dir / "h" / "m").read_text() == "manifest"
    assert not (wc.dir / "o").exists() and not (wc.dir / "z" / "new").exists()
    assert wc.restore() == 0
    assert (seed / "z" / "a").read_bytes() == b"zir"  # the seed itself was never touched
