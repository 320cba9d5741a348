"""The zig toolchain from the `ziglang` wheel: clang for C→wasm, plus zig's own checks.

The wheel carries clang and every libc's headers, so one pip install gives a
reproducible C→wasm32-wasi compiler on any machine. Invoking the `zig` binary
directly (not `python -m ziglang`) saves ~30 ms per call.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path


class ToolchainMissing(RuntimeError):
    pass


@functools.lru_cache(maxsize=1)
def zig_dir() -> Path:
    try:
        import ziglang
    except ImportError as e:  # pragma: no cover - install problem
        raise ToolchainMissing("the `ziglang` package is not installed (pip install ziglang)") from e
    return Path(ziglang.__file__).resolve().parent


def zig_exe() -> str:
    exe = zig_dir() / "zig"
    if not exe.exists():  # pragma: no cover
        raise ToolchainMissing(f"zig binary not found at {exe}")
    return str(exe)


def libc_sources() -> Path:
    """zig's bundled libc sources (musl, wasi-libc, mingw...): the default offline C corpus."""
    return zig_dir() / "lib" / "libc"


def cache_dir() -> Path:
    """ZIG_GLOBAL_CACHE_DIR: where zig keeps the built libc (~30 s to build once per flag set)."""
    d = os.environ.get("ZIG_GLOBAL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "codehone", "zig"
    )
    Path(d).mkdir(parents=True, exist_ok=True)
    return Path(d)


def env() -> dict[str, str]:
    d = str(cache_dir())
    return {"ZIG_GLOBAL_CACHE_DIR": d, "ZIG_LOCAL_CACHE_DIR": d}


@functools.lru_cache(maxsize=1)
def version() -> str:
    r = subprocess.run([zig_exe(), "version"], capture_output=True, text=True, timeout=60, env={**os.environ, **env()})
    return r.stdout.strip() or "unknown"


@functools.lru_cache(maxsize=1)
def clang_version() -> str:
    r = subprocess.run(
        [zig_exe(), "cc", "--version"], capture_output=True, text=True, timeout=60, env={**os.environ, **env()}
    )
    first = (r.stdout or r.stderr).splitlines()[:1]
    return first[0].strip() if first else "unknown"
