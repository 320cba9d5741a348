"""Thin wrappers over the real tools (zig, wabt, wasmtime, rustc/clippy): paths, versions, invocations."""
