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
    the caller names, the work directory and a small private /tmp. Host files
    such as /etc/passwd, /root or /work are not there, so `include_str!` or
    `@embedFile` cannot read them. When we are root, the command then drops to
    an unprivileged, per-run uid (via `setpriv`, with every capability and the
    bounding set cleared and no_new_privs): the kernel ignores RLIMIT_NPROC for
    root -- even for root mapped into a user namespace, which is why
    `bwrap --unshare-user --uid` alone does not stop a fork bomb -- so only a
    real non-root uid makes the process limit bite. A fresh uid per run means
    concurrent sandboxes do not share one process budget.
  * "unshare-net": only a new network namespace (no route out).
  * "rlimits": no namespaces at all; recorded honestly in every verdict.
No generated code runs in a fallback level by default: `run` with the default isolation
(untrusted code) raises `IsolationError` where bubblewrap is missing, unless the user accepted
the risk (`--allow-weak-isolation`, i.e. CODEHONE_ALLOW_WEAK_ISOLATION=1); the verbs call
`require_isolation` before they start, so the refusal is one line, and every verdict records
the level it ran under. (Callers that pass `isolation=` explicitly -- the miner compiling a
repository the user chose -- are not refused.)
In the two fallback levels the command keeps the caller's uid (toolchains under
/root would be unreachable otherwise), so as root RLIMIT_NPROC does not apply
there and a fork bomb is stopped only by the timeout and the group kill.
"""

from __future__ import annotations

import functools
import os
import resource
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# System directories a compiler needs to exist; everything else of the host is hidden.
_SYSTEM_RO = ["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/alternatives", "/etc/ld.so.cache"]
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# Unprivileged uids handed out per run (far above any real account on a normal host).
_UID_BASE, _UID_SPAN = 1_100_000, 800_000


@dataclass
class Limits:
    """Resource limits for one run. Defaults suit a compiler; tighten for execution."""

    timeout_s: float = 30.0
    cpu_s: int | None = None  # defaults to ceil(timeout)+1
    memory_mb: int = 4096  # RLIMIT_AS
    file_size_mb: int = 64  # RLIMIT_FSIZE: caps every file written, stdout/stderr included
    nproc: int = 64  # RLIMIT_NPROC: per real uid (each bwrap run has its own uid when we are root)
    nofile: int = 256
    output_cap: int = 64 * 1024  # bytes of stdout/stderr kept
    tmp_mb: int = 64  # size of the private /tmp tmpfs under bwrap


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
    uid: int | None = None  # bwrap: the run's own unprivileged uid (to tell its processes from other runs')

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


WEAK_ENV = "CODEHONE_ALLOW_WEAK_ISOLATION"
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)"


class IsolationError(RuntimeError):
    """No real sandbox here and the user did not accept the risk; the message is one line."""


def weak_isolation_allowed() -> bool:
    return os.environ.get(WEAK_ENV, "") not in ("", "0")


def allow_weak_isolation() -> None:
    """The user accepted the risk (the flag): this process and every worker it starts may run weakly."""
    os.environ[WEAK_ENV] = "1"


def require_isolation() -> str:
    """The isolation level generated code will run under; IsolationError when it is not real isolation."""
    level = best_isolation()
    if level == "bwrap" or weak_isolation_allowed():
        return level
    raise IsolationError(
        f"no real sandbox for generated code here (bubblewrap is missing or cannot create namespaces; only "
        f"'{level}' is available, which lets the code read host files and fork freely): {INSTALL_HINT}, "
        "or pass --allow-weak-isolation to accept the risk")


@functools.lru_cache(maxsize=1)
def best_isolation() -> str:
    """Probe once which isolation layer works on this machine (CODEHONE_ISOLATION overrides)."""
    if os.environ.get("CODEHONE_ISOLATION"):
        return os.environ["CODEHONE_ISOLATION"]
    bwrap = shutil.which("bwrap")
    if bwrap:
        try:
            probe = [bwrap, *_bwrap_base_args(64), "--", *_drop_args(_UID_BASE), "/bin/true"]
            r = subprocess.run(probe, capture_output=True, timeout=10)
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


def _drops_privileges() -> bool:
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


def _drop_args(uid: int) -> list[str]:
    """`setpriv` prefix that turns root into `uid` with no capabilities at all."""
    if not _drops_privileges():
        return []
    return [
        shutil.which("setpriv") or "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
    ]


def _bwrap_base_args(tmp_mb: int) -> list[str]:
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
        "--size",
        str(tmp_mb * 1024 * 1024),
        "--perms",
        "1777",
        "--tmpfs",
        "/tmp",
    ]
    for p in _SYSTEM_RO:
        if os.path.exists(p):
            if os.path.dirname(p) != "/":
                args += ["--perms", "0755", "--dir", os.path.dirname(p)]
            args += ["--ro-bind", p, p]
    return args


def _parents(paths: Sequence[str]) -> list[str]:
    """Ancestors bwrap must create for `paths`, made 0755 (bwrap makes them 0700 as root)."""
    covered = {"/", "/tmp", *_SYSTEM_RO}
    out: list[str] = []
    for p in paths:
        for anc in reversed(Path(p).parents):
            a = str(anc)
            if a in covered or any(a.startswith(s + "/") for s in _SYSTEM_RO):
                continue
            covered.add(a)
            out.append(a)
    return out


def _bwrap_argv(
    argv: list[str],
    work: Path,
    limits: Limits,
    readable: list[str],
    writable: list[str],
    uid: int,
    ro_work: bool,
) -> list[str]:
    pre = [shutil.which("bwrap") or "bwrap", *_bwrap_base_args(limits.tmp_mb)]
    mounts = [p for p in readable + writable if os.path.exists(p)]
    for d in _parents([*mounts, str(work)]):
        pre += ["--perms", "0755", "--dir", d]
    for p in readable:
        if os.path.exists(p):
            pre += ["--ro-bind", p, p]
    for p in writable:
        if os.path.exists(p):
            pre += ["--bind", p, p]
    pre += ["--ro-bind" if ro_work else "--bind", str(work), str(work), "--chdir", str(work)]
    return [*pre, "--", *_drop_args(uid), *argv]


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


def _chown_tree(root: Path, uid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        os.lchown(dirpath, uid, uid)
        for n in (*dirnames, *filenames):
            os.lchown(os.path.join(dirpath, n), uid, uid)


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
    copy_in: Mapping[str, str | os.PathLike] | None = None,
    readonly_work: bool = False,
    executables: Sequence[str] = (),
) -> RunResult:
    """Run `cmd` in a fresh temp dir holding `files`; return capped output and the `collect`ed files.

    `readable`/`writable` are host paths the command may see (read-only or
    read-write) under bwrap, e.g. the toolchain. Under bwrap as root the command
    runs as a fresh unprivileged uid, so a `writable` path must be writable by
    anyone to be of use; prefer `copy_in`, which copies a host directory into
    the work dir (owned by the sandbox uid) -- a private copy that the command
    may change without touching the original (e.g. a warmed zig cache).
    `readonly_work` mounts the work dir read-only (the command can then write
    only to the size-capped /tmp): used to execute untrusted binaries, which
    are named in `executables` so that they are written with the exec bit.
    The command runs with the temp dir as its working directory, mounted at the
    same path. `$CODEHONE_WORK` in `cmd` or `env` values is replaced by it.
    """
    limits = limits or Limits()
    level = isolation or require_isolation()  # the default is for untrusted code: refused without a sandbox
    work = Path(tempfile.mkdtemp(prefix="codehone-sbx-"))
    out_dir = Path(tempfile.mkdtemp(prefix="codehone-out-"))
    try:
        for name, content in (files or {}).items():
            p = work / name
            if not p.resolve().is_relative_to(work.resolve()):
                raise ValueError(f"sandbox file name escapes the work dir: {name!r}")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
            if name in executables:
                p.chmod(0o755)
        for name, src in (copy_in or {}).items():
            if os.path.isdir(src):
                subprocess.run(
                    ["cp", "-a", os.fspath(src), str(work / name)], check=True, capture_output=True
                )
        out_path, err_path = out_dir / "stdout", out_dir / "stderr"
        tmp_home = "/tmp" if level == "bwrap" else str(work)
        full_env = {"PATH": _SAFE_PATH, "HOME": tmp_home, "TMPDIR": tmp_home, "LANG": "C.UTF-8"}
        full_env.update(env or {})
        full_env = {k: v.replace("$CODEHONE_WORK", str(work)) for k, v in full_env.items()}
        argv = [a.replace("$CODEHONE_WORK", str(work)) for a in cmd]
        uid = None
        if level == "bwrap":
            uid = _UID_BASE + secrets.randbelow(_UID_SPAN)
            if _drops_privileges():
                _chown_tree(work, uid)
                os.chmod(work, 0o700)
            argv = _bwrap_argv(
                argv,
                work,
                limits,
                [os.fspath(p) for p in readable],
                [os.fspath(p) for p in writable],
                uid,
                readonly_work,
            )
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
        elif rc is not None and rc > 128 and level == "bwrap" and not timed_out:
            # bwrap reports a child killed by signal N as exit status 128+N.
            try:
                killed_by = f"signal:{signal.Signals(rc - 128).name}"
            except ValueError:
                pass
        collected: dict[str, bytes] = {}
        for name in collect:
            p = work / name
            if p.is_file() and not p.is_symlink():
                collected[name] = p.read_bytes()
        return RunResult(
            returncode=rc,
            stdout=_read_capped(out_path, limits.output_cap),
            stderr=_read_capped(err_path, limits.output_cap),
            timed_out=timed_out,
            seconds=seconds,
            isolation=level,
            killed_by=killed_by,
            files=collected,
            uid=uid if uid is not None and _drops_privileges() else None,
        )
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the whole process group (the command and anything it forked).

    Under bwrap the sandboxed tree lives in its own session and PID namespace;
    killing bwrap kills its namespace init (--die-with-parent), and the kernel
    then kills every process left in that namespace.
    """
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
