"""The quickstart report: what each stage did, read back from the files the stages wrote.

Why read files and not pass numbers along: the report must agree with the stage outputs a
user can open (mine/stats.json, dataset/stats.json, train/summary.json, eval/metrics.json,
iterate/rounds.json), so every figure is taken from them. The document is a list of blocks,
rendered twice: Markdown (report.md, images as relative links) and standalone HTML
(report.html, images embedded as base64 PNG, so the one file can be mailed around).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from .records import read_jsonl, write_text_atomic
from .targets import DEFAULT, get

Block = tuple  # ("h", level, text) | ("p", text) | ("table", headers, rows) | ("img", path, alt) | ("code", lang, text)



def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, int | float) else "–"


def _num(x: Any, nd: int = 3) -> str:
    if isinstance(x, bool) or x is None:
        return "–" if x is None else str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _mine_blocks(d: Path) -> list[Block]:
    s = _load(d / "mine" / "stats.json")
    if not s:
        return [("p", "The mine stage did not finish.")]
    rows = [["files seen / mined", f"{s.get('files_seen', 0):,} / {s.get('files_mined', 0):,}"],
            ["functions found", _num(s.get("functions_found"))],
            ["units written (one reference answer each)", _num(s.get("units_written"))],
            ["yield", _pct(s.get("yield"))],
            ["seconds", _num(s.get("seconds"), 1)]]
    out: list[Block] = [("table", ["", ""], rows)]
    reasons = s.get("failure_reasons") or {}
    ex = s.get("failure_examples") or {}
    if reasons:
        out.append(("p", "Functions lost, by reason (one example each):"))
        out.append(("table", ["reason", "functions", "example"],
                    [[k, str(v), str(ex.get(k, ""))[:160]] for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])]))
    return out


def _dataset_blocks(d: Path) -> list[Block]:
    s = _load(d / "dataset" / "stats.json")
    if not s:
        return [("p", "The build stage did not finish.")]
    dd, sp = s.get("dedup", {}), s.get("split", {})
    rows = [["units in / out", f"{s.get('units_in', 0):,} / {s.get('units_out', 0):,}"],
            ["exact / near duplicates", f"{dd.get('exact_duplicates', 0)} / {dd.get('near_duplicates', 0)}"],
            ["filtered", ", ".join(f"{k}={v}" for k, v in (s.get("filtered") or {}).items()) or "0"],
            ["examples dropped for length (never truncated)",
             ", ".join(f"{k}={v}" for k, v in (s.get("examples_filtered") or {}).items()) or "0"],
            ["decontaminated", str((s.get("decontam") or {}).get("dropped", 0))],
            [f"split (grouped by {sp.get('group_by', '?')})",
             ", ".join(f"{k}={v}" for k, v in (sp.get("examples") or {}).items()) + " examples"]]
    out: list[Block] = [("table", ["", ""], rows), ("p", "The full card is dataset/README.md.")]
    for png in sorted((d / "dataset" / "plots").glob("*.png")):
        out.append(("img", png, png.stem.replace("_", " ")))
    return out


def _train_blocks(d: Path) -> list[Block]:
    s = _load(d / "train" / "summary.json")
    if not s:
        return [("p", "The train stage did not finish.")]
    evals = [r for r in read_jsonl(d / "train" / "metrics.jsonl") if "eval_loss" in r] \
        if (d / "train" / "metrics.jsonl").is_file() else []
    first = evals[0]["eval_loss"] if evals else None
    rows = [["mode / parameters", f"{s.get('mode')} / {s.get('params', 0) / 1e6:.2f}M"],
            ["train examples (dropped as too long)", f"{s.get('train_examples')} ({s.get('dropped_long', 0)})"],
            ["steps", _num(s.get("steps"))],
            ["final train loss", _num(s.get("final_loss"))],
            ["eval loss: first eval → last", f"{_num(first)} → {_num(s.get('final_eval_loss'))}"],
            ["tokens/s", _num(round(s.get("tokens_per_s") or 0))],
            ["stopped by the time budget", "yes" if s.get("early_stopped") else "no"]]
    out: list[Block] = [("table", ["", ""], rows)]
    if (d / "train" / "loss.png").is_file():
        out.append(("img", d / "train" / "loss.png", "loss curve"))
    return out


def _metrics_row(name: str, m: dict, target: str = DEFAULT) -> list[str]:
    ks = sorted((k for k in m if k.startswith("pass@") and k != "pass@1"), key=lambda k: int(k[5:]))
    rate = m.get(get(target).compile_metric, m.get("compile_rate"))
    return [name, _num(m.get("prompts")), _num(m.get("samples")), _pct(rate),
            _pct(m.get("pass@1")), ", ".join(f"{k} {_pct(m[k])}" for k in ks) or "–",
            _pct(m.get("stopped_at_eos_rate"))]


def _eval_blocks(d: Path, target: str = DEFAULT) -> list[Block]:
    """`codehone eval` of the trained model, then each iterate round's own eval/metrics.json."""
    before = _load(d / "eval" / "metrics.json")
    rows = []
    if before:
        rows.append(_metrics_row("trained model (`codehone eval`)", before, target))
    rounds = []
    for rd in sorted((d / "iterate").glob("round-*")):
        info = _load(rd / "round.json")
        if info:
            rounds.append(info)
            m = _load(rd / "eval" / "metrics.json")
            if m:
                label = "iterate round 0 (start model)" if info.get("round") == 0 else f"iterate round {info.get('round')}"
                rows.append(_metrics_row(label, m, target))
    if not rows:
        return [("p", "The eval stage did not finish.")]
    label = get(target).compile_label.removesuffix(" rate")
    out: list[Block] = [("table", ["model", "prompts", "samples", label, "pass@1", "pass@k", "stops at EOS"],
                         rows)]
    if before and before.get("failure_stages"):
        out.append(("p", "Where failing samples stopped (before iterate): " + ", ".join(
            f"{k}={v}" for k, v in sorted(before["failure_stages"].items(), key=lambda kv: -kv[1]))))
    for info in rounds:
        c = info.get("counts")
        if c:
            out.append(("p", f"Iterate round {info.get('round')} ({info.get('init', '?')} training): sampled "
                             f"{c.get('samples')} completions for {c.get('prompts')} train prompts; {c.get('passing')} "
                             f"passed the judge, {c.get('kept')} kept for fine-tuning."))
    summary = _load(d / "iterate" / "rounds.json")
    if isinstance(summary, dict) and summary.get("stopped"):
        out.append(("p", f"Iterate stopped: {summary['stopped']}"))
    if (d / "iterate" / "rounds.png").is_file():
        out.append(("img", d / "iterate" / "rounds.png", "metrics per iterate round"))
    return out


def _printable(text: str) -> str:
    """Model output can hold control bytes (an undertrained model emits any token): show them as U+FFFD."""
    return "".join(c if c.isprintable() or c in "\n\t" else "\ufffd" for c in text)


def _sample_blocks(d: Path, n: int = 3, target: str = DEFAULT) -> list[Block]:
    path = d / "eval" / "samples.jsonl"
    if not path.is_file():
        return [("p", "No samples (the eval stage did not finish).")]
    samples = list(read_jsonl(path))
    # Show variety: a passing sample if any, then one that compiled but failed, then one that did not.
    def stage(s: dict) -> str:
        return (s.get("verdict") or {}).get("stage") or "?"
    picks: list[dict] = []
    for want in (lambda s: s.get("ok"), lambda s: not s.get("ok") and stage(s) not in ("parse", "assemble", "compile"),
                 lambda s: not s.get("ok")):
        for s in samples:
            if want(s) and s not in picks and all(p.get("example_id") != s.get("example_id") for p in picks):
                picks.append(s)
                break
    for distinct in (True, False):  # fill up, other prompts first
        for s in samples:
            if len(picks) >= n:
                break
            if s not in picks and not (distinct and any(p.get("example_id") == s.get("example_id") for p in picks)):
                picks.append(s)
    out: list[Block] = []
    for i, s in enumerate(picks[:n], 1):
        v = s.get("verdict") or {}
        user = next((m["content"] for m in reversed(s.get("messages") or []) if m.get("role") == "user"), "")
        diag = (v.get("diagnostics") or [{}])[0] if v.get("diagnostics") else {}
        out.append(("h", 3, f"Sample {i}: {'PASS' if s.get('ok') else 'FAIL'} at stage {v.get('stage', '?')}"
                            f" ({s.get('mode', '')})"))
        out.append(("p", "Prompt:"))
        out.append(("code", "text", _printable(user[:1500])))
        out.append(("p", f"The model's {get(target).answer_name}:"))
        out.append(("code", get(target).answer_lang, _printable((s.get("code") or s.get("completion") or "")[:2000])))
        verdict = f"ok={v.get('ok')}, stage={v.get('stage')}"
        if v.get("counts"):
            verdict += ", " + ", ".join(f"{k}={x}" for k, x in v["counts"].items())
        if diag:
            verdict += f"; first diagnostic: {diag.get('code', '')} {str(diag.get('message', ''))[:300]}"
        out.append(("p", "Judge: " + verdict))
    return out


def blocks(d: Path, state: dict) -> list[Block]:
    stages = state.get("stages", [])
    target = state.get("target") or DEFAULT
    tgt = get(target)
    corpus = tgt.miner.corpus_description if tgt.miner else "its corpus"
    out: list[Block] = [("h", 1, "codehone quickstart report"),
                        ("p", f"The {target} loop on the bundled corpus ({corpus}): mine → build → train → eval → "
                              f"one iterate round. Budget {state.get('budget', {}).get('minutes')} minutes; this run took "
                              f"{state.get('wall_seconds', 0) / 60:.1f} minutes of wall time."),
                        ("table", ["stage", "status", "seconds"],
                         [[s["name"], s["status"], _num(s.get("seconds"), 1)] for s in stages])]
    out += [("h", 2, "1. Mined"), *_mine_blocks(d)]
    out += [("h", 2, "2. Dataset"), *_dataset_blocks(d)]
    out += [("h", 2, "3. Training"), *_train_blocks(d)]
    out += [("h", 2, "4. Evaluation by execution, before and after one iterate round"),
            ("p", tgt.metric_notes),
            *_eval_blocks(d, target)]
    out += [("h", 2, "5. Three samples"), *_sample_blocks(d, target=target)]
    out += [("h", 2, "6. Reproduce each stage by hand"),
            ("code", "bash", "\n".join(s["command"] for s in stages))]
    return out


def _md(blocks_: list[Block], base: Path) -> str:
    parts = []
    for b in blocks_:
        if b[0] == "h":
            parts.append("#" * b[1] + " " + b[2])
        elif b[0] == "p":
            parts.append(b[1])
        elif b[0] == "table":
            head, rows = b[1], b[2]
            esc = [[str(c).replace("|", "\\|").replace("\n", " ") for c in r] for r in rows]
            parts.append("\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                                    *("| " + " | ".join(r) + " |" for r in esc)]))
        elif b[0] == "img":
            parts.append(f"![{b[2]}]({Path(b[1]).resolve().relative_to(base.resolve())})")
        elif b[0] == "code":
            fence = "````" if "```" in b[2] else "```"
            parts.append(f"{fence}{b[1]}\n{b[2]}\n{fence}")
    return "\n\n".join(parts) + "\n"


def _html(blocks_: list[Block]) -> str:
    e = html.escape
    body = []
    for b in blocks_:
        if b[0] == "h":
            body.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
        elif b[0] == "p":
            body.append(f"<p>{e(b[1])}</p>")
        elif b[0] == "table":
            head = "".join(f"<th>{e(str(h))}</th>" for h in b[1])
            rows = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in b[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif b[0] == "img":
            data = base64.b64encode(Path(b[1]).read_bytes()).decode()
            body.append(f'<figure><img alt="{e(b[2])}" src="data:image/png;base64,{data}"><figcaption>{e(b[2])}'
                        "</figcaption></figure>")
        elif b[0] == "code":
            body.append(f"<pre><code>{e(b[2])}</code></pre>")
    style = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
             "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;"
             "text-align:left;vertical-align:top}pre{background:#f6f6f6;padding:.8rem;overflow-x:auto}"
             "img{max-width:100%}")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>codehone quickstart report</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def write_report(d: Path, state: dict) -> tuple[Path, Path]:
    """Write DIR/report.md and DIR/report.html from the stage outputs under DIR."""
    bl = blocks(d, state)
    md, ht = d / "report.md", d / "report.html"
    write_text_atomic(md, _md(bl, d))
    write_text_atomic(ht, _html(bl))
    return md, ht
