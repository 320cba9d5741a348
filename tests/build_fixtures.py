"""Small hand-written units for the build tests: no corpus, no compiler needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from codehone.records import content_hash

ADLER = """static unsigned adler_update(unsigned adler, const unsigned char *buf, size_t len)
{
    unsigned sum2 = (adler >> 16) & 0xffff;
    adler &= 0xffff;
    while (len--) {
        adler += *buf++;
        if (adler >= BASE) adler -= BASE;
        sum2 += adler;
        if (sum2 >= BASE) sum2 -= BASE;
    }
    return adler | (sum2 << 16);
}"""

# The same function with every identifier renamed and one line changed.
ADLER_PLANTED = """static unsigned checksum_step(unsigned a, const unsigned char *p, size_t n)
{
    unsigned s2 = (a >> 16) & 0xffff;
    a &= 0xffff;
    while (n--) {
        a += *p++;
        if (a >= BASE) a -= BASE;
        s2 += a + 1;
        if (s2 >= BASE) s2 -= BASE;
    }
    return a | (s2 << 16);
}"""

# max_int with one operator flipped: textually a near-duplicate under any shingling (operators are
# punctuation, and even with them 26 of 31 shingles are shared), so it is *expected* to cluster.
MIN_INT = (
    "int min_int(const int *a, int n)\n{\n    int m = a[0];\n    for (int i = 1; i < n; i++)\n"
    "        if (a[i] < m) m = a[i];\n    return m;\n}"
)

# Distinct functions of similar shapes (short loops over buffers, field getters, char classes).
SIMILAR_SHAPES = {
    "my_strlen": "size_t my_strlen(const char *s)\n{\n    const char *p = s;\n    while (*p) p++;\n    return p - s;\n}",
    "count_char": "size_t count_char(const char *s, int c)\n{\n    size_t n = 0;\n    for (; *s; s++)\n"
    "        if (*s == c) n++;\n    return n;\n}",
    "sum_ints": "int sum_ints(const int *a, int n)\n{\n    int t = 0;\n    for (int i = 0; i < n; i++) t += a[i];\n"
    "    return t;\n}",
    "max_int": "int max_int(const int *a, int n)\n{\n    int m = a[0];\n    for (int i = 1; i < n; i++)\n"
    "        if (a[i] > m) m = a[i];\n    return m;\n}",
    "point_x": "int point_x(const struct point *p)\n{\n    return p->x;\n}",
    "point_y": "int point_y(const struct point *p)\n{\n    return p->y;\n}",
    "my_isdigit": "int my_isdigit(int c)\n{\n    return (unsigned)c - '0' < 10;\n}",
    "my_isalpha": "int my_isalpha(int c)\n{\n    return ((unsigned)c | 32) - 'a' < 26;\n}",
    "my_memcpy": "void *my_memcpy(void *d, const void *s, size_t n)\n{\n    unsigned char *dp = d;\n"
    "    const unsigned char *sp = s;\n    while (n--) *dp++ = *sp++;\n    return d;\n}",
    "my_memset": "void *my_memset(void *d, int c, size_t n)\n{\n    unsigned char *dp = d;\n"
    "    while (n--) *dp++ = (unsigned char)c;\n    return d;\n}",
    "my_memcmp": "int my_memcmp(const void *a, const void *b, size_t n)\n{\n    const unsigned char *l = a, *r = b;\n"
    "    for (; n && *l == *r; n--, l++, r++);\n    return n ? *l - *r : 0;\n}",
}


def make_unit(
    name: str,
    source: str,
    *,
    repo: str = "repo0",
    path: str | None = None,
    doc: str | None = None,
    license: str | None = "MIT",
    artifact: str | None = None,
    target: str = "c-wat",
    line: int = 1,
) -> dict[str, Any]:
    path = path or f"src/{name}.c"
    sig = source.split("{", 1)[0].strip()
    return {
        "id": content_hash(repo, path, name, str(line), source),
        "target": target,
        "language": "c",
        "repo": repo,
        "repo_url": None,
        "commit": None,
        "path": path,
        "line": line,
        "license": license,
        "name": name,
        "signature": sig,
        "doc": doc,
        "source": source,
        "artifact": artifact
        if artifact is not None
        else f"(func ${name} (param i32) (result i32)\n  local.get 0)",
        "meta": {"module": "0" * 64, "wat_name": f"${name}"},
    }


def synthetic_function(i: int, variant: int = 0) -> str:
    """Many distinct, realistic-looking functions: different calls, fields and constants per i."""
    return (
        f"int op_{i}_{variant}(struct ctx_{i} *c, int n)\n{{\n"
        f"    int acc = {i * 7 + variant};\n"
        f"    for (int k = 0; k < n; k++) {{\n"
        f"        acc += helper_{i}(c->field_{i % 13}, k * {i + 3});\n"
        f"        if (acc > LIMIT_{i % 17}) acc = reduce_{i}(acc, {variant + 1});\n"
        f"    }}\n"
        f"    return acc ^ c->mask_{i % 5};\n}}"
    )


def corpus(
    repos: int, files: int, per_file: int, *, start: int = 0, license: str | None = "MIT"
) -> list[dict]:
    units = []
    k = start * files * per_file
    for r in range(start, start + repos):
        for f in range(files):
            for j in range(per_file):
                name = f"op_{k}_0"
                units.append(
                    make_unit(
                        name,
                        synthetic_function(k),
                        repo=f"repo{r:03d}",
                        path=f"src/file{f}.c",
                        license=license,
                        line=10 * j + 1,
                    )
                )
                k += 1
    return units


def write_units(path: Path, units: list[dict], extra_lines: list[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(u) for u in units] + list(extra_lines or [])
    path.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
    return path
