"""Reference outcomes kept as a difference from the start image: exact round trips, small to keep."""

from __future__ import annotations

import random

from codehone.targets.c_wat import memory_diff
from codehone.targets.c_wat.wasm_run import Outcome


def test_pack_unpack_round_trips_shorter_longer_and_changed_memories():
    rng = random.Random(1)
    for t in range(300):
        start = bytes(rng.randrange(3) for _ in range(rng.randrange(0, 400)))
        mem = bytearray(start[: rng.randrange(0, len(start) + 1)]) if rng.random() < 0.3 else bytearray(start)
        mem += bytes(rng.randrange(0, 100))  # memory.grow during the call
        for _ in range(rng.randrange(0, 6)):
            if mem:
                mem[rng.randrange(len(mem))] = rng.randrange(256)
        p = memory_diff.pack(Outcome("return", (1,), memory=bytes(mem)), start)
        back = memory_diff.unpack(p, start)
        assert back.memory == bytes(mem) and back.values == (1,), t
        assert memory_diff.held(p) <= len(mem)


def test_start_image_is_memory_as_the_call_finds_it():
    initial = bytes(range(256)) * 512  # two pages after _initialize
    arena = b"\x07" * 1000
    img = memory_diff.start_image(initial, 3, arena, ((10, b"ab"), (len(initial), b"no")), keep_from=8)
    assert len(img) == len(initial) + 3 * 65536 - 8
    assert img[2:4] == b"ab" and img[:2] == initial[8:10]  # a static inside the initial memory is written
    assert img[len(initial) - 8:len(initial) - 8 + 1000] == arena  # the arena where the grown pages start
    assert img[len(initial) - 8 + 1000:] == bytes(3 * 65536 - 1000)  # a static past the end is not
