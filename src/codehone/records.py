"""Record types shared by every stage, and the JSONL IO they travel in.

Every verb reads and writes plain files, so the records are plain dataclasses
that round-trip through JSON. Writers are atomic (temporary file, then rename)
or append-only with a trailing-line repair, so a killed run never leaves a
half-written record that a later stage would trust.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def content_hash(*parts: str | bytes, length: int = 16) -> str:
    """A stable hex id for content: sha256 over the parts, separated so ("ab","c") != ("a","bc")."""
    h = hashlib.sha256()
    for p in parts:
        b = p.encode("utf-8", "surrogatepass") if isinstance(p, str) else p
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:length]


@dataclass
class Unit:
    """One mined function: the source, its artifact (the reference answer) and where it came from."""

    id: str
    target: str
    language: str
    repo: str
    repo_url: str | None
    commit: str | None
    path: str
    line: int
    license: str | None
    name: str
    signature: str
    doc: str | None
    source: str
    artifact: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class FileResult:
    """What mining one file produced: units, reasons for the rest, and side files for the judge.

    `modules` maps a file name to its bytes; `mine` writes each once to OUT/modules/ (e.g. the
    reference build a judge splices candidates into), content-addressed by the target.
    """

    path: str
    functions: int = 0
    units: list[dict] = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)  # reason → functions lost
    examples: dict = field(default_factory=dict)  # reason → one example message
    file_reason: str | None = None
    non_utf8: bool = False
    modules: dict = field(default_factory=dict)  # file name → bytes, written to OUT/modules/
    seconds: float = 0.0
    compile_attempts: int = 0


@dataclass
class Diagnostic:
    """One structured message from a tool: never a count of strings in a stream."""

    message: str
    code: str | None = None
    line: int | None = None
    level: str = "error"


@dataclass
class Verdict:
    """The judge's answer for one candidate.

    `stage` is the last stage reached (parse, assemble, validate, compile, lint,
    test, execute); `ok` says whether every stage that ran passed.
    """

    ok: bool
    stage: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    isolation: str | None = None
    cached: bool = False
    # Added by `check`: graded metrics (idiomatic score, doc rate...) and the judge's context.
    scores: dict[str, float] = field(default_factory=dict)
    target: str | None = None
    toolchain: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        d = dict(d)
        d["diagnostics"] = [Diagnostic(**x) for x in d.get("diagnostics", [])]
        return cls(**d)


def to_dict(record: Any) -> dict[str, Any]:
    return dataclasses.asdict(record)


def dumps(record: Any) -> str:
    """One JSON line; keys sorted so identical records give identical bytes."""
    obj = record if isinstance(record, dict) else to_dict(record)
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


class JsonlError(ValueError):
    """A JSONL line that is not a JSON object; carries the file and line number."""


def read_jsonl(path: str | Path, errors: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Yield the objects in a JSONL file.

    A malformed line raises JsonlError with its line number, unless `errors` is
    given, in which case the problem is appended there and the line skipped.
    """
    path = Path(path)
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
            except ValueError as e:
                msg = f"{path}:{lineno}: malformed JSONL line ({e})"
                if errors is None:
                    raise JsonlError(msg) from None
                errors.append(msg)
                continue
            yield obj


def _file_mode() -> int:
    """The mode a plain open() would give: mkstemp's 0600 would hide outputs from other users.
    Read once at import: os.umask can only be read by setting it, which is not thread-safe."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


def write_jsonl_atomic(path: str | Path, records: Iterable[Any]) -> int:
    """Write all records to `path` via a temporary file and a rename. Returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for r in records:
                f.write(dumps(r) + "\n")
                n += 1
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def write_text_atomic(path: str | Path, text: str | bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8") if isinstance(text, str) else text)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def repair_tail(path: str | Path) -> int:
    """Cut a trailing partial line left by a kill mid-append. Returns bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as f:
        f.seek(max(0, size - 1))
        if f.read(1) == b"\n":
            return 0
        # Scan backwards for the last newline.
        pos = size
        chunk = 1 << 16
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            buf = f.read(pos - start)
            i = buf.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                f.truncate(keep)
                return size - keep
            pos = start
        f.truncate(0)
        return size


class JsonlAppender:
    """Append-only JSONL writer that makes each batch durable before returning.

    Used for long runs (mine, eval) where results arrive one at a time and a
    kill must lose at most the batch in flight, never corrupt earlier lines.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)
        self._f = self.path.open("a", encoding="utf-8")

    def write_many(self, records: Iterable[Any]) -> None:
        data = "".join(dumps(r) + "\n" for r in records)
        if data:
            self._f.write(data)
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
