"""One way out for errors, shared by every verb: the fault, the path or option it concerns, what to do.

Every verb of the CLI runs inside `one_line_errors`: an OS error on an input or an output, a
corrupt or partial model file, a bad port or address, an out-of-range option ends in one line
and a non-zero exit, never in a traceback. The checks here also run *before* the work starts
(`check_output_file`, `check_port`, `verify_model_files`), so a verb fails in a second instead of
after minutes of work.
"""

from __future__ import annotations

import errno
import json
import os
import struct
from pathlib import Path


class UsageError(ValueError):
    """A bad input, output or option, as one line naming it and what to do."""


_OS_HINTS = {
    errno.EISDIR: "is a folder; name a file",
    errno.ENOTDIR: "a parent of this path is a file, not a folder; choose another path",
    errno.EEXIST: "a parent of this path is a file, not a folder; choose another path",
    errno.EROFS: "is on a read-only file system; choose a writable place",
    errno.EACCES: "permission denied; choose a path you may write or read",
    errno.EPERM: "operation not permitted; choose another path",
    errno.ENOSPC: "no space left on the device; free some or choose another disk",
    errno.ENOENT: "not found",
    errno.ENAMETOOLONG: "name too long",
    errno.EADDRINUSE: "address already in use; choose another --port or stop what holds it",
    errno.EADDRNOTAVAIL: "address not available on this machine; choose another --host",
}


def os_error_line(e: OSError, what: str = "") -> str:
    """`PATH: what went wrong; what to do` for an OSError."""
    name = e.filename or what
    hint = _OS_HINTS.get(e.errno or 0, e.strerror or str(e))
    return f"{name}: {hint}" if name else hint


def check_output_file(path: Path, option: str = "-o") -> None:
    """Raise UsageError unless `path` can be written as a file (checked before any work)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; name a file")
    _writable_ancestor(path, path.parent, option)


def check_output_dir(path: Path, option: str = "-o") -> None:
    """Raise UsageError unless `path` is, or can be made, a writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: is a file; name a folder")
    _writable_ancestor(path, path, option)


def _writable_ancestor(path: Path, start: Path, option: str) -> None:
    """The nearest existing folder above (or at) `start` is a folder we can really create a file in:
    probed with a file, since as root os.access says yes even on a read-only file system."""
    import tempfile

    for anc in [start, *start.parents]:
        if not anc.exists():
            continue
        if not anc.is_dir():
            raise UsageError(f"{option} {path}: {anc} is a file, not a folder; choose another path")
        try:
            with tempfile.TemporaryFile(dir=anc, prefix=".codehone-probe-"):
                pass
        except OSError as e:
            why = ("is on a read-only file system" if _read_only(anc) or e.errno == errno.EROFS
                   else f"is not writable ({e.strerror or e})")
            raise UsageError(f"{option} {path}: {anc} {why}; choose a writable place") from None
        return


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_range(option: str, value: float | None, lo: float | None = None, hi: float | None = None,
                what: str = "") -> None:
    """Raise UsageError unless lo <= value <= hi (None: unbounded, or the option was not given)."""
    if value is None:
        return
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = (f"{lo:g}..{hi:g}" if lo is not None and hi is not None else f">= {lo:g}" if lo is not None
               else f"<= {hi:g}")
        raise UsageError(f"{option} must be {rng}{' (' + what + ')' if what else ''}, not {value:g}")


def check_port(port: int, option: str = "--port") -> None:
    check_range(option, port, 1, 65535, "a TCP port")


def bind_socket(host: str, port: int):
    """A listening socket on host:port, or UsageError naming the address and what to do."""
    import socket

    check_port(port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise UsageError(f"--host {host}: not an address of this machine ({e}); use 127.0.0.1 or 0.0.0.0") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise UsageError(f"--host {host} --port {port}: {_OS_HINTS.get(e.errno or 0, e.strerror or str(e))}") from None
    except OverflowError as e:
        sock.close()
        raise UsageError(f"--port {port}: {e}") from None
    return sock


# ---------------------------------------------------------------- model files


def _json_file(path: Path) -> str | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        return os_error_line(e)
    except (ValueError, UnicodeDecodeError) as e:
        return f"{path}: not valid JSON ({str(e).splitlines()[0]}); the file is corrupt or partial"
    if not isinstance(obj, dict):
        return f"{path}: not a JSON object; the file is corrupt"
    return None


def _safetensors_file(path: Path) -> str | None:
    """The header parses and the file holds every byte it promises (a truncated copy does not)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{path}: truncated safetensors file ({size} bytes); copy or export it again"
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, 100 << 20):
                return f"{path}: truncated or corrupt safetensors header; copy or export it again"
            header = json.loads(f.read(n))
    except OSError as e:
        return os_error_line(e)
    except (ValueError, UnicodeDecodeError):
        return f"{path}: corrupt safetensors header; copy or export it again"
    end = 0
    for k, v in header.items():
        if k != "__metadata__" and isinstance(v, dict):
            offs = v.get("data_offsets") or [0, 0]
            end = max(end, int(offs[1]))
    if 8 + n + end > size:
        return (f"{path}: truncated safetensors file ({size} of {8 + n + end} bytes); "
                "copy, train or export it again")
    return None


def verify_model_files(folder: Path) -> str | None:
    """Why the model folder's config, tokenizer or weights are unusable (one line), or None."""
    folder = Path(folder)
    for name in ("config.json", "adapter_config.json", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json", "special_tokens_map.json"):
        p = folder / name
        if p.exists():
            err = _json_file(p)
            if err:
                return err
    for p in sorted(folder.glob("*.safetensors")):
        err = _safetensors_file(p)
        if err:
            return err
    return None


def describe(e: BaseException) -> str | None:
    """One line for an error a user can cause, or None for a bug (which keeps its traceback)."""
    if isinstance(e, UsageError):
        return str(e)
    if isinstance(e, OSError):
        return os_error_line(e)
    if type(e).__name__ == "SafetensorError":
        return f"corrupt or partial model weights ({e}); copy, train or export them again"
    if isinstance(e, OverflowError):
        return f"a number out of range: {e}"
    return None
