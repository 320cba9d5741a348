"""Serving a trained model: an OpenAI-compatible HTTP API, an MCP server and a terminal chat.

All three share `backends.load_backend` (one loader for HF folders, PEFT adapters and
`codehone train` run folders, plus the ONNX/GGUF runtimes of `codehone export`) and render
prompts only through the model's saved chat template, the renderer training used.
"""

from __future__ import annotations


class ServeError(ValueError):
    """Bad input to serve/mcp/chat (a model path, a backend, a request): one line for the user."""
