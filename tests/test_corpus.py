"""codehone corpus: the list file, the resumable fetch and the one-line error without deb-src (offline)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codehone.cli import app
from codehone.corpus import DEFAULT_LIST, CorpusError, Entry, cached, fetch, parse_list
from codehone.mine import collect_sources

# A fake apt-get: `source --download-only NAME` writes NAME_1.0-1.dsc; NOSRC=1 answers as apt does
# without a deb-src entry; a name starting with "missing" is not found. A log records every call.
FAKE_APT = """#!/bin/sh
echo "$@" >> "$FAKE_LOG"
if [ -n "$NOSRC" ]; then
  echo "Reading package lists..."
  echo "E: You must put some 'deb-src' URIs in your sources.list" >&2; exit 100
fi
for a; do name="$a"; done
case "$name" in missing*) echo "E: Unable to find a source package for $name" >&2; exit 100;; esac
printf 'Format: 3.0 (quilt)\\nSource: %s\\nVersion: 1.0-1\\n' "$name" > "${name}_1.0-1.dsc"
"""
# A fake dpkg-source: `--no-check -x DSC DEST` makes DEST with one C file and one header.
FAKE_DPKG = """#!/bin/sh
echo "dpkg-source $@" >> "$FAKE_LOG"
dest="$4"; mkdir -p "$dest/src"; echo 'int f(int x){return x+1;}' > "$dest/src/a.c"; echo '' > "$dest/src/a.h"
"""


@pytest.fixture
def fake_apt(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("apt-get", FAKE_APT), ("dpkg-source", FAKE_DPKG)):
        p = bin_dir / name
        p.write_text(text)
        p.chmod(0o755)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.delenv("NOSRC", raising=False)
    return log


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_parse_list(tmp_path):
    lf = tmp_path / "c.txt"
    lf.write_text("# comment\n\nzlib\nlua5.4 -I src -D LUA_USE_POSIX  # trailing\nexpat -Ilib -DX=1\n")
    assert parse_list(lf) == [Entry("zlib"), Entry("lua5.4", ["-I", "src", "-D", "LUA_USE_POSIX"]),
                              Entry("expat", ["-I", "lib", "-D", "X=1"])]


@pytest.mark.parametrize("text, what", [("Zlib\n", "not a Debian source package name"),
                                        ("zlib -X y\n", "unexpected token"),
                                        ("zlib -I\n", "unexpected token"),
                                        ("zlib\nzlib\n", "listed twice"),
                                        ("zlib --copy a.h\n", "FROM=TO"),
                                        ("zlib --touch ../x.h\n", "relative paths inside the tree")])
def test_parse_list_rejects(tmp_path, text, what):
    lf = tmp_path / "c.txt"
    lf.write_text(text)
    with pytest.raises(CorpusError, match=what):
        parse_list(lf)


def test_prep_steps_fill_missing_headers_only(tmp_path, fake_apt):
    lf = tmp_path / "c.txt"
    lf.write_text("zlib -I src --copy src/a.h=gen/conf.h --touch src/empty.h --copy nope.in=x.h\n")
    entries = parse_list(lf)
    assert entries[0].flags == ["-I", "src"]
    cache = tmp_path / "cache"
    _, sources = fetch(entries, cache)
    tree = cache / "zlib"
    assert (tree / "gen" / "conf.h").is_file() and (tree / "src" / "empty.h").read_text() == ""
    assert not (tree / "x.h").exists()  # no template shipped: left for mine to report
    assert sources.read_text().splitlines()[-1] == "zlib -I src"  # mine never sees the prep steps
    (tree / "src" / "empty.h").write_text("kept")
    (tree / "gen" / "conf.h").unlink()
    fetch(entries, cache)  # cached: the steps run again, only where the file is missing
    assert (tree / "gen" / "conf.h").is_file() and (tree / "src" / "empty.h").read_text() == "kept"


def test_bundled_list_parses():
    names = [e.package for e in parse_list(DEFAULT_LIST)]
    assert {"zlib", "cjson", "lua5.4", "sqlite3"} <= set(names)


def test_fetch_resumes_and_writes_mine_list(tmp_path, fake_apt):
    cache = tmp_path / "cache"
    entries = [Entry("zlib"), Entry("lua5.4", ["-I", "src"])]
    seen = []
    results, sources = fetch(entries, cache, on_result=lambda i, r: seen.append((i, r.status)))
    assert seen == [(0, "fetched"), (1, "fetched")]
    assert [(r.version, r.files) for r in results] == [("1.0-1", 2), ("1.0-1", 2)]
    assert (cache / "zlib" / "src" / "a.c").is_file() and cached(cache, "zlib")["version"] == "1.0-1"
    assert not list(cache.glob(".dl-*")) and not list(cache.glob("*.partial"))
    srcs = collect_sources([], [sources])
    assert [s.root for s in srcs] == [(cache / "zlib").resolve(), (cache / "lua5.4").resolve()]
    assert srcs[1].include_dirs == [str((cache / "lua5.4" / "src").resolve())]
    n = len(_calls(fake_apt))

    # Second run: both are skipped without calling apt-get; a new entry is fetched.
    results, _ = fetch([*entries, Entry("jq")], cache)
    assert [r.status for r in results] == ["cached", "cached", "fetched"]
    new = _calls(fake_apt)[n:]
    assert len(new) == 2 and "jq" in new[0]

    # A tree whose marker is missing (the run died while unpacking) is fetched again.
    (cache / "jq.json").unlink()
    results, _ = fetch([Entry("jq")], cache)
    assert results[0].status == "fetched"


def test_fetch_one_failure_does_not_stop_the_rest(tmp_path, fake_apt):
    cache = tmp_path / "cache"
    results, sources = fetch([Entry("missingpkg"), Entry("zlib")], cache)
    assert results[0].status == "failed" and "Unable to find a source package" in results[0].error
    assert results[1].status == "fetched"
    assert "missingpkg" not in sources.read_text() and "zlib" in sources.read_text()


def test_no_deb_src_is_one_line(tmp_path, fake_apt, monkeypatch):
    monkeypatch.setenv("NOSRC", "1")
    with pytest.raises(CorpusError) as ei:
        fetch([Entry("zlib")], tmp_path / "cache")
    msg = str(ei.value)
    assert "\n" not in msg and "Types: deb-src" in msg and "debian-archive-keyring.gpg" in msg
    assert "apt-get update" in msg

    lf = tmp_path / "c.txt"
    lf.write_text("zlib\n")
    r = CliRunner().invoke(app, ["corpus", "fetch", "-l", str(lf), "--cache", str(tmp_path / "c2")])
    assert r.exit_code == 2
    assert "deb-src" in r.output and "Traceback" not in r.output


def test_cli_fetch_table(tmp_path, fake_apt):
    lf = tmp_path / "c.txt"
    lf.write_text("zlib\nmissingpkg\n")
    r = CliRunner().invoke(app, ["corpus", "fetch", "-l", str(lf), "--cache", str(tmp_path / "c")])
    assert r.exit_code == 1  # one package failed
    assert "zlib" in r.output and "fetched" in r.output and "failed" in r.output
    assert json.loads((tmp_path / "c" / "zlib.json").read_text())["files"] == 2


def test_no_apt_get(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CorpusError, match="apt-get not found"):
        fetch([Entry("zlib")], tmp_path / "cache")
