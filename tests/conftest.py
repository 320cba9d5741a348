"""Shared test set-up: a persistent zig cache so libc is built once per machine, not per test."""

import os
from pathlib import Path

os.environ.setdefault("ZIG_GLOBAL_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".cache" / "zig"))
