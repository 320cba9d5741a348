"""`codehone train`: scratch, LoRA and full training on `codehone build` datasets.

Modules, one concept each: tokenizer (BPE + chat template), data (completion-only
targets, packing with document masks), model (sizes, HF loading, LoRA), loop (the
step, eval, generation), checkpoint (exact resume), logs (JSONL, TensorBoard, PNG),
run (the orchestration the CLI calls).
"""
