"""Bad inputs across every verb: each ends in one line naming the input and what to do, exit status 2.

The table is the contract: each row is (verb, argv, the expected message). `test_row_counts`
prints how many rows cover each verb.
"""

from __future__ import annotations

import json
import socket
import struct
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codehone import sandbox
from codehone.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    """A folder of bad inputs: an empty source, a plain file, a truncated model, corrupt JSON..."""
    d = tmp_path_factory.mktemp("bad")
    (d / "empty").mkdir()
    (d / "only_docs").mkdir()
    (d / "only_docs" / "README.md").write_text("no C here\n")
    (d / "afile").write_text("x\n")
    (d / "cand.rs").write_text("pub fn one() -> i32 { 1 }\n")
    (d / "units.jsonl").write_text('{"id": "x"\n')
    for name, cfg in (("truncated", {"model_type": "llama"}), ("badcfg", None), ("badtok", {"model_type": "llama"})):
        m = d / name
        m.mkdir()
        (m / "config.json").write_text(json.dumps(cfg) if cfg else '{"model_type": "lla')
        hdr = json.dumps({"w": {"dtype": "F32", "shape": [256], "data_offsets": [0, 1024]}}).encode()
        body = b"\0" * (100 if name == "truncated" else 1024)
        (m / "model.safetensors").write_bytes(struct.pack("<Q", len(hdr)) + hdr + body)
        if name == "badtok":
            (m / "tokenizer.json").write_text('{"version": "1.0", "trunc')
    (d / "recipe.yaml").write_text("train:\n  mode: scratch\n")
    return d


BUSY = socket.socket()
BUSY.bind(("127.0.0.1", 0))
BUSY.listen(1)
BUSY_PORT = BUSY.getsockname()[1]

# (verb, argv with {d} for the bad-inputs folder, expected text of the one line)
ROWS: list[tuple[str, list[str], str]] = [
    ("mine", ["{d}/empty", "-o", "{d}/o1"], "no .c/.h file; nothing to mine"),
    ("mine", ["{d}/only_docs", "-o", "{d}/o2"], "no .c/.h file; nothing to mine"),
    ("mine", ["{d}/nowhere", "-o", "{d}/o3"], "source not found: {d}/nowhere"),
    ("mine", ["{d}/afile", "-o", "{d}/o4"], "source is not a folder"),
    ("mine", ["{d}/empty", "-j", "-3"], "--jobs must be 0..4096"),
    ("mine", ["{d}/empty", "--max-kb", "0"], "--max-kb must be 1.."),
    ("mine", ["{d}/empty", "--timeout", "0"], "--timeout must be 0.1.."),
    ("mine", ["{d}/empty", "--memory-mb", "1"], "--memory-mb must be 64.."),
    ("mine", ["{d}/empty", "--limit", "-1"], "--limit must be >= 0"),
    ("mine", ["{d}/empty", "--opt", "-O9"], "--opt must be one of"),
    ("mine", ["{d}/empty", "-o", "{d}/afile"], "-o {d}/afile: is a file; name a folder"),
    ("mine", ["{d}/empty", "-o", "{d}/afile/sub"], "{d}/afile is a file, not a folder"),
    ("mine", ["{d}/empty", "-o", "/sys/codehone-out"], "/sys is not writable"),
    ("mine", ["-l", "{d}/nolist.txt"], "list file not found"),
    ("mine", ["{d}/empty", "-t", "nope"], "unknown target 'nope'"),
    ("build", ["{d}/nothing", "-o", "{d}/b1"], "{d}/nothing: no such units file"),
    ("build", ["{d}/units.jsonl", "-o", "{d}/b2"], "units.jsonl"),
    ("check", ["{d}/cand.rs", "-t", "rust", "-o", "{d}/empty"], "-o {d}/empty: is a folder; name a file"),
    ("check", ["{d}/cand.rs", "-t", "rust", "-o", "{d}/afile/v.jsonl"], "{d}/afile is a file, not a folder"),
    ("check", ["{d}/cand.rs", "-t", "rust", "-o", "/sys/v.jsonl"], "/sys is not writable"),
    ("check", ["{d}/cand.rs", "-t", "rust", "-j", "-1"], "--jobs must be 0..4096"),
    ("check", ["{d}/cand.rs", "-t", "rust", "--timeout", "0"], "--timeout must be 0.1.."),
    ("check", ["{d}/cand.rs", "-t", "nope"], "unknown target 'nope'"),
    ("check", ["{d}/missing.rs", "-t", "rust"], "{d}/missing.rs"),
    ("check", ["{d}/cand.rs", "-t", "c-wat", "--units", "{d}/units.jsonl"], "units.jsonl"),
    ("train", ["{d}/nothing.yaml"], "{d}/nothing.yaml: no such recipe file"),
    ("train", ["{d}/empty"], "{d}/empty"),
    ("eval", ["{d}/truncated", "-d", "{d}/empty"], "no test.jsonl"),
    ("eval", ["{d}/truncated", "-d", "{d}/empty", "-k", "0"], "-k must be 1.."),
    ("eval", ["{d}/truncated", "-d", "{d}/empty", "-j", "-2"], "--jobs must be 0..4096"),
    ("eval", ["{d}/truncated", "-d", "{d}/empty", "--batch-size", "0"], "--batch-size must be 1.."),
    ("eval", ["{d}/truncated", "-d", "{d}/empty", "--top-p", "2"], "--top-p must be 0..1"),
    ("eval", ["{d}/truncated", "-d", "{d}/empty", "-o", "{d}/afile"], "-o {d}/afile: is a file; name a folder"),
    ("export", ["{d}/truncated", "--to", "merged", "-o", "{d}/x1"], "truncated safetensors file"),
    ("export", ["{d}/badcfg", "--to", "merged", "-o", "{d}/x2"], "config.json: not valid JSON"),
    ("export", ["{d}/badtok", "--to", "merged", "-o", "{d}/x3"], "tokenizer.json: not valid JSON"),
    ("export", ["{d}/nowhere", "--to", "merged", "-o", "{d}/x4"], "{d}/nowhere: no such folder"),
    ("export", ["{d}/truncated", "--to", "merged", "-o", "{d}/afile/x"], "{d}/afile is a file, not a folder"),
    ("export", ["{d}/truncated", "--to", "merged", "-o", "{d}/x5", "--parity-tokens", "0"], "--parity-tokens must"),
    ("serve", ["{d}/truncated", "--port", "99999"], "--port must be 1..65535"),
    ("serve", ["{d}/truncated", "--port", "0"], "--port must be 1..65535"),
    ("serve", ["{d}/truncated", "--port", "8123"], "truncated safetensors file"),
    ("serve", ["{d}/truncated", "--port", "0", "--max-queue", "0"], "--max-queue"),
]


@pytest.mark.parametrize(("verb", "argv", "expected"), ROWS, ids=[f"{v}-{i}" for i, (v, _, _) in enumerate(ROWS)])
def test_bad_input_is_one_line(bad, verb, argv, expected):
    args = [verb, *[a.format(d=bad) for a in argv]]
    r = runner.invoke(app, args)
    out = r.output.strip()
    assert r.exit_code == 2, f"{args}: exit {r.exit_code}\n{out}\n{r.exception!r}"
    assert r.exception is None or isinstance(r.exception, SystemExit), f"{args}: {r.exception!r}"
    err = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "Traceback" not in out, out
    assert expected.format(d=bad) in err[0], err[0]


def test_serve_with_a_truncated_model_fails_before_it_says_it_is_serving(bad):
    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = runner.invoke(app, ["serve", str(bad / "truncated"), "--port", str(port)])
    assert r.exit_code == 2 and "truncated safetensors file" in r.output and "serving" not in r.output


def test_serve_binds_or_fails_in_one_line_before_it_says_it_is_serving():
    """serve binds its socket (errors.bind_socket) after the model loads and before the `serving` line."""
    from codehone.errors import UsageError, bind_socket

    with pytest.raises(UsageError, match=f"--port {BUSY_PORT}: address already in use"):
        bind_socket("127.0.0.1", BUSY_PORT)
    with pytest.raises(UsageError, match="--host no-such-host.invalid: not an address"):
        bind_socket("no-such-host.invalid", 8123)
    with pytest.raises(UsageError, match="--port must be 1..65535"):
        bind_socket("127.0.0.1", 99999)


def test_row_counts():
    """How many rows cover each verb (printed with -s; asserted so no verb loses its rows)."""
    counts = Counter(v for v, _, _ in ROWS)
    print("bad-input rows per verb:", dict(counts), "total", len(ROWS))
    assert set(counts) == {"mine", "build", "check", "train", "eval", "export", "serve"}


# --- isolation: no generated code runs without a real sandbox by default -------------------------

HOSTILE = """pub fn one() -> i32 { 1 }

#[cfg(test)]
mod tests {
    #[test]
    fn leak() {
        let s = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        panic!("HOST FILE: {}", s);
    }
}
"""


@pytest.fixture
def hostile(tmp_path) -> Path:
    p = tmp_path / "hostile.rs"
    p.write_text(HOSTILE)
    return p


@pytest.mark.skipif(sandbox.best_isolation() != "bwrap", reason="needs bubblewrap")
def test_hostile_sample_reads_no_host_file_under_bwrap(hostile, tmp_path):
    out = tmp_path / "v.jsonl"
    r = runner.invoke(app, ["check", str(hostile), "-t", "rust", "-j", "1", "--no-cache", "-o", str(out)])
    assert r.exit_code == 1, r.output  # the test fails...
    row = json.loads(out.read_text())
    assert row["verdict"]["isolation"] == "bwrap"
    assert "root:x:0:0" not in out.read_text() and "root:x:0:0" not in r.output  # ...without the host's lines


def test_without_bwrap_generated_code_is_refused_in_one_line(hostile, tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "best_isolation", lambda: "unshare-net")  # as on a host without bubblewrap
    monkeypatch.setenv(sandbox.WEAK_ENV, "0")
    for verb in (["check", str(hostile), "-t", "rust", "-j", "1", "--no-cache"],):
        r = runner.invoke(app, verb)
        assert r.exit_code == 2, r.output
        (line,) = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
        assert "apt-get install bubblewrap" in line and "--allow-weak-isolation" in line
    with pytest.raises(sandbox.IsolationError):  # and below the verbs: sandbox.run itself refuses
        sandbox.run(["/bin/true"])
    assert sandbox.run(["/bin/true"], isolation="rlimits").ok  # an explicit level (the miner's compilers) runs


def test_weak_isolation_only_with_the_flag_and_recorded(hostile, tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "best_isolation", lambda: "unshare-net")
    monkeypatch.setenv(sandbox.WEAK_ENV, "0")
    out = tmp_path / "v.jsonl"
    r = runner.invoke(app, ["check", str(hostile), "-t", "rust", "-j", "1", "--no-cache", "--no-tests",
                            "--allow-weak-isolation", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["verdict"]["isolation"] == "unshare-net"
