"""Where code comes from: local folders, git URLs and list files; safe walking; provenance.

Walking never follows a symlink out of the source tree and cannot loop: files
are identified by (device, inode), directory symlinks are not descended, and
file symlinks are kept only when they resolve inside the tree. Special files
(named pipes, devices, sockets, symlinks to them) are skipped with a reason and
never opened; every read is bounded by the size limit (a file that grows while
it is read is cut at the limit and skipped), not by what stat said.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Folder names that hold someone else's code or build output.
SKIP_DIRS = {
    ".git", ".hg", ".svn", "node_modules", "vendor", "vendored", "third_party", "third-party", "thirdparty",
    "3rdparty", "external", "externals", "deps", "_deps", "build", "builds", "out", "dist", "target",
    "cmake-build-debug", "cmake-build-release", "__pycache__", ".tox", ".venv", "venv", "autom4te.cache",
    "debian", ".pc", "site-packages", "dist-packages",
}
# Skipped by default; --include-tests etc. turn each group back on.
TEST_DIRS = {"test", "tests", "testing", "testsuite", "t", "unittest", "unittests", "check", "fuzz", "fuzzing"}
BENCH_DIRS = {"bench", "benches", "benchmark", "benchmarks", "perf"}
EXAMPLE_DIRS = {"example", "examples", "demo", "demos", "sample", "samples", "contrib", "doc", "docs"}

DEFAULT_MAX_BYTES = 1_000_000


@dataclass
class Source:
    """One repository to mine, with its provenance."""

    root: Path
    name: str
    url: str | None = None
    commit: str | None = None
    license: str | None = None
    include_dirs: list[str] = field(default_factory=list)
    defines: list[str] = field(default_factory=list)


class SourceError(ValueError):
    """A source that cannot be used; the message is one line for the user."""


_GIT_URL = re.compile(r"^(https?://|git@|ssh://|git://|file://).+|.+\.git$")


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))) / "codehone"


def is_git_url(s: str) -> bool:
    return bool(_GIT_URL.match(s)) and not Path(s).exists()


def git_commit(root: Path) -> str | None:
    try:
        r = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return None
    top = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    # Only trust the commit if root is the repository itself, not a folder inside an unrelated checkout.
    if top and Path(top).resolve() != root.resolve():
        return None
    return r.stdout.strip() or None


def clone(url: str, cache: Path | None = None, timeout: float = 600) -> Path:
    """Shallow-clone a git URL into the cache (reused on the next run)."""
    cache = (cache or default_cache()) / "git"
    cache.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", url.rstrip("/").split("/")[-1].removesuffix(".git"))[:60]
    dest = cache / f"{slug}-{hashlib.sha256(url.encode()).hexdigest()[:10]}"
    if (dest / ".git").exists():
        return dest
    tmp = dest.with_name(dest.name + ".partial")
    if tmp.exists():
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    try:
        r = subprocess.run(
            ["git", "clone", "--depth", "1", "--quiet", url, str(tmp)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except subprocess.TimeoutExpired:
        raise SourceError(f"git clone of {url} timed out after {timeout:.0f}s") from None
    if r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise SourceError(f"cannot clone {url}: {msg}")
    tmp.rename(dest)
    return dest


def read_list_file(path: Path) -> list[str]:
    """A list of sources, one per line; blank lines and `#` comments are ignored."""
    if not path.is_file():
        raise SourceError(f"list file not found: {path}")
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        # A comment is a line starting with #, or ` #...` after an entry (URLs may hold a bare #).
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            out.append(line)
    return out


def resolve(spec: str, cache: Path | None = None, base: Path | None = None) -> Source:
    """A user-given source string → a Source with provenance. Raises SourceError."""
    if is_git_url(spec):
        root = clone(spec, cache)
        name = spec.rstrip("/").split("/")[-1].removesuffix(".git")
        return Source(root=root, name=name, url=spec, commit=git_commit(root), license=detect_license(root))
    p = Path(spec)
    if base is not None and not p.is_absolute():
        p = base / p
    if not p.exists():
        raise SourceError(f"source not found: {spec}")
    if not p.is_dir():
        raise SourceError(f"source is not a folder: {spec}")
    root = p.resolve()
    return Source(root=root, name=root.name, url=None, commit=git_commit(root), license=detect_license(root))


# ---------------------------------------------------------------- licenses

_LICENSE_FILES = ("LICENSE", "LICENCE", "COPYING", "COPYRIGHT", "LICENSE-MIT", "LICENSE-APACHE", "UNLICENSE", "README")

# Distinctive phrases of common licenses → SPDX id. Order matters: the more specific first.
_LICENSE_PHRASES: list[tuple[str, str]] = [
    ("GNU AFFERO GENERAL PUBLIC LICENSE", "AGPL-3.0"),
    ("GNU LESSER GENERAL PUBLIC LICENSE", "LGPL"),
    ("GNU LIBRARY GENERAL PUBLIC LICENSE", "LGPL-2.0"),
    ("GNU GENERAL PUBLIC LICENSE", "GPL"),
    ("Apache License", "Apache-2.0"),
    ("Mozilla Public License", "MPL-2.0"),
    ("This is free and unencumbered software released into the public domain", "Unlicense"),
    ("Permission is hereby granted, free of charge", "MIT"),
    ("Permission to use, copy, modify, and/or distribute this software for any", "ISC"),
    ("Permission to use, copy, modify, and distribute this software for any", "ISC"),
    ("This software is provided 'as-is', without any express or implied", "Zlib"),
    ("Redistribution and use in source and binary forms", "BSD"),
    ("The author disclaims copyright to this source code", "blessing"),
    ("public domain", "Public-Domain"),
]


def _spdx_from_text(text: str) -> str | None:
    m = re.search(r"SPDX-License-Identifier:\s*([A-Za-z0-9.+\-() ]+)", text)
    if m:
        return m.group(1).strip()
    low = " ".join(text.split()).lower()
    for phrase, spdx in _LICENSE_PHRASES:
        if phrase.lower() in low:
            if spdx == "GPL":
                v = re.search(r"version (\d)", low)
                return f"GPL-{v.group(1)}.0" if v else "GPL"
            if spdx == "LGPL":
                v = re.search(r"version (\d(?:\.\d)?)", low)
                return f"LGPL-{v.group(1)}" if v else "LGPL"
            if spdx == "BSD":
                return "BSD-3-Clause" if "neither the name" in low or "endorse or promote" in low else "BSD-2-Clause"
            return spdx
    return None


def detect_license(root: Path) -> str | None:
    """An SPDX id when the repository's license file is recognisable; None otherwise."""
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return None
    for stem in _LICENSE_FILES:
        for entry in entries:
            if entry.upper().startswith(stem) and (root / entry).is_file():
                try:
                    text = (root / entry).read_text(encoding="utf-8", errors="replace")[:20000]
                except OSError:
                    continue
                spdx = _spdx_from_text(text)
                if spdx:
                    return spdx
    return None


# ---------------------------------------------------------------- walking


@dataclass
class WalkOptions:
    extensions: tuple[str, ...] | None = None  # None: C sources (`mine` sets its target's)
    max_bytes: int = DEFAULT_MAX_BYTES
    include_tests: bool = False
    include_benches: bool = False
    include_examples: bool = False
    include_vendor: bool = False


@dataclass
class WalkStats:
    seen: int = 0
    skipped: Counter = field(default_factory=Counter)


def _excluded_dir(name: str, opts: WalkOptions) -> bool:
    low = name.lower()
    if low.startswith(".") and low not in (".",):
        return True
    if not opts.include_vendor and low in SKIP_DIRS:
        return True
    if not opts.include_tests and low in TEST_DIRS:
        return True
    if not opts.include_benches and low in BENCH_DIRS:
        return True
    return not opts.include_examples and low in EXAMPLE_DIRS


def _excluded_file(name: str, opts: WalkOptions) -> str | None:
    low = name.lower()
    if not opts.include_tests and (
        re.match(r"^(test_|tests?_)", low) or re.search(r"(_test|_tests|\.test)\.[a-z]+$", low)
    ):
        return "test_file"
    if not opts.include_benches and re.match(r"^bench", low):
        return "bench_file"
    return None


def looks_binary(head: bytes) -> bool:
    """Binary if it holds NUL bytes or is mostly non-text, like git's heuristic."""
    if b"\x00" in head:
        return True
    if not head:
        return False
    text_chars = bytes(range(32, 127)) + b"\n\r\t\f\b\x1b"
    nontext = sum(1 for b in head if b not in text_chars and b < 128)
    return nontext / len(head) > 0.3


def walk(root: Path, opts: WalkOptions, stats: WalkStats) -> Iterator[Path]:
    """Yield source files under root, in a stable (sorted) order, safely.

    Skips, counting each reason in stats: excluded folders, symlinks that leave
    the tree or loop, other extensions, oversized and binary files.
    """
    root = root.resolve()
    seen_inodes: set[tuple[int, int]] = set()

    def visit(d: Path) -> Iterator[Path]:
        try:
            st = d.stat()
        except OSError:
            stats.skipped["unreadable"] += 1
            return
        key = (st.st_dev, st.st_ino)
        if key in seen_inodes:
            stats.skipped["symlink_loop"] += 1
            return
        seen_inodes.add(key)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            stats.skipped["unreadable"] += 1
            return
        for e in entries:
            p = Path(e.path)
            try:
                if e.is_symlink():
                    try:
                        target = p.resolve(strict=True)
                    except (OSError, RuntimeError):
                        stats.skipped["broken_or_looping_symlink"] += 1
                        continue
                    if not target.is_relative_to(root):
                        stats.skipped["symlink_outside_tree"] += 1
                        continue
                    if target.is_dir():
                        # Directory symlinks are never descended: the target is walked on its own
                        # if it is inside the tree, so following would only duplicate or loop.
                        stats.skipped["symlink_dir"] += 1
                        continue
                if e.is_dir(follow_symlinks=False):
                    if _excluded_dir(e.name, opts):
                        stats.skipped[f"excluded_dir:{e.name.lower()}"] += 1
                        continue
                    yield from visit(p)
                    continue
                if not e.name.endswith(opts.extensions or (".c", ".h")):
                    continue
                stats.seen += 1
                why = _excluded_file(e.name, opts)
                if why:
                    stats.skipped[why] += 1
                    continue
                st = p.stat()
                if not stat.S_ISREG(st.st_mode):  # a fifo, device or socket (or a link to one): never opened
                    stats.skipped["special_file"] += 1
                    continue
                if st.st_size > opts.max_bytes:
                    stats.skipped["too_large"] += 1
                    continue
                if st.st_size == 0:
                    stats.skipped["empty_file"] += 1
                    continue
                head = read_bounded(p, 8192, exact=False)
                if head is None:
                    stats.skipped["special_file"] += 1
                    continue
                if looks_binary(head):
                    stats.skipped["binary"] += 1
                    continue
                yield p
            except OSError:
                stats.skipped["unreadable"] += 1

    yield from visit(root)


class FileTooLarge(OSError):
    """A file holds more than the size limit (it may have grown since it was walked)."""


# Hard cap on any source read when the caller gives none: a file that grows without end cannot fill memory.
READ_CAP = 64 << 20


def read_bounded(path: Path, limit: int, exact: bool = True) -> bytes | None:
    """At most `limit` bytes of a regular file, opened without blocking (a fifo never hangs us).

    None when `path` is not a regular file. With `exact`, a file holding more than `limit`
    bytes raises FileTooLarge instead of being returned cut."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, left = [], limit + (1 if exact else 0)
        while left > 0:
            b = os.read(fd, min(left, 1 << 20))
            if not b:
                break
            chunks.append(b)
            left -= len(b)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if exact and len(data) > limit:
        raise FileTooLarge(f"more than {limit} bytes (the size limit; it may be growing)")
    return data


def read_text(path: Path, limit: int = READ_CAP) -> tuple[str, bool]:
    """Decode a file as UTF-8, replacing bad bytes. Returns (text, had_bad_bytes).

    The read is bounded by `limit`; a special file or one over the limit raises OSError."""
    data = read_bounded(path, limit)
    if data is None:
        raise OSError(f"{path}: not a regular file")
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace"), True


def header_dirs(root: Path, limit: int = 64) -> list[Path]:
    """Folders of the repository that hold headers (include/, src/, ...), nearest the root first."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d.lower() not in SKIP_DIRS and not d.startswith("."))
        if any(f.endswith((".h", ".hh", ".hpp")) for f in filenames):
            found.append(Path(dirpath))
        if len(found) >= limit:
            break
    found.sort(key=lambda p: (len(p.relative_to(root).parts), str(p)))
    inc = [p for p in found if p.name == "include"]
    return inc + [p for p in found if p.name != "include"]
