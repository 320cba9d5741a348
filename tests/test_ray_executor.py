"""The Ray executor gives the same units as the local pool (a local Ray instance, 2 CPUs)."""

from __future__ import annotations

import os

import pytest

from codehone import executors
from codehone.mine import MineConfig, run_mine
from codehone.sources import Source

ray = pytest.importorskip("ray", reason="the ray executor is the [scale] extra")

FN = '''
def f{i}(values, limit={i}):
    """Sum the values below limit, a docstring long enough to keep."""
    total = 0
    for value in values:
        if value < limit:
            total += value * {i}
    return total
'''


@pytest.fixture(scope="module")
def ray_local():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    executors.use("ray")
    yield
    executors.use("local")
    ray.shutdown()


def test_ray_mine_equals_local(tmp_path, ray_local):
    src = tmp_path / "src"
    src.mkdir()
    for n in range(6):
        (src / f"m{n}.py").write_text("".join(FN.format(i=n * 10 + i) for i in range(3)))
    cfg = dict(target="compress", jobs=2)
    run_mine([Source(name="src", root=src)], tmp_path / "ray", MineConfig(**cfg))
    executors.use("local")
    run_mine([Source(name="src", root=src)], tmp_path / "local", MineConfig(**cfg))
    executors.use("ray")
    got = (tmp_path / "ray" / "units.jsonl").read_bytes()
    assert got == (tmp_path / "local" / "units.jsonl").read_bytes()
    assert got.count(b"\n") == 18
