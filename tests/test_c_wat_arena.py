"""The input arena is part of every c-wat verdict: the same (seed, test, unit) must give the same
bytes in every process and version, or cached verdicts and benchmark figures stop meaning the same
thing. These digests were taken from the arena code before its unit-free draws were cached."""

from __future__ import annotations

import hashlib

import pytest

from codehone.targets.c_wat.inputs import _draws, arena_bytes

GOLDEN = [
    ((0, 0, 131072, 131072, ()), "5e766cb27b4479cc"),
    ((0, 5, 131072, 131072, (3, 7, 4242, -1)), "316501666b1f4582"),
    ((7, 63, 1 << 20, 131072, (10,)), "ba235f8dbfac8384"),
    ((12345678901, 2, 65536, 8192, (0, 1 << 31)), "716b8db9843913d9"),
]


@pytest.mark.parametrize("args,digest", GOLDEN)
def test_arena_bytes_are_those_of_the_uncached_stream(args, digest):
    _draws.cache_clear()
    cold = bytes(arena_bytes(*args))
    assert hashlib.sha256(cold).hexdigest()[:16] == digest
    assert bytes(arena_bytes(*args)) == cold  # from the cache


def test_cached_draws_are_not_changed_by_a_unit():
    seed, test, base, size = 3, 9, 131072, 131072
    first = bytes(arena_bytes(seed, test, base, size, (1, 2, 3)))
    other = bytes(arena_bytes(seed, test, base + 65536, size, (99,)))  # another unit: base and constants
    assert other != first
    assert bytes(arena_bytes(seed, test, base, size, (1, 2, 3))) == first
