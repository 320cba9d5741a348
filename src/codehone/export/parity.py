"""The parity check every export ends with: the export against its source on fixed prompts.

Why: an export that loads is not an export that works; the common failures are
silent (a permuted rope, a lost EOS, a pre-tokenizer that splits differently).
Two figures say whether the export computes the same function:
  - max |logit difference| over every position of every prompt, held to a
    tolerance where the format promises one (fp32 ONNX is exact up to kernel
    order; f16 and q8_0 round weights; int8 and q4_k_m change the function,
    so their figure is reported, not held to a bound);
  - greedy continuations of N tokens, required to be identical. For int8 and
    q4_k_m this can legitimately fail on a near-tie, so the agreement rate
    (matching tokens before the first divergence) is stored either way.
For GGUF the check also compares llama.cpp's own tokenization of each prompt
with the HF tokenizer's, and reads the chat template and EOS id back out of
the file's metadata.
"""

from __future__ import annotations

import numpy as np

from .runtime import LM

# Rendered with the model's own chat template, so the check covers the template and its special tokens.
PROMPTS = [
    [{"role": "system", "content": "Compile C to WebAssembly text."},
     {"role": "user", "content": "int add(int a, int b) { return a + b; }"}],
    [{"role": "user", "content": "static unsigned hash(const char *s) {\n  unsigned h = 5381;\n"
                                 "  while (*s) h = h * 33 + (unsigned char)*s++;\n  return h;\n}"}],
    [{"role": "user", "content": "Write the assembly for: int is_digit(int c) { return c >= '0' && c <= '9'; }"}],
]

# Lossy formats: greedy tokens that must be identical on every prompt (the rest is reported).
STRICT_PREFIX = 8

# Max |logit diff| allowed, as (rule, value): "abs" bounds it outright; "rel" bounds it by value x the
# largest |logit| of the source on the prompts, since rounding weights to f16 or 8 bits makes an error
# that grows with the logits' scale. None: reported, not bounded (the format changes the function).
TOLERANCE = {"merged": ("abs", 1e-4), "onnx": ("abs", 1e-4), "f16": ("rel", 1e-2), "q8_0": ("rel", 5e-2),
             "int8": None, "q4_k_m": None}


def render(tok, messages) -> str:
    if getattr(tok, "chat_template", None):
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n".join(m["content"] for m in messages) + "\n"


def check(ref: LM, exp: LM, kind: str, n_tokens: int = 32) -> dict:
    """Compare `exp` with `ref` on PROMPTS. `kind`: merged | int8 | onnx | f16 | q8_0 | q4_k_m."""
    rule = TOLERANCE[kind]
    rows, max_diff, scale, agree, total, identical, prefix_ok = [], 0.0, 0.0, 0, 0, True, True
    tok_mismatch = []
    for messages in PROMPTS:
        text = render(ref.tokenizer, messages)
        ids = ref.encode(text)
        a, b = ref.logits(ids), exp.logits(ids)
        d = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
        max_diff = max(max_diff, d)
        scale = max(scale, float(np.abs(a).max()))
        ga = list(ref.generate_ids(ids, max_tokens=n_tokens))
        gb = list(exp.generate_ids(ids, max_tokens=n_tokens))
        same = 0
        for x, y in zip(ga, gb, strict=False):
            if x != y:
                break
            same += 1
        full = ga == gb
        identical &= full
        agree += len(ga) if full else same
        total += max(len(ga), len(gb))
        if not full and same < min(len(ga), len(gb)):  # how close the source itself was at the split
            la = ref.logits(ids + ga[:same])[-1]
            margin = float(la[ga[same]] - la[gb[same]])
        else:
            margin = None
        need = min(STRICT_PREFIX, len(ga)) if rule is None else len(ga)
        prefix_ok &= full or same >= need
        row = {"prompt_tokens": len(ids), "ref_margin_at_divergence": margin, "max_abs_logit_diff": d, "greedy_identical": full,
               "ref_tokens": len(ga), "export_tokens": len(gb), "agree_before_divergence": same,
               "argmax_agreement": float((a.argmax(-1) == b.argmax(-1)).mean())}
        if hasattr(exp, "llama_tokenize"):
            lt = exp.llama_tokenize(text)
            row["llama_cpp_tokenization_matches"] = lt == ids
            if lt != ids:
                tok_mismatch.append(len(rows))
        rows.append(row)
    tol = None if rule is None else rule[1] * (scale if rule[0] == "rel" else 1.0)
    logits_ok = tol is None or max_diff <= tol
    return {
        "kind": kind, "prompts": len(PROMPTS), "greedy_tokens": n_tokens,
        "max_abs_logit_diff": max_diff, "tolerance": tol,
        "tolerance_rule": None if rule is None else f"{rule[0]} {rule[1]:g}" + (
            f" x max |source logit| {scale:.3g}" if rule[0] == "rel" else ""),
        "logits_within_tolerance": logits_ok,
        "greedy_identical": identical, "greedy_agreement": agree / total if total else 1.0,
        "tokenization_mismatches": tok_mismatch,
        "strict_prefix": None if rule is not None else STRICT_PREFIX,
        "passed": bool(logits_ok and prefix_ok and not tok_mismatch),
        "per_prompt": rows,
    }


def summary_line(p: dict) -> str:
    tol = "reported, no bound" if p["tolerance"] is None else f"tolerance {p['tolerance']:.3g} = {p['tolerance_rule']}"
    verdict = "PASS" if p["passed"] else "FAIL"
    rule = "" if p.get("strict_prefix") is None else f" (first {p['strict_prefix']} required)"
    return (f"parity {verdict} ({p['kind']}): max |logit diff| {p['max_abs_logit_diff']:.3g} ({tol}); "
            f"greedy {p['greedy_tokens']} tokens identical on "
            f"{sum(r['greedy_identical'] for r in p['per_prompt'])}/{p['prompts']} prompts, "
            f"agreement {p['greedy_agreement']:.1%}{rule}")
