"""`codehone mine` for c-wat on small repositories written here: real zig cc, real wasm2wat."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codehone.mine import MineConfig, run_mine
from codehone.records import read_jsonl
from codehone.sources import Source, SourceError, WalkOptions, WalkStats, resolve, walk
from codehone.targets.c_wat import mine as c_wat


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def mine(root: Path, out: Path, jobs: int = 1, **walk_kw) -> tuple[dict, list[dict]]:
    stats = run_mine([resolve(str(root))], out, MineConfig(jobs=jobs, walk=WalkOptions(**walk_kw)))
    units = list(read_jsonl(out / "units.jsonl")) if (out / "units.jsonl").exists() else []
    return stats, units


def by_name(units: list[dict]) -> dict[str, dict]:
    return {u["name"]: u for u in units}


STATIC_SRC = """
#include <string.h>
/** Counts bytes equal to c. */
static int count(const char *s, char c) {
    int n = 0;
    for (; *s; s++) n += (*s == c);
    return n;
}
static int unused_helper(int x) { return x * 7 + 3; }
int spaces(const char *s) { return count(s, ' ') + (int)strlen(s) * 0; }
"""


def test_static_and_unused_helpers_become_units(tmp_path):
    repo = write(tmp_path / "repo", {"LICENSE": "Permission is hereby granted, free of charge, to any person",
                                     "src/text.c": STATIC_SRC})
    stats, units = mine(repo, tmp_path / "out")
    u = by_name(units)
    assert set(u) == {"count", "unused_helper", "spaces"}
    assert stats["yield"] == 1.0
    helper = u["unused_helper"]["artifact"]
    assert helper.startswith("(func $unused_helper (param i32) (result i32)")
    assert "i32.mul" in helper and "i32.const 7" in helper
    for unit in units:  # the function alone: no module boilerplate
        art = unit["artifact"]
        assert art.count("(func ") == 1
        for boiler in ("(module", "(export", "(type ", "(memory", "(table", "(data", "producers"):
            assert boiler not in art
        assert unit["license"] == "MIT"
        assert unit["path"] == "src/text.c"
        assert unit["meta"]["toolchain"]["zig"]
        assert (tmp_path / "out" / "modules" / f"{unit['meta']['module']}.wasm").exists()
    assert u["count"]["doc"] == "Counts bytes equal to c."
    assert u["count"]["meta"]["static"] is True
    assert u["count"]["line"] == 4


def test_functions_inside_if_blocks(tmp_path):
    src = """
#define HAVE_FAST 1
#if HAVE_FAST
int fast(int x) { return x << 1; }
#endif
#if 0
int never(int x) { return x; }
#endif
#ifdef USE_ALT
int alt_impl(int x) { return x - 1; }
#endif
#ifdef USE_ALT
int pick(int x) { return x + 100; }
#else
int pick(int x) { return x + 200; }
#endif
"""
    stats, units = mine(write(tmp_path / "r", {"a.c": src}), tmp_path / "out")
    u = {(x["name"], x["line"]): x for x in units}
    names = sorted(x["name"] for x in units)
    assert names == ["alt_impl", "fast", "pick", "pick"]
    # The #else version is built in the normal configuration, the #ifdef one in the alternative.
    pick_else = [x for x in units if x["name"] == "pick" and "i32.const 200" in x["artifact"]]
    pick_alt = [x for x in units if x["name"] == "pick" and "i32.const 100" in x["artifact"]]
    assert len(pick_else) == 1 and len(pick_alt) == 1
    assert pick_alt[0]["meta"]["config_defines"] == ["USE_ALT"]
    assert pick_else[0]["meta"]["module"] != pick_alt[0]["meta"]["module"]
    assert stats["failure_reasons"] == {"inactive_preprocessor_branch": 1}  # `never`
    assert u[("fast", 4)]["meta"]["in_preproc"] is True


def test_multi_file_repository_with_its_own_headers_and_types(tmp_path):
    repo = write(tmp_path / "proj", {
        "include/proj/types.h": "#pragma once\ntypedef struct { int x, y; } point_t;\n#define SCALE 3\n",
        "include/proj/api.h": "#pragma once\n#include <proj/types.h>\nint dot(point_t a, point_t b);\n",
        "src/internal.h": "#pragma once\n#include <proj/types.h>\nstatic inline int sq(int v) { return v * v; }\n",
        "src/geom.c": '#include <proj/api.h>\n#include "internal.h"\n'
                      "int dot(point_t a, point_t b) { return a.x * b.x + a.y * b.y; }\n"
                      "int norm2(point_t a) { return sq(a.x) * SCALE + sq(a.y); }\n",
    })
    stats, units = mine(repo, tmp_path / "out")
    u = by_name(units)
    assert {"dot", "norm2", "sq"} <= set(u)
    assert "-I" + str((repo / "include").resolve()) in u["dot"]["meta"]["flags"]  # learned from the error
    assert u["sq"]["meta"]["header"] is True


def test_header_only_library(tmp_path):
    lib = """#ifndef TINY_H
#define TINY_H
int tiny_clamp(int v, int lo, int hi);
#endif
#ifdef TINY_IMPLEMENTATION
int tiny_clamp(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }
static int tiny_private(int v) { return v ^ 0x5a; }
#endif
"""
    stats, units = mine(write(tmp_path / "r", {"tiny.h": lib}), tmp_path / "out")
    assert {"tiny_clamp", "tiny_private"} == set(by_name(units))
    assert "-DTINY_IMPLEMENTATION" in units[0]["meta"]["flags"]


def test_failure_classification(tmp_path):
    repo = write(tmp_path / "r", {
        "missing.c": '#include "nowhere.h"\nint f(void) { return 1; }\n',
        "undeclared.c": "int g(void) { return not_declared_anywhere + 1; }\n",
        "badtype.c": "int h(widget_t w) { return 0; }\n",
        "implicit.c": "int k(void) { return mystery_function(3); }\n",
        "ok.c": "int fine(int a) { return a * a; }\n",
    })
    stats, units = mine(repo, tmp_path / "out")
    assert [u["name"] for u in units] == ["fine"]
    assert stats["failure_reasons"] == {
        "missing_header": 1, "undeclared_identifier": 1, "unknown_type": 1, "implicit_function": 1}
    assert "nowhere.h" in stats["failure_examples"]["missing_header"]
    assert stats["files_failed"]["missing_header"] == 1


def test_compiler_hang_is_timed_out(tmp_path):
    # Each level doubles the expansion: 2**40 tokens would take the compiler forever.
    lines = ["#define A0 x"] + [f"#define A{i} A{i - 1} A{i - 1}" for i in range(1, 41)]
    src = "\n".join(lines) + "\nint boom(int x) { return A40; }\n"
    repo = write(tmp_path / "r", {"boom.c": src, "ok.c": "int fine(void) { return 2; }\n"})
    cfg = MineConfig(jobs=1, opts=c_wat.MineOptions(timeout_s=3))
    t0 = time.monotonic()
    stats = run_mine([resolve(str(repo))], tmp_path / "out", cfg)
    assert time.monotonic() - t0 < 30
    assert stats["failure_reasons"].get("timeout", 0) + stats["failure_reasons"].get("compiler_crash", 0) == 1
    assert stats["units_written"] == 1


def test_bad_inputs_binary_non_utf8_symlink_loop_huge_empty(tmp_path):
    repo = write(tmp_path / "r", {
        "bin.c": b"\x7fELF\x00\x00\x01\x02" * 100,
        "latin1.c": "/* caf\xe9 */\nint latin(void) { return 7; }\n".encode("latin-1"),
        "huge.c": "int big(void) { return 1; }\n" + "/*" + "x" * 200_000 + "*/\n",
        "empty.c": "",
        "sub/ok.c": "int ok(void) { return 3; }\n",
    })
    (repo / "sub" / "loop").symlink_to(repo, target_is_directory=True)
    (repo / "sub" / "self").symlink_to(repo / "sub" / "self")  # a self-loop
    outside = write(tmp_path / "outside", {"secret.c": "int secret(void) { return 42; }\n"})
    (repo / "escape.c").symlink_to(outside / "secret.c")
    stats, units = mine(repo, tmp_path / "out", max_bytes=100_000)
    assert sorted(u["name"] for u in units) == ["latin", "ok"]
    sk = stats["files_skipped"]
    assert sk["binary"] == 1 and sk["too_large"] == 1 and sk["empty_file"] == 1
    assert sk["symlink_outside_tree"] == 1 and sk["symlink_dir"] == 1 and sk["broken_or_looping_symlink"] == 1
    assert stats["files_non_utf8"] == 1


def test_empty_repository_and_excluded_folders(tmp_path):
    with pytest.raises(SourceError, match="no .c/.h file; nothing to mine"):  # an error, not an empty success
        mine(write(tmp_path / "empty", {"README": "nothing"}), tmp_path / "o1")
    with pytest.raises(SourceError, match=r"skipped by default \(tests: --include-tests"):
        mine(write(tmp_path / "only_tests", {"tests/t.c": "int t(void) { return 1; }\n"}), tmp_path / "o2")
    repo = write(tmp_path / "r", {
        "lib/a.c": "int a(void) { return 1; }\n",
        "tests/t.c": "int t(void) { return 1; }\n",
        "vendor/v.c": "int v(void) { return 1; }\n",
        "examples/e.c": "int e(void) { return 1; }\n",
        "lib/test_a.c": "int ta(void) { return 1; }\n",
    })
    st = WalkStats()
    assert [p.name for p in walk(repo, WalkOptions(), st)] == ["a.c"]
    names = [p.name for p in walk(repo, WalkOptions(include_tests=True, include_examples=True), WalkStats())]
    assert sorted(names) == ["a.c", "e.c", "t.c", "test_a.c"]


def test_exact_duplicates_kept_once(tmp_path):
    body = "int twin(int a) {\n  return a + 41;\n}\n"
    repo = write(tmp_path / "r", {"x/a.c": body, "y/b.c": "/* other file */\n" + body.replace("  ", "    ")})
    stats, units = mine(repo, tmp_path / "out")
    assert len(units) == 1 and stats["exact_duplicates"] == 1


def test_cli_missing_path_is_one_line_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "codehone.cli", "mine", str(tmp_path / "nope"), "-o", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "source not found" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_list_file_with_comments_and_per_source_flags(tmp_path):
    repo = write(tmp_path / "r", {"cfg/conf.h": "#define K 9\n", "a.c": '#include "conf.h"\nint k(void){return K;}\n'})
    lst = tmp_path / "repos.txt"
    lst.write_text(f"# my sources\n\n{repo} -I cfg -D EXTRA=1  # trailing comment\n")
    from codehone.mine import collect_sources

    (src,) = collect_sources([], [lst])
    assert src.include_dirs == [str((repo / "cfg").resolve())] and src.defines == ["EXTRA=1"]
    stats = run_mine([src], tmp_path / "out", MineConfig(jobs=1))
    assert stats["units_written"] == 1


def _make_repo(root: Path, n_files: int) -> Path:
    # Headers in folders the files do not name relative to themselves: the include folders must be
    # found, and must be the same in every run whichever file a worker compiles first.
    files = {"inc/a/scale.h": "#define SCALE 3\n", "ext/b/bias.h": "#define BIAS 7\n",
             "src/dup1.c": "int twin(int a) { return a + 41; }\n",
             "src/dup2.c": "int twin(int a) {\n    return a + 41;\n}\n"}
    for i in range(n_files):
        funcs = "\n".join(
            f"static int f{i}_{j}(int x) {{ return x * {i + 2} + {j}; }}" for j in range(6)
        )
        head = '#include "a/scale.h"\n' if i % 2 else '#include <b/bias.h>\n'
        use = "SCALE" if i % 2 else "BIAS"
        files[f"src/m{i:03d}.c"] = (head + funcs +
                                    f"\nint entry{i}(int x) {{ return f{i}_0(x) + f{i}_5(x) + {use}; }}\n")
    return write(root, files)


@pytest.mark.slow
def test_kill_and_resume_loses_and_duplicates_nothing(tmp_path):
    repo = _make_repo(tmp_path / "repo", 40)
    ref_out, out = tmp_path / "ref", tmp_path / "out"
    _, ref_units = mine(repo, ref_out, jobs=2)
    assert len(ref_units) == 40 * 7 + 1  # the twins are one unit
    flags = {tuple(u["meta"]["flags"]) for u in ref_units}
    assert len(flags) == 1 and all(f.count(x) <= 1 for f in flags for x in f)  # one flag set, no repeats
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "codehone.cli", "mine", str(repo), "-o", str(out), "-j", "2"]
    kills = 0
    for delay in (1.0, 1.5, 2.0):
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        time.sleep(delay)
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)  # a real kill, workers included
            kills += 1
        p.wait()
    assert kills >= 1, "the run finished before it could be killed; make the repo bigger"
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    units = list(read_jsonl(out / "units.jsonl"))
    ids = [u["id"] for u in units]
    assert len(ids) == len(set(ids)), "a unit was written twice"
    assert set(ids) == {u["id"] for u in ref_units}, "a unit was lost"
    stats = json.loads((out / "stats.json").read_text())
    assert stats["units_written"] == len(ref_units) and stats["files_mined"] == 44  # 42 .c files and 2 headers
    # A resumed run equals a fresh one byte for byte (flags, kept twin, order), not only in its ids.
    assert (out / "units.jsonl").read_bytes() == (ref_out / "units.jsonl").read_bytes()


def test_mine_file_api_reports_reasons_per_function(tmp_path):
    # The file compiles; two of its three functions are lost, each for its own reason (not a file-level one).
    repo = write(tmp_path / "r", {"a.c": "int thrice(int x) { return 3 * x; }\nvoid nothing(void) {}\n"
                                        "#if 0\nint hidden(int x) { return x; }\n#endif\n"})
    src = Source(root=repo.resolve(), name="r")
    res = c_wat.mine_file(repo.resolve() / "a.c", src, c_wat.MineOptions())
    assert res.functions == 3 and res.file_reason is None
    assert [u["name"] for u in res.units] == ["thrice"]
    assert dict(res.failures) == {"empty_body": 1, "inactive_preprocessor_branch": 1}
    assert "nothing" in res.examples["empty_body"] and "hidden" in res.examples["inactive_preprocessor_branch"]


def test_git_url_is_shallow_cloned_and_commit_recorded(tmp_path):
    repo = write(tmp_path / "gitrepo", {"COPYING": "Redistribution and use in source and binary forms, "
                                                    "... Neither the name of the copyright holder",
                                        "lib.c": "int from_git(int a) { return a - 5; }\n"})
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["git", "init", "-q"], ["git", "add", "."], ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=repo, check=True, env=env)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    from codehone.mine import collect_sources

    url = f"file://{repo}"
    (src,) = collect_sources([url], [], cache=tmp_path / "cache")
    assert src.commit == head and src.url == url and src.license == "BSD-3-Clause"
    assert (tmp_path / "cache" / "git").is_dir()
    stats = run_mine([src], tmp_path / "out", MineConfig(jobs=1))
    (unit,) = list(read_jsonl(tmp_path / "out" / "units.jsonl"))
    assert unit["commit"] == head and unit["repo_url"] == url and unit["repo"] == "gitrepo"
    assert stats["units_written"] == 1


def test_header_that_only_compiles_inside_its_includer(tmp_path):
    repo = write(tmp_path / "r", {
        "helpers.h": '#ifndef WINDOW\n#error "WINDOW must be defined"\n#endif\n'
                     "static inline u32 rot(u32 x) { return (x << WINDOW) | (x >> (32 - WINDOW)); }\n",
        "impl.c": 'typedef unsigned u32;\n#define WINDOW 16\n#include "helpers.h"\n'
                  "u32 use(u32 x) { return rot(x) + 1; }\n",
    })
    stats, units = mine(repo, tmp_path / "out")
    u = by_name(units)
    assert set(u) == {"rot", "use"}
    assert u["rot"]["path"] == "helpers.h" and u["rot"]["meta"]["compiled_via"] == "impl.c"
    assert "i32.rotl" in u["rot"]["artifact"] or "i32.shl" in u["rot"]["artifact"]
    assert stats["failure_reasons"] == {}


def test_main_is_mined_under_its_wasm_name_and_passes_its_judge(tmp_path):
    """wasm32-wasi renames `int main(void)`; the unit is that function, judged under that name."""
    from codehone.check import check

    repo = write(tmp_path / "r", {"prog.c": "static int twice(int x) { return 2 * x; }\n"
                                           "int main(void) { return twice(21); }\n"})
    run_mine([Source(root=repo.resolve(), name="r")], tmp_path / "out", MineConfig(jobs=1))
    units = {u["name"]: u for u in read_jsonl(tmp_path / "out" / "units.jsonl")}
    assert set(units) == {"twice", "main"}
    main = units["main"]
    assert main["meta"]["wat_name"] in c_wat.MAIN_NAMES and main["artifact"].startswith(f"(func {main['meta']['wat_name']}")
    (v,) = check("c-wat", [{"candidate": main["artifact"], "unit": main}], cache_dir=False,
                 options={"modules_dir": str(tmp_path / "out" / "modules")})
    assert v.ok and v.counts["run"] >= 1, v.diagnostics
