"""`codehone serve` latency and tokens/s against HF `model.generate` called directly, same model and prompts.

    python benchmarks/serve_latency.py MODEL DATASET [--requests 6] [--max-tokens 64] [--rounds 3]
        [--export EXPORT_DIR --backend gguf|onnx|int8]

Methods (rounds interleaved, best round of each kept, so a noisy shared CPU
hurts them alike):
- `hf generate`: the baseline, no server: greedy `model.generate` per prompt, one after another.
- `serve, sequential`: the same prompts as /v1/chat/completions requests, one at a time (HTTP included).
- `serve, stream`: the same, stream=true; also the time to the first token.
- `serve, concurrent`: all requests sent at once; the server batches what waits together.
- with --export: `serve <backend>, sequential` / `stream`: the same requests to a second server
  running that `codehone export` of the model (one request at a time: no batching there).

The server runs in this process on a loopback port (uvicorn + httpx), with the
tokens counted from `usage`. Torch uses --threads CPU threads everywhere.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import torch
import uvicorn
from rich.console import Console
from rich.table import Table

from codehone.serve.api import Limits, create_app
from codehone.serve.backends import load_backend, render_chat


def start(backend, max_tokens: int):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(backend, "bench", Limits(max_tokens=max_tokens, max_queue=64)),
                                           host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server, f"http://127.0.0.1:{port}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--requests", type=int, default=6)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--export", help="a `codehone export` folder of MODEL, served as a second server")
    ap.add_argument("--backend", default="gguf")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    be = load_backend(a.model)
    tok = be.tokenizer
    exs = [json.loads(line) for line in (a.dataset / "test.jsonl").open()][: a.requests]
    convs = [e["messages"][:-1] for e in exs]
    server, url = start(be, a.max_tokens)
    client = httpx.Client(base_url=url, timeout=600)
    ex_client = None
    if a.export:
        ex_server, ex_url = start(load_backend(a.export, a.backend, a.threads), a.max_tokens)
        ex_client = httpx.Client(base_url=ex_url, timeout=600)

    def hf_generate():
        lat, toks = [], 0
        for m in convs:
            ids = tok(render_chat(tok, m), add_special_tokens=False, return_tensors="pt")["input_ids"]
            t0 = time.monotonic()
            with torch.inference_mode():
                out = be.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=a.max_tokens,
                                        do_sample=False, eos_token_id=sorted(be.eos_ids),
                                        pad_token_id=tok.pad_token_id)
            lat.append(time.monotonic() - t0)
            new = out[0, ids.shape[1]:].tolist()
            toks += next((i for i, t in enumerate(new) if t in be.eos_ids), len(new))
        return {"tokens": toks, "wall": sum(lat), "lat": lat, "ttft": None}

    def one(m, stream=False, cl=client):
        body = {"messages": m, "max_tokens": a.max_tokens, "stream": stream}
        t0 = time.monotonic()
        if not stream:
            r = cl.post("/v1/chat/completions", json=body).json()
            return r["usage"]["completion_tokens"], time.monotonic() - t0, None
        first, n = None, 0
        with cl.stream("POST", "/v1/chat/completions", json=body) as s:
            for line in s.iter_lines():
                if line.startswith("data: {") and '"content"' in line and '"content": ""' not in line:
                    first = first or time.monotonic() - t0
                    n += 1
        return n, time.monotonic() - t0, first

    def sequential(stream=False, cl=client):
        res = [one(m, stream, cl) for m in convs]
        return {"tokens": sum(r[0] for r in res), "wall": sum(r[1] for r in res), "lat": [r[1] for r in res],
                "ttft": [r[2] for r in res] if stream else None}

    def concurrent():
        t0 = time.monotonic()
        with ThreadPoolExecutor(len(convs)) as pool:
            res = list(pool.map(one, convs))
        return {"tokens": sum(r[0] for r in res), "wall": time.monotonic() - t0, "lat": [r[1] for r in res],
                "ttft": None}

    methods = {"hf generate (baseline)": hf_generate, "serve, sequential": sequential,
               "serve, stream": lambda: sequential(True), "serve, concurrent": concurrent}
    if ex_client is not None:
        methods[f"serve {a.backend}, sequential"] = lambda: sequential(False, ex_client)
        methods[f"serve {a.backend}, stream"] = lambda: sequential(True, ex_client)
    best: dict[str, dict] = {}
    for _ in range(a.rounds):
        for name, fn in methods.items():
            r = fn()
            r["tps"] = r["tokens"] / r["wall"]
            if name not in best or r["tps"] > best[name]["tps"]:
                best[name] = r
    batches = client.get("/health").json()["batches"]
    server.should_exit = True
    if ex_client is not None:
        ex_server.should_exit = True
    base = best["hf generate (baseline)"]["tps"]
    t = Table(title=f"serve vs HF generate: {len(convs)} requests, max_tokens {a.max_tokens}, "
                    f"{a.threads} thread(s), best of {a.rounds}")
    for c in ("method", "tokens", "wall s", "tokens/s", "vs baseline", "p50 latency s", "p50 TTFT s"):
        t.add_column(c)
    for name, r in best.items():
        t.add_row(name, str(r["tokens"]), f"{r['wall']:.2f}", f"{r['tps']:.1f}", f"{r['tps'] / base:.2f}x",
                  f"{statistics.median(r['lat']):.3f}",
                  f"{statistics.median(r['ttft']):.3f}" if r["ttft"] else "-")
    Console(width=140).print(t)
    print(json.dumps({"batches": batches, **{k: round(v["tps"], 1) for k, v in best.items()}}))


if __name__ == "__main__":
    main()
