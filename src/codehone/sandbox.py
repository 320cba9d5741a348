"""Run a command we do not trust: compilers on mined code, and model-written programs.

Every run gets, whatever the isolation level:
  * its own process group and session, killed as a whole on timeout;
  * rlimits on CPU seconds, address space, file size, processes and open files;
  * a fresh temporary working directory, removed afterwards;
  * a scrubbed environment (only what the caller passes, plus a sane PATH);
  * stdout/stderr written to files capped by RLIMIT_FSIZE and read back capped,
    so an output flood kills the writer (SIGXFSZ) instead of filling memory.

On top of that, the strongest isolation layer the machine has is used:
  * "bwrap": bubblewrap with new network, PID, IPC and UTS namespaces and a
    filesystem that holds only the system directories (read-only), the paths
    the caller names, and the work directory. Host files such as /etc/passwd or
    /root are not there, so `include_str!`/`@embedFile` cannot read them.
  * "unshare-net": only a new network namespace (no loopback route out).
  * "rlimits": no namespaces at all; recorded honestly in every verdict.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# System directories a compiler needs to exist; everything else of the host is hidden.
_SYSTEM_RO = ["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/alternatives", "/etc/ld.so.cache"]
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass
class Limits:
    """Resource limits for one run. Defaults suit a compiler; tighten for execution."""

    timeout_s: float = 30.0
    cpu_s: int | None = None  # defaults to ceil(timeout)+1
    memory_mb: int = 4096  # RLIMIT_AS
    file_size_mb: int = 64  # RLIMIT_FSIZE: caps every file written, stdout/stderr included
    nproc: int = 64  # RLIMIT_NPROC (per real uid, so it is checked against the caller's count too)
    nofile: int = 256
    output_cap: int = 64 * 1024  # bytes of stdout/stderr kept


@dataclass
class RunResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float
    isolation: str
    killed_by: str | None = None  # "timeout", "signal:SIGKILL", ...
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


@functools.lru_cache(maxsize=1)
def best_isolation() -> str:
    """Probe once which isolation layer works on this machine."""
    if os.environ.get("CODEHONE_ISOLATION"):
        return os.environ["CODEHONE_ISOLATION"]
    bwrap = shutil.which("bwrap")
    if bwrap:
        try:
            r = subprocess.run(
                [bwrap, *_bwrap_base_args(), "--", "/bin/true"],
                capture_output=True,
                timeout=10,
            )
            if r.returncode == 0:
                return "bwrap"
        except (OSError, subprocess.TimeoutExpired):
            pass
    unshare = shutil.which("unshare")
    if unshare:
        try:
            r = subprocess.run([unshare, "-n", "/bin/true"], capture_output=True, timeout=10)
            if r.returncode == 0:
                return "unshare-net"
        except (OSError, subprocess.TimeoutExpired):
            pass
    return "rlimits"


def _bwrap_base_args() -> list[str]:
    args = [
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--die-with-parent",
        "--new-session",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
    ]
    for p in _SYSTEM_RO:
        if os.path.exists(p):
            args += ["--ro-bind", p, p]
    return args


def _preexec(limits: Limits):
    cpu = limits.cpu_s if limits.cpu_s is not None else int(limits.timeout_s) + 1

    def fn() -> None:
        os.setsid()  # own session and process group: killpg reaches every child
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        mem = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        fs = limits.file_size_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (fs, fs))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.nofile, limits.nofile))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        try:
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.nproc, limits.nproc))
        except (ValueError, OSError):
            pass
        # A flood into a capped file should kill the writer, not be ignored.
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)

    return fn


def _read_capped(path: Path, cap: int) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(cap + 1)
    except OSError:
        return ""
    text = data[:cap].decode("utf-8", "replace")
    if len(data) > cap:
        text += "\n[output truncated]"
    return text


def run(
    cmd: Sequence[str],
    *,
    files: dict[str, str | bytes] | None = None,
    limits: Limits | None = None,
    env: dict[str, str] | None = None,
    readable: Sequence[str | os.PathLike] = (),
    writable: Sequence[str | os.PathLike] = (),
    collect: Sequence[str] = (),
    isolation: str | None = None,
    stdin: bytes | None = None,
) -> RunResult:
    """Run `cmd` in a fresh temp dir holding `files`; return capped output and the `collect`ed files.

    `readable`/`writable` are host paths the command may see (read-only or
    read-write) under bwrap, e.g. the toolchain and its cache. The command runs
    with the temp dir as its working directory, mounted at the same path.
    """
    limits = limits or Limits()
    level = isolation or best_isolation()
    work = Path(tempfile.mkdtemp(prefix="codehone-sbx-"))
    try:
        for name, content in (files or {}).items():
            p = work / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        out_dir = Path(tempfile.mkdtemp(prefix="codehone-out-"))
        out_path, err_path = out_dir / "stdout", out_dir / "stderr"
        full_env = {"PATH": _SAFE_PATH, "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8"}
        full_env.update(env or {})
        argv = list(cmd)
        if level == "bwrap":
            pre = [shutil.which("bwrap") or "bwrap", *_bwrap_base_args()]
            for p in readable:
                p = os.fspath(p)
                if os.path.exists(p):
                    pre += ["--ro-bind", p, p]
            for p in writable:
                p = os.fspath(p)
                if os.path.exists(p):
                    pre += ["--bind", p, p]
            pre += ["--bind", str(work), str(work), "--chdir", str(work)]
            argv = [*pre, "--", *argv]
        elif level == "unshare-net":
            argv = [shutil.which("unshare") or "unshare", "-n", *argv]
        start = time.monotonic()
        timed_out = False
        with out_path.open("wb") as fo, err_path.open("wb") as fe:
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=work,
                    env=full_env,
                    stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                    stdout=fo,
                    stderr=fe,
                    preexec_fn=_preexec(limits),
                    close_fds=True,
                )
            except OSError as e:
                return RunResult(None, "", f"cannot start {cmd[0]}: {e}", False, 0.0, level, "spawn")
            try:
                if stdin is not None:
                    try:
                        proc.stdin.write(stdin)  # type: ignore[union-attr]
                        proc.stdin.close()  # type: ignore[union-attr]
                    except OSError:
                        pass
                proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc)
        seconds = time.monotonic() - start
        rc = proc.returncode
        killed_by = "timeout" if timed_out else None
        if rc is not None and rc < 0 and not timed_out:
            try:
                killed_by = f"signal:{signal.Signals(-rc).name}"
            except ValueError:
                killed_by = f"signal:{-rc}"
        collected: dict[str, bytes] = {}
        for name in collect:
            p = work / name
            if p.is_file() and not p.is_symlink():
                collected[name] = p.read_bytes()
        result = RunResult(
            returncode=rc,
            stdout=_read_capped(out_path, limits.output_cap),
            stderr=_read_capped(err_path, limits.output_cap),
            timed_out=timed_out,
            seconds=seconds,
            isolation=level,
            killed_by=killed_by,
            files=collected,
        )
        shutil.rmtree(out_dir, ignore_errors=True)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the whole process group (the command and anything it forked)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
