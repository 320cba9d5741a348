"""scratch: RAM-backed scratch directories when there is a tmpfs, an override, a fallback."""

from __future__ import annotations

import os

from codehone.targets.c_wat import scratch


def test_override_and_fallback(tmp_path, monkeypatch):
    scratch.scratch_root.cache_clear()
    try:
        monkeypatch.setenv("CODEHONE_SCRATCH", str(tmp_path))
        d = scratch.mkdtemp("t-")
        assert os.path.dirname(d) == str(tmp_path) and os.path.isdir(d)
        scratch.scratch_root.cache_clear()
        monkeypatch.delenv("CODEHONE_SCRATCH")
        monkeypatch.setattr(scratch, "_CANDIDATES", (str(tmp_path / "missing"),))
        assert scratch.scratch_root() is None  # no tmpfs: the default temporary directory
    finally:
        scratch.scratch_root.cache_clear()
