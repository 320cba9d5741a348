"""`codehone chat`: talk to the model in a terminal, with the target's judge one command away.

Unlike the MCP tools, a chat session keeps its history (that is what a chat is
for), rendered through the model's own chat template every turn. When the
history no longer fits the model's context with room for a reply, the oldest
exchanges are dropped, and the session says so, rather than failing or
silently cutting a message in half.

Commands: /check [UNIT_ID] judges the last code block the model wrote,
/reset clears the history, /exit (or Ctrl-D) leaves.
"""

from __future__ import annotations

from collections.abc import Callable

from . import ServeError
from .backends import Completion, GenParams, complete, render_chat
from .mcp_server import Toolbox
from .prompts import _system, extract_code

HELP = "commands: /check [UNIT_ID] judge the last code block · /reset clear the history · /exit leave"


class ChatSession:
    def __init__(self, tb: Toolbox, max_tokens: int = 256, temperature: float = 0.0, system: str | None = None):
        self.tb = tb
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.system = system if system is not None else _system(tb.target)
        self.history: list[dict] = []
        self.dropped = 0

    def messages(self) -> list[dict]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + self.history

    def _fit(self) -> None:
        """Drop the oldest exchanges until the prompt leaves room for a reply in the context."""
        be = self.tb.backend
        ctx = be.context_length
        if not ctx:
            return
        while len(self.history) > 1 and len(be.encode(render_chat(be.tokenizer, self.messages()))) + \
                self.max_tokens > ctx:
            self.history = self.history[2:] if len(self.history) > 2 else self.history[1:]
            self.dropped += 1

    def send(self, text: str, on_text: Callable[[str], None] | None = None) -> Completion:
        self.history.append({"role": "user", "content": text})
        before = self.dropped
        self._fit()
        be = self.tb.backend
        try:
            c = complete(be, render_chat(be.tokenizer, self.messages()),
                         GenParams(self.max_tokens, self.temperature, 0.95 if self.temperature else 1.0), on_text)
        except ServeError:
            self.history.pop()
            raise
        self.history.append({"role": "assistant", "content": c.text})
        c.dropped_turns = self.dropped - before
        return c

    def last_code(self) -> str | None:
        """The last reply's first code block (or the whole reply); None before any reply."""
        for m in reversed(self.history):
            if m["role"] == "assistant":
                return extract_code(m["content"])
        return None

    def check(self, unit_id: str | None = None) -> dict:
        code = self.last_code()
        if code is None:
            raise ServeError("no code yet: the model has not answered")
        if not code:
            raise ServeError("the last reply holds no code to check")
        return self.tb.check(code, unit_id=unit_id)

    def reset(self) -> None:
        self.history.clear()


def format_verdict(r: dict) -> list[str]:
    head = f"{'PASS' if r['ok'] else 'FAIL'} · {r['target']} · stage {r['stage']}"
    lines = [head]
    for d in r["diagnostics"][:10]:
        where = f"line {d['line']}: " if d.get("line") else ""
        lines.append(f"  {d['level']} [{d['code'] or '-'}] {where}{d['message']}")
    return lines


def repl(session: ChatSession, read: Callable[[str], str], write: Callable[[str], None],
         note: Callable[[str], None]) -> None:
    """The interactive loop; `read` raises EOFError at the end of input."""
    note(HELP)
    while True:
        try:
            line = read("> ")
        except (EOFError, KeyboardInterrupt):
            write("\n")
            return
        cmd = line.strip()
        if not cmd:
            continue
        if cmd in ("/exit", "/quit"):
            return
        if cmd == "/reset":
            session.reset()
            note("history cleared")
            continue
        if cmd == "/help":
            note(HELP)
            continue
        try:
            if cmd.split()[0] == "/check":
                parts = cmd.split()
                for out in format_verdict(session.check(parts[1] if len(parts) > 1 else None)):
                    note(out)
                continue
            if cmd.startswith("/"):
                note(f"unknown command {cmd.split()[0]}; {HELP}")
                continue
            c = session.send(line, write)
            write("\n")
            extra = f" · {c.dropped_turns} old exchange(s) dropped to fit the context" if c.dropped_turns else ""
            note(f"[{c.completion_tokens} tokens · {c.finish}{extra}]")
        except ServeError as e:
            note(f"error: {e}")
