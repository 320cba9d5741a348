"""`codehone mcp` through the official SDK's own client (stdio and streamable HTTP), and the fix loop.

Units are mined here from a small C file (real zig cc, wabt, wasmtime), so the
c-wat judge and the docs index run on real data. The model is a tiny untrained
Llama: it cannot fix code, which is exactly what lets the tests show that an
unverified proposal is never returned. That only judged-passing proposals come
back is shown with deterministic proposals plugged into the same loop.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import uvicorn
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from codehone.mine import MineConfig, run_mine
from codehone.records import read_jsonl
from codehone.serve.backends import load_backend
from codehone.serve.docs_index import DocsIndex
from codehone.serve.fix import suggest_fix
from codehone.serve.mcp_server import Toolbox, build_server
from codehone.sources import resolve
from serve_fixtures import make_tiny_model

FIXTURE_C = r"""
/* Add two ints and clamp the sum to the range 0..100 (saturating). */
int clamp_add(int a, int b) {
    int s = a + b;
    if (s < 0) return 0;
    if (s > 100) return 100;
    return s;
}

/* Count the set bits of a word: the population count. */
int popcount(unsigned x) {
    int n = 0;
    while (x) { n += x & 1u; x >>= 1; }
    return n;
}
"""


@pytest.fixture(scope="module")
def mined(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    (root / "fx.c").write_text(FIXTURE_C)
    out = tmp_path_factory.mktemp("mine")
    run_mine([resolve(str(root))], out, MineConfig(jobs=1))
    return out


@pytest.fixture(scope="module")
def units(mined) -> dict[str, dict]:
    us = {u["name"]: u for u in read_jsonl(mined / "units.jsonl")}
    assert {"clamp_add", "popcount"} <= set(us)
    return us


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny"), seq_len=1024)


def planted(units) -> tuple[dict, str, str]:
    """(unit, the right WAT, the WAT with a planted compile error: an undefined local)."""
    u = units["clamp_add"]
    good = u["artifact"]
    assert "local.get 1" in good
    return u, good, good.replace("local.get 1", "local.get 99", 1)


def toolbox(mined, units, backend=None, tmp: Path | None = None) -> Toolbox:
    return Toolbox(backend, target="c-wat", units={u["id"]: u for u in units.values()},
                   modules_dir=mined / "modules", check_cache=tmp or False, max_tokens=32)


# ---------------------------------------------------------------- the fix loop, judged for real


def test_only_a_judged_passing_proposal_is_returned(mined, units):
    u, good, bad = planted(units)
    tb = toolbox(mined, units)
    wrong_value = good.replace("i32.const 100", "i32.const 101")  # assembles, but answers differently
    proposals = ["", bad.replace("local.get 99", "local.get 77"), wrong_value, good]
    calls: list[tuple[int, str]] = []

    def propose(n: int, code: str, err: str) -> str:
        calls.append((n, err))
        assert code == bad  # every attempt starts from the original code: nothing accumulates
        return proposals[n - 1]

    judge = lambda c: tb.judge(c, "c-wat", u)  # noqa: E731
    r = suggest_fix(bad, None, judge, propose, attempts=4)
    assert r.verified and r.fix == good and r.attempts == 4 and r.verdict["ok"]
    assert [t["ok"] for t in r.tried] == [False, False, False, True]
    assert r.tried[0]["stage"] == "proposal" and r.tried[2]["stage"] == "execute"
    assert len({e for _, e in calls}) == 1 and calls[0][1]  # the judge's error, the same in every prompt

    r = suggest_fix(bad, "my compiler said: unknown local", judge, lambda n, c, e: proposals[n - 1], attempts=3)
    assert not r.verified and r.fix is None
    assert r.message == "no verified fix found after 3 attempts"
    assert r.verdict["stage"] == "execute" and r.verdict["diagnostics"]

    r = suggest_fix(good, None, judge, lambda *a: pytest.fail("no proposal is needed"), attempts=2)
    assert r.verified and r.attempts == 0 and r.fix == good


def test_docs_index_is_cached_and_finds_by_doc_words(mined, tmp_path):
    ix = DocsIndex.open(mined, cache_dir=tmp_path)
    assert ix.search("population count of bits", 2)[0]["name"] == "popcount"
    assert ix.search("saturating sum", 1)[0]["name"] == "clamp_add"
    assert ix.search("xylophone", 3) == []
    again = DocsIndex.open(mined, cache_dir=tmp_path)
    assert again.folder == ix.folder and len(again.docs) == len(ix.docs)
    assert DocsIndex.open(ix.folder).search("popcount", 1)[0]["name"] == "popcount"


# ---------------------------------------------------------------- the server, through the SDK's client


def test_mcp_over_stdio(mined, units, model_dir):
    u, good, bad = planted(units)
    env = {k: os.environ[k] for k in ("ZIG_GLOBAL_CACHE_DIR", "XDG_CACHE_HOME", "HOME") if k in os.environ}
    params = StdioServerParameters(command=sys.executable, env=env, args=[
        "-m", "codehone", "mcp", str(model_dir), "--units", str(mined), "--max-tokens", "24", "--threads", "1"])

    async def session():
        async with stdio_client(params) as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            names = {t.name for t in (await s.list_tools()).tools}
            assert names == {"generate", "check", "suggest_fix", "get_docs"}

            async def call(name, **args):
                res = await s.call_tool(name, args)
                return res.is_error, (res.structured_content or {"text": res.content[0].text})

            err, v = await call("check", code=bad, target="c-wat", unit_id=u["id"])
            assert not err and not v["ok"] and v["stage"] == "assemble"
            assert v["diagnostics"] and v["diagnostics"][0]["message"]
            err, v = await call("check", code=good)  # the unit is found by the function's name
            assert not err and v["ok"] and v["unit_id"] == u["id"]
            err, v = await call("check", code=good, unit_id="nope")
            assert err and "not in the units file" in v["text"]

            err, d = await call("get_docs", query="clamp the sum", k=1)
            assert not err and d["results"][0]["name"] == "clamp_add"

            lengths = []
            for i in range(4):  # stateless: the Nth call reads as many tokens as the first
                err, g = await call("generate", prompt=u["source"] if i % 2 == 0 else "int f(void)", max_tokens=4)
                assert not err and g["completion_tokens"] <= 4 and g["target"] == "c-wat"
                lengths.append(g["prompt_tokens"])
            assert lengths[0] == lengths[2] and lengths[1] == lengths[3]

            err, f = await call("suggest_fix", code=bad, attempts=2)
            assert not err
            assert f["verified"] is False and f["fix"] is None  # the untrained model's guesses are not passed on
            assert f["message"] == "no verified fix found after 2 attempts" and f["verdict"]["diagnostics"]
            return f

    asyncio.run(asyncio.wait_for(session(), 240))


def test_mcp_over_streamable_http(mined, units, model_dir):
    torch.set_num_threads(1)
    tb = toolbox(mined, units, load_backend(model_dir))
    tb.docs = DocsIndex.build(mined / "units.jsonl", mined / "docs-http")
    app = build_server(tb).streamable_http_app(stateless_http=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    while not server.started:
        time.sleep(0.02)

    async def session():
        async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            assert len((await s.list_tools()).tools) == 4
            res = await s.call_tool("get_docs", {"query": "population count", "k": 1})
            assert res.structured_content["results"][0]["name"] == "popcount"
            res = await s.call_tool("generate", {"prompt": "int g(int x)", "max_tokens": 3})
            assert not res.is_error and res.structured_content["completion_tokens"] <= 3

    try:
        asyncio.run(asyncio.wait_for(session(), 120))
    finally:
        server.should_exit = True
        t.join(10)
