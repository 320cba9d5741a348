"""The resume journal: which tasks of a step are done, kept as an append-only JSONL file.

Why here, with the executors: every resumable step has the same shape. A task has a key (a
content hash of its inputs); when its outputs are durable, one journal line with that key is
appended and fsync'ed; a rerun skips the keys already there. A kill mid-append leaves at most
a partial last line, which is cut on open. The step writes its own outputs *before* it
records the task, so a task in the journal always has its outputs on disk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..records import JsonlAppender, read_jsonl, repair_tail


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        repair_tail(self.path)
        self.done: dict[str, dict] = {}
        if self.path.exists():
            for entry in read_jsonl(self.path, errors=[]):
                if isinstance(entry.get("key"), str):
                    self.done[entry["key"]] = entry
        self._app: JsonlAppender | None = None

    def pending(self, tasks: Iterable[Any], key: Callable[[Any], str]) -> list[Any]:
        """The tasks whose key is not in the journal yet, in their order."""
        return [t for t in tasks if key(t) not in self.done]

    def record(self, entry: dict) -> None:
        """Make `entry` (with its `key`) durable: the task it names is done."""
        if self._app is None:
            self._app = JsonlAppender(self.path)
        self._app.write_many([entry])
        self.done[entry["key"]] = entry

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None
