"""A corpus of real C libraries from Debian source packages, fetched once into a cache.

A corpus list (recipes/corpus-c.txt) names one Debian source package a line, each optionally
followed by mine's list-file flags (`-I DIR`, `-D MACRO`, relative to the unpacked tree):

    zlib
    lua5.4 -I src -D LUA_USE_POSIX --touch src/lua5.4-deb-multiarch.h
    pcre2 -I src --copy src/config.h.generic=src/config.h

Two corpus-only steps stand in for the `./configure` a real build would run, and are applied to
the unpacked tree (again on every fetch, only where the target file is missing): `--copy FROM=TO`
copies a shipped template to the header a build would generate, `--touch PATH` creates an empty
one. They are left out of sources.txt, which mine reads.
`fetch` runs `apt-get source --download-only NAME` in a scratch folder and unpacks the .dsc with
`dpkg-source -x --no-check` into CACHE/NAME; a package whose CACHE/NAME.json marker exists is
skipped, so an interrupted fetch resumes. It then writes CACHE/sources.txt, a `codehone mine -l`
list file naming every unpacked tree with its flags. apt-get source needs no root, only a
`deb-src` entry in apt's sources (see NO_DEB_SRC).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .sources import default_cache, read_list_file

C_SUFFIXES = (".c", ".h")
DEFAULT_LIST = Path(__file__).resolve().parents[2] / "recipes" / "corpus-c.txt"
_NAME = re.compile(r"^[a-z0-9][a-z0-9.+-]+$")  # Debian source package name policy

NO_DEB_SRC = (
    "apt has no deb-src entry, so `apt-get source` cannot fetch the corpus. As root, add to "
    "/etc/apt/sources.list.d/debian-src.sources the stanza `Types: deb-src` with the same URIs:, Suites: and "
    "Components: as /etc/apt/sources.list.d/debian.sources and `Signed-By: /usr/share/keyrings/"
    "debian-archive-keyring.gpg`, then run `apt-get update` (or run `make corpus` as root, which does both)"
)


class CorpusError(RuntimeError):
    """The corpus cannot be fetched at all (not one package's problem); the message is one line."""


def default_corpus_cache() -> Path:
    return default_cache() / "corpus"


@dataclass
class Entry:
    """One line of a corpus list: a Debian source package and mine's flags for its tree."""

    package: str
    flags: list[str] = field(default_factory=list)
    prep: list[tuple[str, str]] = field(default_factory=list)  # ("copy", "FROM=TO") | ("touch", "PATH")


@dataclass
class Result:
    package: str
    status: str  # fetched | cached | failed
    version: str = ""
    files: int = 0  # .c and .h files in the unpacked tree
    path: str = ""
    error: str = ""


def parse_list(path: Path) -> list[Entry]:
    """The corpus list file → entries; raises CorpusError on a bad package name or flag."""
    from .sources import SourceError

    try:
        lines = read_list_file(Path(path))
    except SourceError as e:
        raise CorpusError(str(e)) from None
    out: list[Entry] = []
    seen: set[str] = set()
    for n, line in enumerate(lines, 1):
        parts = line.split()
        name, rest = parts[0], parts[1:]
        if not _NAME.match(name):
            raise CorpusError(f"{path}: entry {n}: {name!r} is not a Debian source package name")
        flags: list[str] = []
        prep: list[tuple[str, str]] = []
        i = 0
        while i < len(rest):
            tok = rest[i]
            if tok in ("-I", "-D", "--copy", "--touch") and i + 1 < len(rest):
                val = rest[i + 1]
                i += 2
            elif tok.startswith(("-I", "-D")) and len(tok) > 2:
                tok, val = tok[:2], tok[2:]
                i += 1
            else:
                raise CorpusError(f"{path}: {name}: unexpected token {tok!r} "
                                  "(use -I DIR, -D MACRO, --copy FROM=TO or --touch PATH)")
            if tok in ("-I", "-D"):
                flags += [tok, val]
                continue
            paths = val.split("=", 1) if tok == "--copy" else [val]
            if (tok == "--copy" and len(paths) != 2) or any(
                    not p or Path(p).is_absolute() or ".." in Path(p).parts for p in paths):
                raise CorpusError(f"{path}: {name}: {tok} {val!r}: give relative paths inside the tree"
                                  + (" as FROM=TO" if tok == "--copy" else ""))
            prep.append((tok[2:], val))
        if name in seen:
            raise CorpusError(f"{path}: {name} is listed twice")
        seen.add(name)
        out.append(Entry(name, flags, prep))
    return out


def _count_c(root: Path) -> int:
    n = 0
    for _dirpath, _dirs, files in os.walk(root):
        n += sum(1 for f in files if f.endswith(C_SUFFIXES))
    return n


def _marker(cache: Path, package: str) -> Path:
    return cache / f"{package}.json"


def cached(cache: Path, package: str) -> dict | None:
    """The marker of a package already unpacked in the cache, or None (absent, partial or corrupt)."""
    m = _marker(cache, package)
    try:
        info = json.loads(m.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not (cache / package).is_dir():
        return None
    return info


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("W:")]
    return lines[-1] if lines else "unknown error"


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"})
    except FileNotFoundError:
        raise CorpusError(f"{cmd[0]} not found: fetching the corpus needs Debian's apt-get and dpkg-source "
                          "(apt-get install dpkg-dev); elsewhere download the tarballs by hand and list the "
                          "unpacked folders in a `codehone mine -l` file") from None


def prepare(entry: Entry, root: Path) -> None:
    """Apply the entry's --copy / --touch steps to its unpacked tree, where the target is missing."""
    for op, val in entry.prep:
        src, _, dst = val.partition("=") if op == "copy" else ("", "", val)
        target = root / dst
        if target.exists():
            continue
        if op == "copy" and not (root / src).is_file():
            continue  # a template this version does not ship: mine reports the missing header
        target.parent.mkdir(parents=True, exist_ok=True)
        if op == "copy":
            shutil.copyfile(root / src, target)
        else:
            target.touch()


def fetch_one(entry: Entry, cache: Path, timeout: float = 900) -> Result:
    """Download and unpack one package into CACHE/PACKAGE (skipped when its marker is present)."""
    info = cached(cache, entry.package)
    if info is not None:
        prepare(entry, cache / entry.package)
        return Result(entry.package, "cached", info.get("version", ""), int(info.get("files", 0)),
                      str(cache / entry.package))
    dest = cache / entry.package
    with tempfile.TemporaryDirectory(prefix=f".dl-{entry.package}-", dir=cache) as tmp:
        tmpd = Path(tmp)
        try:
            r = _run(["apt-get", "source", "--download-only", "-q", entry.package], tmpd, timeout)
        except subprocess.TimeoutExpired:
            return Result(entry.package, "failed", error=f"apt-get source timed out after {timeout:.0f}s")
        if r.returncode != 0:
            err = r.stderr + r.stdout
            if "deb-src" in err and "sources.list" in err:
                raise CorpusError(NO_DEB_SRC)
            return Result(entry.package, "failed", error=_last_line(err))
        dscs = sorted(tmpd.glob("*.dsc"))
        if not dscs:
            return Result(entry.package, "failed", error="apt-get source downloaded no .dsc file")
        dsc = dscs[-1]
        m = re.search(r"^Version:\s*(\S+)", dsc.read_text(encoding="utf-8", errors="replace"), re.M)
        version = m.group(1) if m else ""
        partial = cache / f"{entry.package}.partial"
        if partial.exists():
            shutil.rmtree(partial)
        try:
            r = _run(["dpkg-source", "--no-check", "-x", dsc.name, str(partial)], tmpd, timeout)
        except subprocess.TimeoutExpired:
            shutil.rmtree(partial, ignore_errors=True)
            return Result(entry.package, "failed", version, error=f"dpkg-source timed out after {timeout:.0f}s")
        if r.returncode != 0 or not partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
            return Result(entry.package, "failed", version, error="dpkg-source: " + _last_line(r.stderr + r.stdout))
    if dest.exists():  # a tree without its marker: an earlier run died between the two steps
        shutil.rmtree(dest)
    partial.rename(dest)
    prepare(entry, dest)
    files = _count_c(dest)
    tmp_marker = _marker(cache, entry.package).with_suffix(".json.tmp")
    tmp_marker.write_text(json.dumps({"package": entry.package, "version": version, "files": files}) + "\n",
                          encoding="utf-8")
    tmp_marker.replace(_marker(cache, entry.package))
    return Result(entry.package, "fetched", version, files, str(dest))


def write_sources(entries: list[Entry], results: list[Result], cache: Path) -> Path:
    """CACHE/sources.txt: a mine list file naming each unpacked tree with its flags (failed ones left out)."""
    ok = {r.package for r in results if r.status != "failed"}
    lines = ["# written by `codehone corpus fetch`; mine it with: codehone mine -l " + str(cache / "sources.txt")]
    for e in entries:
        if e.package in ok:
            lines.append(" ".join([e.package, *e.flags]))
    path = cache / "sources.txt"
    tmp = path.with_suffix(".txt.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def fetch(entries: list[Entry], cache: Path | None = None, on_result: Callable[[int, Result], None] | None = None,
          timeout: float = 900) -> tuple[list[Result], Path]:
    """Fetch every entry (resumable), then write CACHE/sources.txt. Raises CorpusError when apt cannot work."""
    cache = Path(cache or default_corpus_cache())
    cache.mkdir(parents=True, exist_ok=True)
    results = []
    for i, e in enumerate(entries):
        res = fetch_one(e, cache, timeout)
        results.append(res)
        if on_result:
            on_result(i, res)
    return results, write_sources(entries, results, cache)
