"""`codehone mcp`: the model and its judge as MCP tools, on the official SDK, over stdio or streamable HTTP.

Tools: `generate` (target-aware prompt through the model's chat template),
`check` (the target's judge, structured diagnostics), `suggest_fix` (proposals
judged; only a verified fix is returned) and `get_docs` (BM25 over mined doc
comments).

Every call is stateless: its prompt is built from its own arguments only, so
the hundredth call reads as many tokens as the first (the Zig assistant's MCP
server carried a chat context across calls until it overflowed). Each result
carries `prompt_tokens` so a client can see it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..targets import DEFAULT, get
from . import ServeError
from .backends import GenParams, complete, render_chat
from .fix import suggest_fix as fix_loop
from .fix import verdict_summary
from .prompts import TARGETS, check_target, extract_code, fix_messages, generate_messages


@dataclass
class Toolbox:
    """What the tools need: the backend, the default target, mined units and an optional docs index."""

    backend: Any
    target: str = DEFAULT
    units: dict[str, dict] = field(default_factory=dict)
    modules_dir: Path | None = None
    docs: Any = None
    max_tokens: int = 512
    check_cache: Path | None | bool = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------ generate

    def complete(self, messages: list[dict], max_tokens: int, temperature: float = 0.0,
                 seed: int | None = None) -> dict:
        if not 1 <= max_tokens <= self.max_tokens:
            raise ServeError(f"max_tokens must be between 1 and {self.max_tokens}")
        prompt = render_chat(self.backend.tokenizer, messages)
        with self._lock:  # one generation at a time: the model is one CPU-bound resource
            c = complete(self.backend, prompt, GenParams(max_tokens, temperature, 0.95 if temperature else 1.0,
                                                         seed))
        return {"text": c.text, "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                "finish_reason": c.finish}

    def generate(self, prompt: str, target: str | None = None, mode: str | None = None,
                 max_tokens: int | None = None, temperature: float = 0.0) -> dict:
        target = check_target(target or self.target)
        out = self.complete(generate_messages(target, prompt, mode), max_tokens or self.max_tokens, temperature)
        return {"target": target, **out, "code": extract_code(out["text"])}

    # ------------------------------------------------------------ check

    def unit_for(self, code: str, unit_id: str | None, target: str) -> dict:
        if not self.units:
            raise ServeError(f"{target} checks need the mined units: start the server with --units MINE/units.jsonl")
        if unit_id:
            u = self.units.get(unit_id)
            if u is None:
                raise ServeError(f"unit_id {unit_id!r} is not in the units file")
            return u
        name = get(target).code_name(code)
        named = [u for u in self.units.values() if name and u.get("name") == name]
        if len(named) != 1:
            raise ServeError("give unit_id: the function's name does not pick exactly one unit"
                             + (f" ({len(named)} units are named {name!r})" if name else ""))
        return named[0]

    def judge(self, code: str, target: str, unit: dict | None):
        from ..check import Item, check

        options: dict = {}
        if get(target).needs_modules:
            options["modules_dir"] = str(self.modules_dir)
        return check(target, [Item(candidate=code, unit=unit)], jobs=1, cache_dir=self.check_cache,
                     options=options)[0]

    def check(self, code: str, target: str | None = None, unit_id: str | None = None) -> dict:
        target = check_target(target or self.target)
        unit = self.unit_for(code, unit_id, target) if get(target).needs_unit else None
        v = self.judge(code, target, unit)
        return {"target": target, "unit_id": unit.get("id") if unit else None, **verdict_summary(v)}

    # ------------------------------------------------------------ suggest_fix

    def suggest_fix(self, code: str, target: str | None = None, error: str | None = None, attempts: int = 3,
                    unit_id: str | None = None, max_tokens: int | None = None) -> dict:
        """Proposals: attempt 1 greedy, later ones sampled (seed = attempt). For a unit with source and a
        target with a `regenerate_mode`, even attempts regenerate from that source with the training
        prompt (what the model learned)."""
        target = check_target(target or self.target)
        if not 1 <= attempts <= 20:
            raise ServeError("attempts must be between 1 and 20")
        tgt = get(target)
        unit = self.unit_for(code, unit_id, target) if tgt.needs_unit else None
        prompt_tokens: list[int] = []

        def propose(n: int, original: str, err: str) -> str:
            if unit is not None and unit.get("source") and tgt.regenerate_mode and n % 2 == 0:
                msgs = generate_messages(target, unit["source"], tgt.regenerate_mode)
            else:
                msgs = fix_messages(target, original, err)
            out = self.complete(msgs, max_tokens or self.max_tokens, 0.0 if n == 1 else 0.8, seed=n)
            prompt_tokens.append(out["prompt_tokens"])
            return extract_code(out["text"])

        r = fix_loop(code, error, lambda c: self.judge(c, target, unit), propose, attempts).as_dict()
        return {"target": target, **r, "prompt_tokens": prompt_tokens}

    # ------------------------------------------------------------ get_docs

    def get_docs(self, query: str, k: int = 5) -> dict:
        if self.docs is None:
            raise ServeError("no docs index: start the server with --docs UNITS_OR_INDEX")
        if not 1 <= k <= 50:
            raise ServeError("k must be between 1 and 50")
        return {"query": query, "results": self.docs.search(query, k)}


def build_server(tb: Toolbox, name: str = "codehone"):
    """The MCPServer with the four tools bound to `tb`; blocking work runs in a worker thread."""
    import anyio
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer(name, instructions=(
        f"A specialist code model for {', '.join(TARGETS)} and its judge. `generate` writes code, `check` judges it, "
        "`suggest_fix` returns only fixes that passed the judge, `get_docs` searches mined doc comments. "
        "Calls are stateless."))

    async def run(fn, *a):
        try:
            return await anyio.to_thread.run_sync(fn, *a)
        except ServeError as e:  # the caller's mistake: its message, not "Error executing tool"
            raise ToolError(str(e)) from None

    @server.tool()
    async def generate(prompt: str, target: str | None = None, mode: str | None = None,
                       max_tokens: int | None = None, temperature: float = 0.0) -> dict[str, Any]:
        """Generate code for a target from a request (a function to translate, or a signature + doc to
        implement, where the target has those modes). Returns the text, the extracted code and token counts."""
        return await run(tb.generate, prompt, target, mode, max_tokens, temperature)

    @server.tool()
    async def check(code: str, target: str | None = None, unit_id: str | None = None) -> dict[str, Any]:
        """Run the target's judge on code: ok, the stage reached, diagnostics [{code, message, line, level}]
        and counts. A judge that compares against a mined unit needs it (unit_id, or found by the
        function's name in the code)."""
        return await run(tb.check, code, target, unit_id)

    @server.tool()
    async def suggest_fix(code: str, target: str | None = None, error: str | None = None, attempts: int = 3,
                          unit_id: str | None = None) -> dict[str, Any]:
        """Ask the model for a fix of code (and its compiler error), judge every proposal and return only one
        that passed (verified: true); otherwise say none was found after N attempts, with the diagnostics."""
        return await run(tb.suggest_fix, code, target, error, attempts, unit_id)

    @server.tool()
    async def get_docs(query: str, k: int = 5) -> dict[str, Any]:
        """Search the mined doc comments (name, signature, doc) with BM25; the k best matches."""
        return await run(tb.get_docs, query, k)

    return server
