"""Shared test set-up: a persistent zig cache so libc is built once per machine, not per test."""

import os
from pathlib import Path

os.environ.setdefault("ZIG_GLOBAL_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".cache" / "zig"))
# The suite runs only its own fixture code, so on a machine where bubblewrap cannot create namespaces
# (some CI containers) the judges may fall back to weaker isolation instead of refusing. Where bwrap
# works it is still used; the tests of the refusal itself set the variable to 0, and the tests that
# need real isolation (hostile samples) are skipped without bwrap.
os.environ.setdefault("CODEHONE_ALLOW_WEAK_ISOLATION", "1")
