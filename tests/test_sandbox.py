"""The sandbox against hostile commands: each attack must be contained, fast, and leave the host untouched.

These run plain shell/python commands inside the sandbox (the judges' own
adversarial tests run real compiled candidates). Where an attack can only be
stopped by a layer this machine lacks, the test is skipped, not weakened.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from codehone import sandbox

LEVEL = sandbox.best_isolation()
needs_bwrap = pytest.mark.skipif(LEVEL != "bwrap", reason=f"isolation here is {LEVEL}, not bwrap")
needs_netns = pytest.mark.skipif(LEVEL == "rlimits", reason="no network namespace on this machine")


def _procs_of_uid(uid: int) -> list[int]:
    """PIDs of host processes whose real uid is the given sandbox run's uid."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            for line in (p / "status").read_text().splitlines():
                if line.startswith("Uid:"):
                    if int(line.split()[1]) == uid:
                        out.append(int(p.name))
                    break
        except OSError:
            continue
    return out


def test_isolation_level_is_recorded():
    r = sandbox.run(["true"])
    assert r.ok
    assert r.isolation == LEVEL in ("bwrap", "unshare-net", "rlimits")


@needs_bwrap
def test_runs_as_unprivileged_uid_when_root():
    r = sandbox.run(["id", "-u"])
    assert r.ok
    if os.geteuid() == 0:
        assert int(r.stdout.strip()) >= sandbox._UID_BASE


def test_infinite_loop_is_killed_on_time():
    t0 = time.monotonic()
    r = sandbox.run(["sh", "-c", "while :; do :; done"], limits=sandbox.Limits(timeout_s=1.5))
    assert r.timed_out and not r.ok and r.killed_by == "timeout"
    assert time.monotonic() - t0 < 8


@needs_bwrap
def test_fork_bomb_is_contained():
    """NPROC bites (the uid is unprivileged); the run ends by itself, and nothing survives it."""
    t0 = time.monotonic()
    r = sandbox.run(
        ["sh", "-c", "f(){ f|f& }; f; sleep 2; echo survived"],
        limits=sandbox.Limits(timeout_s=10, nproc=32),
    )
    assert time.monotonic() - t0 < 10, "the bomb should hit the process limit, not the timeout"
    assert "Cannot fork" in r.stderr or "fork" in r.stderr.lower()
    time.sleep(0.3)
    # Only this run's uid: other sandboxed runs (another xdist worker's compiles) may be alive now.
    if os.geteuid() == 0:
        assert r.uid is not None and r.uid >= sandbox._UID_BASE
    if r.uid is not None:
        assert _procs_of_uid(r.uid) == []


def test_memory_bomb_fails_cleanly():
    r = sandbox.run(
        ["python3", "-c", "x = bytearray(8 << 30); print('allocated')"],
        limits=sandbox.Limits(timeout_s=10, memory_mb=512),
    )
    assert not r.ok
    assert "allocated" not in r.stdout
    assert "MemoryError" in r.stderr


def test_output_flood_is_capped_and_killed():
    t0 = time.monotonic()
    r = sandbox.run(["yes"], limits=sandbox.Limits(timeout_s=20, file_size_mb=2, output_cap=4096))
    assert not r.ok
    assert r.killed_by == "signal:SIGXFSZ"
    assert len(r.stdout) <= 4096 + 40
    assert time.monotonic() - t0 < 10


def test_write_outside_work_dir_does_not_reach_host(tmp_path: Path):
    target = tmp_path / "pwned"
    r = sandbox.run(["sh", "-c", f"echo x > {target}; echo y > /usr/pwned; echo z > ok.txt; cat ok.txt"])
    assert not target.exists()
    assert not Path("/usr/pwned").exists()
    assert "z" in r.stdout  # the work dir itself is writable


def test_work_dir_is_removed():
    r = sandbox.run(["pwd"])
    work = Path(r.stdout.strip())
    assert work.name.startswith("codehone-sbx-")
    assert not work.exists()


@needs_bwrap
def test_readonly_work_dir():
    r = sandbox.run(["sh", "-c", "echo x > here.txt"], files={"a": "b"}, readonly_work=True)
    assert not r.ok


@needs_bwrap
def test_host_files_are_not_visible():
    r = sandbox.run(["sh", "-c", "cat /etc/passwd; ls /root; ls /work; ls /home; echo done"])
    assert "root:x:0" not in r.stdout
    assert "No such file" in r.stderr
    assert "done" in r.stdout


@needs_netns
def test_network_is_unreachable():
    """A listener on the host's loopback must not be reachable from inside."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.5)
    port = srv.getsockname()[1]
    accepted = []

    def accept() -> None:
        try:
            conn, _ = srv.accept()
            accepted.append(conn)
        except OSError:
            pass

    th = threading.Thread(target=accept)
    th.start()
    code = (
        f"import socket,sys\ns=socket.create_connection(('127.0.0.1',{port}),timeout=2)\nprint('connected')\n"
    )
    r = sandbox.run(["python3", "-c", code], limits=sandbox.Limits(timeout_s=10))
    srv.close()
    th.join()
    assert "connected" not in r.stdout
    assert not r.ok
    assert accepted == []
    r = sandbox.run(["python3", "-c", "import socket; socket.create_connection(('1.1.1.1', 53), timeout=2)"])
    assert not r.ok


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("CODEHONE_SECRET_TOKEN", "hunter2")
    r = sandbox.run(["env"])
    assert "hunter2" not in r.stdout


@pytest.mark.parametrize("level", ["rlimits", "unshare-net"])
def test_fallback_levels_still_limit_and_record(level):
    """The weaker levels keep the timeout, the group kill and the output cap, and say what they are."""
    if level == "unshare-net" and LEVEL == "rlimits":
        pytest.skip("no network namespace on this machine")
    r = sandbox.run(["sh", "-c", "echo hi"], isolation=level)
    assert r.ok and r.stdout.strip() == "hi" and r.isolation == level
    t0 = time.monotonic()
    r = sandbox.run(["sh", "-c", "sleep 30 & sleep 30"], isolation=level, limits=sandbox.Limits(timeout_s=1))
    assert r.timed_out and r.isolation == level
    assert time.monotonic() - t0 < 8


@needs_netns
def test_unshare_net_level_blocks_network():
    r = sandbox.run(
        [
            "python3",
            "-c",
            "import socket; socket.create_connection(('1.1.1.1', 53), timeout=2); print('out')",
        ],
        isolation="unshare-net",
    )
    assert "out" not in r.stdout and not r.ok


def test_file_names_cannot_escape_the_work_dir():
    with pytest.raises(ValueError, match="escapes"):
        sandbox.run(["true"], files={"../../escaped.txt": "x"})
