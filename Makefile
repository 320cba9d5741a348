# Two commands do all the set-up on a fresh machine:
#   make demo   installs everything, then runs the whole loop on the bundled corpus (quickstart)
#   make test   installs everything, then runs the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export ZIG_GLOBAL_CACHE_DIR ?= $(CURDIR)/.cache/zig

.PHONY: install system-deps demo test lint bench corpus clean

install: $(VENV)/.installed system-deps

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch is pinned: on these machines 2.13.0 is a local CPU wheel; unpinned pulls GBs of CUDA.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,scale,gguf]"
	touch $@

# bubblewrap gives the sandbox real isolation (namespaces, a filesystem without host files).
# Without it the sandbox falls back to rlimits and says so in every verdict.
system-deps:
	@if ! command -v bwrap >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && apt-get install -y -qq bubblewrap) >/dev/null 2>&1 \
	      || echo "warning: could not install bubblewrap; sandbox falls back to rlimits"; \
	  else echo "note: bubblewrap not installed; sandbox falls back to rlimits"; fi; \
	fi

# The whole loop on the bundled corpus (mine, build, train, eval, one iterate round) in about
# 15 minutes on 2 cores, ending in out/quickstart/report.html. MINUTES=30 for a longer run.
MINUTES ?= 15
demo: install
	$(BIN)/codehone quickstart -o out/quickstart --minutes $(MINUTES)

test: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest -n 2 --durations=10

lint: install
	$(BIN)/ruff check src tests benchmarks

bench: install
	$(BIN)/python benchmarks/mine_yield.py

# Optional, not part of test or demo: fetch the C corpus (recipes/corpus-c.txt) from Debian source
# packages. As root on Debian it first adds a deb-src entry mirroring debian.sources (only if apt
# has none) and runs apt-get update; `codehone corpus fetch` itself needs no root.
DEBSRC := /etc/apt/sources.list.d/debian-src.sources
corpus: install
	@if [ "$$(id -u)" = 0 ] && [ -f /etc/apt/sources.list.d/debian.sources ] \
	    && ! grep -rqs '^Types:.*deb-src\|^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/; then \
	  echo "adding $(DEBSRC)"; \
	  awk 'BEGIN{RS=""; FS="\n"} {for (i = 1; i <= NF; i++) if ($$i !~ /^(Types|Signed-By):/) print ($$i); \
	    print "Types: deb-src"; print "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"; print ""}' \
	    /etc/apt/sources.list.d/debian.sources > $(DEBSRC); \
	  apt-get update -qq; \
	fi
	$(BIN)/codehone corpus fetch

clean:
	rm -rf out .cache .pytest_cache
