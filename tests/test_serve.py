"""`codehone serve` on a real uvicorn server on loopback, called with httpx; the hf backend; `codehone chat`.

The model is a tiny untrained Llama made in-process (tests/serve_fixtures.py): its
text is noise, so the tests compare the server against the backend itself (greedy
is deterministic), and check the wire format, limits, queueing and batching.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace

import httpx
import pytest
import torch
import uvicorn
from typer.testing import CliRunner

from codehone.cli import app as cli
from codehone.serve import ServeError
from codehone.serve.api import Limits, create_app
from codehone.serve.backends import GenParams, HFBackend, load_backend, render_chat
from codehone.serve.chat import ChatSession, repl
from codehone.serve.mcp_server import Toolbox
from serve_fixtures import make_tiny_model

KEY = "sk-test"
MSG = [{"role": "user", "content": "Emit the add instruction 3."}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.set_num_threads(1)  # the decode loop is latency-bound; more threads only contend on a shared CPU
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def backend(model_dir):
    return load_backend(model_dir, "hf")


def greedy(backend, prompt_text: str, n: int) -> tuple[str, str]:
    text, finish = "", None
    for ev in backend.stream_batch([backend.encode(prompt_text)], [GenParams(n)]):
        text += ev.text
        finish = ev.finish or finish
    return text, finish


@contextmanager
def running(backend, limits: Limits | None = None, api_key: str | None = KEY):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(backend, "tiny", limits or Limits(max_tokens=64), api_key),
                                           host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                          headers={"Authorization": f"Bearer {KEY}"}) as c:
            yield c
    finally:
        server.should_exit = True
        t.join(10)


def sse(resp: httpx.Response) -> list:
    """The `data:` payloads of an SSE response, JSON-decoded except the final [DONE]."""
    out = []
    for line in resp.iter_lines():
        if line.startswith("data: "):
            d = line[len("data: "):]
            out.append(d if d == "[DONE]" else json.loads(d))
    return out


# ---------------------------------------------------------------- backend


def test_load_errors_are_one_line(model_dir, tmp_path):
    assert load_backend(model_dir / "model").context_length == 256  # the folder itself, as well as the run folder
    with pytest.raises(ServeError, match="not a model"):
        load_backend(tmp_path)
    with pytest.raises(ServeError, match="unknown backend"):
        load_backend(model_dir, "tflite")


def test_batched_greedy_equals_one_by_one_and_hf_generate(backend):
    tok = backend.tokenizer
    prompts = [render_chat(tok, [{"role": "user", "content": t}]) for t in ("a", "Emit the load instruction 5.", "xy")]
    alone = [greedy(backend, p, 12)[0] for p in prompts]
    rows = ["", "", ""]
    for ev in backend.stream_batch([backend.encode(p) for p in prompts], [GenParams(12)] * 3):
        rows[ev.row] += ev.text
    assert rows == alone  # left padding + position ids: batching does not change a greedy answer
    ids = tok(prompts[1], add_special_tokens=False, return_tensors="pt")["input_ids"]
    ref = backend.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                                 do_sample=False, eos_token_id=sorted(backend.eos_ids), pad_token_id=tok.pad_token_id)
    assert tok.decode(ref[0, ids.shape[1]:], skip_special_tokens=True) == alone[1]


def test_eos_stops_and_sampling_is_seeded(backend):
    prompt = render_chat(backend.tokenizer, MSG)
    text, finish = greedy(backend, prompt, 6)
    assert finish == "length"
    first = backend.encode(prompt + text)[len(backend.encode(prompt))]  # the first token greedy picks
    stopper = HFBackend(backend.model, backend.tokenizer, backend.source)
    stopper.eos_ids = {first}
    assert greedy(stopper, prompt, 6) == ("", "stop")
    a = "".join(backend.stream(prompt, max_tokens=10, temperature=1.0, top_p=0.9, seed=7))
    b = "".join(backend.stream(prompt, max_tokens=10, temperature=1.0, top_p=0.9, seed=7))
    assert a == b


# ---------------------------------------------------------------- HTTP


def test_endpoints_streaming_and_errors(backend):
    prompt = render_chat(backend.tokenizer, MSG)
    want, _ = greedy(backend, prompt, 8)
    with running(backend, Limits(max_tokens=64, max_request_bytes=4000)) as c:
        h = c.get("/health").json()
        assert h["status"] == "ok" and h["backend"] == "hf" and h["context_length"] == 256
        assert c.get("/v1/models").json()["data"][0]["id"] == "tiny"

        r = c.post("/v1/chat/completions", json={"model": "tiny", "messages": MSG, "max_tokens": 8}).json()
        assert r["object"] == "chat.completion"
        assert r["choices"][0]["message"] == {"role": "assistant", "content": want}
        assert r["choices"][0]["finish_reason"] == "length"
        assert r["usage"]["completion_tokens"] == 8 and r["usage"]["prompt_tokens"] == len(backend.encode(prompt))

        with c.stream("POST", "/v1/chat/completions", json={"messages": MSG, "max_tokens": 8, "stream": True}) as s:
            assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
            events = sse(s)
        assert events[-1] == "[DONE]"
        chunks = events[:-1]
        assert all(e["object"] == "chat.completion.chunk" for e in chunks)
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert "".join(e["choices"][0]["delta"].get("content") or "" for e in chunks) == want
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"

        raw = "int add(int a, int b)"
        plain, _ = greedy(backend, raw, 6)
        r = c.post("/v1/completions", json={"prompt": raw, "max_tokens": 6}).json()
        assert r["object"] == "text_completion" and r["choices"][0]["text"] == plain
        with c.stream("POST", "/v1/completions", json={"prompt": [raw], "max_tokens": 6, "stream": True}) as s:
            events = sse(s)
        assert events[-1] == "[DONE]" and "".join(e["choices"][0]["text"] for e in events[:-1]) == plain

        if len(want.strip()) >= 2:  # a stop string cuts the reply before it, streamed or not
            stop = want.strip()[:2]
            r = c.post("/v1/chat/completions", json={"messages": MSG, "max_tokens": 8, "stop": stop}).json()
            assert r["choices"][0]["message"]["content"] == want[: want.find(stop)]
            assert r["choices"][0]["finish_reason"] == "stop"

        def err(resp, status):
            assert resp.status_code == status, resp.text
            e = resp.json()["error"]
            assert e["message"] and "type" in e
            return e

        e = err(httpx.post(f"{c.base_url}/v1/chat/completions", json={"messages": MSG}), 401)
        assert e["code"] == "invalid_api_key"
        err(httpx.get(f"{c.base_url}/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
        assert err(c.post("/v1/chat/completions", json={"messages": MSG, "max_tokens": 65}), 400)["param"] \
            == "max_tokens"
        err(c.post("/v1/chat/completions", json={"messages": []}), 400)
        err(c.post("/v1/chat/completions", json={"messages": [{"role": "wizard", "content": "x"}]}), 400)
        err(c.post("/v1/chat/completions", content=b"{not json"), 400)
        err(c.post("/v1/completions", json={"prompt": "x", "n": 2}), 400)
        assert err(c.post("/v1/completions", json={"prompt": "add " * 300}), 400)["code"] == "context_length_exceeded"
        assert err(c.post("/v1/completions", json={"prompt": "x" * 5000}), 413)["code"] == "request_too_large"
        err(c.get("/v1/nothing"), 404)


def test_queue_batching_429_and_timeout(backend):
    prompt = render_chat(backend.tokenizer, MSG)
    want, _ = greedy(backend, prompt, 6)
    limits = Limits(max_tokens=2000, max_queue=2, max_batch=8, timeout_s=60)
    with running(backend, replace(limits, max_tokens=256)) as c, ThreadPoolExecutor(4) as pool:
        # A long request holds the worker; two sent meanwhile wait together and are generated as one batch.
        long = pool.submit(c.post, "/v1/completions", json={"prompt": "x", "max_tokens": 240})
        _wait(lambda: c.get("/health").json()["generated_tokens"] > 0)
        both = [pool.submit(c.post, "/v1/chat/completions", json={"messages": MSG, "max_tokens": 6}) for _ in range(2)]
        _wait(lambda: c.get("/health").json()["queued"] == 2)
        full = c.post("/v1/chat/completions", json={"messages": MSG, "max_tokens": 6})
        assert full.status_code == 429 and full.json()["error"]["code"] == "queue_full"
        assert long.result().status_code == 200
        for f in both:
            r = f.result()
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == want
        assert c.get("/health").json()["batches"].get("2") == 1
    with running(backend, replace(limits, timeout_s=0.05)) as c:
        r = c.post("/v1/completions", json={"prompt": "x", "max_tokens": 2000})
        assert r.status_code == 408 and r.json()["error"]["code"] == "timeout"
        with c.stream("POST", "/v1/completions", json={"prompt": "x", "max_tokens": 2000, "stream": True}) as s:
            events = sse(s)
        assert events[-1] == "[DONE]" and events[-2]["error"]["code"] == "timeout"


def _wait(cond, seconds: float = 30):
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


# ---------------------------------------------------------------- CLI and chat


def test_cli_one_line_errors_and_one_shot_chat(backend, model_dir, tmp_path):
    r = CliRunner().invoke(cli, ["serve", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no such model folder" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["serve", str(model_dir), "--backend", "onnx"])
    assert r.exit_code == 2 and "onnx" in r.output
    r = CliRunner().invoke(cli, ["chat", str(model_dir), "--prompt", MSG[0]["content"], "--max-tokens", "5",
                                 "--system", "", "--target", "zig"])
    assert r.exit_code == 0, r.output
    assert r.stdout.rstrip("\n") == greedy(backend, render_chat(backend.tokenizer, MSG), 5)[0].rstrip("\n")


def test_chat_session_history_trim_and_commands(backend):
    s = ChatSession(Toolbox(backend, target="zig"), max_tokens=40, system="")
    c1 = s.send("first question")
    s.send("second")
    assert [m["role"] for m in s.history] == ["user", "assistant", "user", "assistant"]
    n2 = len(backend.encode(render_chat(backend.tokenizer, s.messages())))
    assert n2 > c1.prompt_tokens  # the history is part of the next prompt
    for _ in range(12):  # far past the 256-token context: old exchanges are dropped, never an error
        c = s.send("tell me more about the add instruction and its operands please")
        assert c.prompt_tokens + 40 <= 256
    assert s.dropped > 0
    lines = iter(["hello", "/reset", "/nope", "/exit"])
    out, notes = [], []
    repl(s, lambda _: next(lines), out.append, notes.append)
    assert s.history == []  # /reset cleared what "hello" added
    assert any("history cleared" in n for n in notes) and any("unknown command" in n for n in notes)


def test_export_runtime_backend_behind_the_same_api(backend, model_dir):
    """The adapter for `codehone export` runtimes (int8/ONNX/GGUF), here over its torch runtime: same answers,
    one request at a time (no batching), EOS from the runtime's own token loop."""
    from codehone.export.runtime import HfLM
    from codehone.serve.backends import RuntimeBackend

    rt = RuntimeBackend(HfLM(model_dir / "model"), "hf-runtime", model_dir)
    assert not rt.supports_batching
    prompt = render_chat(backend.tokenizer, MSG)
    want, _ = greedy(backend, prompt, 7)
    assert greedy(rt, prompt, 7) == (want, "length")
    with running(rt) as c:
        r = c.post("/v1/chat/completions", json={"messages": MSG, "max_tokens": 7}).json()
        assert r["choices"][0]["message"]["content"] == want and r["usage"]["completion_tokens"] == 7
        with c.stream("POST", "/v1/chat/completions", json={"messages": MSG, "max_tokens": 7, "stream": True}) as s:
            events = sse(s)
        assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1]) == want
        assert c.get("/health").json()["max_batch"] == 1
