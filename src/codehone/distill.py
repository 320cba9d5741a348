"""`codehone distill`: a teacher's answers to a target's prompts, judged, and only passing ones kept.

The teacher is any OpenAI-compatible chat endpoint (a local `codehone serve`, llama.cpp's
server, vLLM, a hosted API). Nothing it says is trusted: every candidate goes through the
target's judge, exactly as eval's samples do, and only verified passes (ok and ran something,
`targets/verdict.py`) become training examples.

How it behaves with a real endpoint:
  * bounded concurrency (`concurrency` requests in flight) and a rate limit (the least gap
    between two request starts), so a shared server or a paid API is not flooded;
  * retries with exponential backoff on connection errors, timeouts, 429 and 5xx (a
    Retry-After header is obeyed, up to 60 s); a prompt whose requests all fail is recorded
    with its error, never silently dropped;
  * resume: a prompt's candidates are appended and fsync'ed, then its journal line; a rerun
    skips journalled prompts and discards candidate lines of a prompt left half-done;
  * token accounting: the endpoint's `usage` when it reports one, else cl100k_base counts
    (marked `estimated`).

Outputs in OUT/: candidates.jsonl (every candidate with its verdict), journal.jsonl,
data/train.jsonl (the kept answers as chat examples, ready for `codehone train --set
data=OUT/data`; the dataset's val split is copied beside it) and summary.json.
"""

from __future__ import annotations

import asyncio
import json
import queue
import random
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .executors import Journal
from .records import JsonlAppender, read_jsonl, repair_tail, write_jsonl_atomic, write_text_atomic
from .targets.verdict import verified


class DistillError(ValueError):
    """Bad distill input or an unusable endpoint, as one line."""


@dataclass
class TeacherConfig:
    endpoint: str
    model: str | None = None
    api_key: str | None = None
    n: int = 4  # candidates per prompt (one request each: not every server supports `n`)
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 512
    concurrency: int = 4
    min_interval_s: float = 0.0  # least gap between two request starts (the rate limit)
    retries: int = 3
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.n < 1 or self.concurrency < 1 or self.retries < 0 or self.max_tokens < 1:
            raise DistillError("need n >= 1, concurrency >= 1, retries >= 0 and max_tokens >= 1")
        if self.min_interval_s < 0 or self.timeout_s <= 0:
            raise DistillError("need a rate gap >= 0 s and a timeout > 0 s")
        if not self.endpoint.startswith(("http://", "https://")):
            raise DistillError(f"endpoint {self.endpoint!r} is not an http(s) URL")

    @property
    def url(self) -> str:
        """.../v1/chat/completions from a base URL with or without /v1."""
        e = self.endpoint.rstrip("/")
        if e.endswith("/chat/completions"):
            return e
        return e + ("/chat/completions" if e.endswith("/v1") else "/v1/chat/completions")


class _Gap:
    """The least gap between two request starts, shared by every task of the loop."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.next_at = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self.lock:
            now = time.monotonic()
            if self.next_at > now:
                await asyncio.sleep(self.next_at - now)
            self.next_at = time.monotonic() + self.seconds


_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


async def _one(client, cfg: TeacherConfig, messages: list[dict], gap: _Gap, seed: int) -> dict:
    """One chat completion, retried; {"text", "usage", "finish_reason", "attempts"} or {"error", ...}."""
    import httpx

    body: dict[str, Any] = {"messages": messages, "temperature": cfg.temperature, "top_p": cfg.top_p,
                            "max_tokens": cfg.max_tokens, "seed": seed}
    if cfg.model:
        body["model"] = cfg.model
    headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
    last = "no attempt"
    retry_after: float | None = None
    for attempt in range(cfg.retries + 1):
        if attempt:  # the server's Retry-After, else exponential backoff with jitter
            delay = retry_after if retry_after is not None else min(30.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random())
            await asyncio.sleep(delay)
            retry_after = None
        await gap.wait()
        try:
            r = await client.post(cfg.url, json=body, headers=headers, timeout=cfg.timeout_s)
        except (httpx.TransportError, httpx.TimeoutException) as e:
            last = f"{type(e).__name__}: {e}"[:300]
            continue
        if r.status_code in _RETRY_STATUS:
            ra = (r.headers.get("retry-after") or "").strip()
            last = f"HTTP {r.status_code}"
            if ra.replace(".", "", 1).isdigit():
                retry_after = min(60.0, float(ra))
            continue
        if r.status_code >= 400:  # a client error is not retried: the request itself is wrong
            return {"error": f"HTTP {r.status_code}: {r.text[:300]}", "attempts": attempt + 1}
        try:
            data = r.json()
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            return {"error": f"not an OpenAI chat completion: {r.text[:200]!r}", "attempts": attempt + 1}
        return {"text": text, "usage": data.get("usage") or None, "finish_reason": choice.get("finish_reason"),
                "attempts": attempt + 1}
    return {"error": f"gave up after {cfg.retries + 1} attempts: {last}", "attempts": cfg.retries + 1}


def _fetch_all(cfg: TeacherConfig, rows: list[dict], seed: int, out: queue.Queue) -> None:
    """In a thread: every pending prompt's n completions, one (row, results) onto `out` per prompt."""
    import httpx

    from .evaluate import prompt_messages

    async def main() -> None:
        gap = _Gap(cfg.min_interval_s)
        sem = asyncio.Semaphore(cfg.concurrency)
        limits = httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
        async with httpx.AsyncClient(limits=limits, trust_env=False) as client:
            async def limited(msgs, s):
                async with sem:
                    return await _one(client, cfg, msgs, gap, s)

            async def prompt(i: int, row: dict) -> None:
                msgs = prompt_messages(row)
                res = await asyncio.gather(*(limited(msgs, seed + i * cfg.n + j) for j in range(cfg.n)))
                await asyncio.to_thread(out.put, (row, res))

            # A bounded window of prompts in flight, in order, so memory stays flat on a big split.
            window = max(2, cfg.concurrency)
            pending: set[asyncio.Task] = set()
            for i, row in enumerate(rows):
                pending.add(asyncio.create_task(prompt(i, row)))
                if len(pending) >= window:
                    _done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if pending:
                await asyncio.wait(pending)

    try:
        asyncio.run(main())
    except Exception as e:  # noqa: BLE001 - reported to the main thread, which ends the run with it
        out.put(("error", f"{type(e).__name__}: {e}"))
    out.put(None)


def _usage(results: list[dict], messages: list[dict]) -> dict:
    from .targets.compress import tokens

    prompt = completion = 0
    estimated = False
    for r in results:
        u = r.get("usage") or {}
        if isinstance(u.get("prompt_tokens"), int) and isinstance(u.get("completion_tokens"), int):
            prompt += u["prompt_tokens"]
            completion += u["completion_tokens"]
        elif "text" in r:
            estimated = True
            prompt += tokens.count("".join(m.get("content") or "" for m in messages))
            completion += tokens.count(r["text"])
    return {"prompt_tokens": prompt, "completion_tokens": completion, "estimated": estimated}


def run_distill(dataset: str | Path, out: str | Path, cfg: TeacherConfig, *, split: str = "train",
                limit: int | None = None, jobs: int = 1, seed: int = 0,
                progress: Callable[[int, int, int], None] | None = None,
                log: Callable[[str], None] = print) -> dict:
    """Ask the teacher for every prompt of `split`, judge every candidate, keep the passes. Resumable."""
    from .evaluate import EvalError, judge_samples, load_eval_set, prompt_messages
    from .iterate import as_example

    try:
        evalset = load_eval_set(dataset, split, limit)
    except EvalError as e:
        raise DistillError(str(e)) from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cand_path = out / "candidates.jsonl"
    journal = Journal(out / "journal.jsonl")
    # Candidate lines of a prompt that never reached the journal (a kill between the two) are dropped.
    repair_tail(cand_path)
    if cand_path.exists():
        lines = list(read_jsonl(cand_path, errors=[]))
        keep = [c for c in lines if c.get("example_id") in journal.done]
        if len(keep) != len(lines):
            write_jsonl_atomic(cand_path, keep)
    rows = [r for r in evalset.rows if str(r.get("id")) not in journal.done]
    total = len(evalset.rows)
    done = total - len(rows)
    if done:
        log(f"resuming: {done} of {total} prompts already distilled")
    t0 = time.monotonic()
    q: queue.Queue = queue.Queue(maxsize=max(4, cfg.concurrency * 2))
    thread = threading.Thread(target=_fetch_all, args=(cfg, rows, seed, q), daemon=True)
    thread.start()
    app = JsonlAppender(cand_path)
    failure = None
    kept_now = 0
    try:
        while True:
            item = q.get()
            if item is None:
                break
            if item[0] == "error":
                failure = item[1]
                continue
            row, results = item
            eid = str(row.get("id"))
            samples = [{"example_id": eid, "unit_id": row.get("unit_id"), "mode": row.get("mode"), "k": j,
                        "messages": row["messages"], "completion": r.get("text", ""), "error": r.get("error"),
                        "attempts": r.get("attempts"), "finish_reason": r.get("finish_reason")}
                       for j, r in enumerate(results)]
            answered = [s for s in samples if s["error"] is None]
            if answered:
                try:
                    judge_samples(evalset.target, answered, units=evalset.units, modules_dir=evalset.modules_dir,
                                  jobs=jobs)
                except EvalError as e:
                    raise DistillError(str(e)) from None
            for s in samples:
                s.setdefault("verdict", None)
                s["ok"] = bool(s["verdict"] and verified(s["verdict"]))
                s.setdefault("code", None)
            app.write_many(samples)
            usage = _usage(results, prompt_messages(row))
            n_ok = sum(s["ok"] for s in samples)
            kept_now += n_ok
            journal.record({"key": eid, "candidates": len(samples), "passed": n_ok,
                            "errors": sum(s["error"] is not None for s in samples), **usage})
            done += 1
            if progress:
                progress(done, total, n_ok)
    except KeyboardInterrupt:
        log("interrupted: distilled prompts are saved; run the same command again to resume")
        raise
    finally:
        app.close()
        journal.close()
    if failure and done < total:
        raise DistillError(f"the teacher client failed: {failure}; what was distilled is saved, rerun to resume")
    return _finish(out, evalset, journal, time.monotonic() - t0, cfg, as_example)


def _finish(out: Path, evalset, journal: Journal, seconds: float, cfg: TeacherConfig, as_example) -> dict:
    """data/train.jsonl from every passing candidate (one per distinct code per prompt), and summary.json."""
    cands = list(read_jsonl(out / "candidates.jsonl", errors=[]))
    seen: set[tuple[str, str]] = set()
    kept = []
    for c in cands:
        if c.get("ok") and c.get("code") and (c["example_id"], c["code"]) not in seen:
            seen.add((c["example_id"], c["code"]))
            kept.append(c)
    data = out / "data"
    data.mkdir(exist_ok=True)
    examples = [as_example(c, 0, i) | {"source": "distill"} for i, c in enumerate(kept)]
    write_jsonl_atomic(data / "train.jsonl", examples)
    val = evalset.dataset / "val.jsonl"
    if val.is_file():
        shutil.copyfile(val, data / "val.jsonl")
    stages: dict[str, int] = {}
    for c in cands:
        if not c.get("ok"):
            key = "request_error" if c.get("error") else (c.get("verdict") or {}).get("stage", "?")
            stages[key] = stages.get(key, 0) + 1
    entries = list(journal.done.values())
    summary = {
        "target": evalset.target, "dataset": str(evalset.dataset), "split": evalset.split,
        "teacher": {k: v for k, v in asdict(cfg).items() if k != "api_key"},
        "prompts": len(entries), "candidates": len(cands), "passed": sum(bool(c.get("ok")) for c in cands),
        "rejected": sum(not c.get("ok") for c in cands), "request_errors": sum(bool(c.get("error")) for c in cands),
        "rejected_by_stage": dict(sorted(stages.items())), "prompts_with_a_pass": len({c["example_id"] for c in kept}),
        "kept_examples": len(examples),
        "tokens": {"prompt": sum(e.get("prompt_tokens", 0) for e in entries),
                   "completion": sum(e.get("completion_tokens", 0) for e in entries),
                   "estimated": any(e.get("estimated") for e in entries)},
        "seconds_this_run": round(seconds, 1), "out": str(out),
    }
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary
