"""`codehone export`: one trained model to merged, int8, ONNX or GGUF, each checked against its source.

Why one entry point: every format goes through the same steps (resolve and
load the source with its tokenizer, chat template and EOS; write the format;
reload what was written through its runtime; run the parity check; write the
model card, export.json and parity.json), so no format skips a step.

The export is written into a temporary folder beside OUT and renamed into
place at the end, so OUT is never left half-written; an existing OUT is
replaced only with `overwrite`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from . import card, parity
from .runtime import GgufLM, Int8LM, OnnxLM, TorchLM, load_runtime
from .source import ExportError, load, resolve

FORMATS = ("merged", "int8", "onnx", "gguf")

__all__ = ["FORMATS", "ExportError", "export", "load_runtime"]


def _gguf_metadata(lm: GgufLM, tok) -> dict:
    md = lm.metadata
    eos = md.get("tokenizer.ggml.eos_token_id")
    tmpl = md.get("tokenizer.chat_template")
    return {"chat_template_present": bool(tmpl), "chat_template_matches": tmpl == tok.chat_template,
            "eos_token_id": None if eos is None else int(eos), "eos_matches": eos is not None
            and int(eos) == tok.eos_token_id, "pre_tokenizer": md.get("tokenizer.ggml.pre")}


def export(model: str | Path, to: str, out: str | Path, *, quant: str | None = None,
           llama_cpp: str | Path | None = None, overwrite: bool = False, parity_tokens: int = 32,
           log: Callable[[str], None] = print) -> dict:
    """Write MODEL as format `to` into OUT; returns the export record (also OUT/export.json)."""
    if to not in FORMATS:
        raise ExportError(f"--to {to!r}: choose one of {', '.join(FORMATS)}")
    if quant is not None and to != "gguf":
        raise ExportError("--quant applies to --to gguf only")
    quant = (quant or "q8_0") if to == "gguf" else None
    if to == "gguf":
        from .gguf import require

        require()
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out}: exists and is not empty (pass --overwrite to replace it)")
    src = resolve(model)
    t0 = time.monotonic()
    log(f"loading {src.path}" + (" (merging its LoRA adapter)" if src.adapter_dir else ""))
    m, tok, gen = load(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        log(f"writing {to}" + (f" ({quant})" if quant else ""))
        if to == "merged":
            from .merged import write
            info = write(m, tok, gen, tmp)
        elif to == "int8":
            from .int8 import write
            info = write(m, tok, gen, tmp)
        elif to == "onnx":
            from .onnx import write
            info = write(m, tok, gen, tmp, log=log)
        else:
            from .gguf import write
            info = write(m, tok, gen, tmp, quant=quant, llama_cpp=llama_cpp, log=log)
        log("parity check against the source")
        ref = TorchLM(m, tok, src.model_dir)
        exp = {"merged": lambda: load_runtime(tmp, "hf"), "int8": lambda: Int8LM(tmp),
               "onnx": lambda: OnnxLM(tmp), "gguf": lambda: GgufLM(tmp)}[to]()
        try:
            kind = quant if to == "gguf" else to
            par = parity.check(ref, exp, kind, n_tokens=parity_tokens)
            if to == "gguf":
                par["gguf_metadata"] = meta = _gguf_metadata(exp, tok)
                par["passed"] = bool(par["passed"] and meta["eos_matches"]
                                     and (meta["chat_template_matches"] or not tok.chat_template))
        finally:
            exp.close()
        (tmp / "parity.json").write_text(json.dumps(par, indent=1) + "\n")
        record = {"format": to, "quant": quant, "source": str(src.path), "info": info,
                  "parity_passed": par["passed"], "seconds": round(time.monotonic() - t0, 1)}
        (tmp / "export.json").write_text(json.dumps(record, indent=1) + "\n")
        card.write(tmp, src, m, tok, to, quant, info, par)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    record["out"] = str(out)
    record["parity"] = {k: par[k] for k in ("max_abs_logit_diff", "tolerance", "greedy_identical",
                                             "greedy_agreement", "passed")}
    record["summary"] = parity.summary_line(par)
    return record
