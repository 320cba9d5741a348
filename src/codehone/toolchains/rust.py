"""The Rust toolchain (rustc, clippy-driver): paths inside the real sysroot, and the version.

We call the binaries in the sysroot directly rather than rustup's proxies in
~/.cargo/bin: the proxies need $HOME/.rustup (hidden inside the sandbox) and add
tens of milliseconds per call. The sysroot is the only host folder a Rust check
needs to see.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

from .zig import ToolchainMissing


@functools.lru_cache(maxsize=1)
def sysroot() -> Path:
    rustc = shutil.which("rustc")
    if not rustc:
        raise ToolchainMissing("`rustc` not found on PATH: install Rust (rustup) with the clippy component")
    r = subprocess.run([rustc, "--print", "sysroot"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0 or not r.stdout.strip():
        raise ToolchainMissing(f"`rustc --print sysroot` failed: {r.stderr.strip()[:300]}")
    return Path(r.stdout.strip()).resolve()


def rustc() -> str:
    exe = sysroot() / "bin" / "rustc"
    if not exe.exists():  # pragma: no cover
        raise ToolchainMissing(f"rustc not found in the sysroot {sysroot()}")
    return str(exe)


def clippy_driver() -> str:
    exe = sysroot() / "bin" / "clippy-driver"
    if not exe.exists():
        raise ToolchainMissing("clippy-driver not found: rustup component add clippy")
    return str(exe)


@functools.lru_cache(maxsize=1)
def version() -> str:
    """`rustc X (hash date) + clippy Y`: part of every verdict cache key."""
    r = subprocess.run([rustc(), "--version"], capture_output=True, text=True, timeout=60)
    c = subprocess.run([clippy_driver(), "--version"], capture_output=True, text=True, timeout=60)
    return f"{r.stdout.strip()} + {c.stdout.strip()}"
