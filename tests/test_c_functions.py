"""tree-sitter extraction of C functions: names, signatures, doc comments, #if branches."""

from codehone.targets.c_wat.functions import extract, implementation_macros

SRC = """/*
 * Copyright (c) 2021 Example Corp.
 * Licensed under the MIT license.
 */
#include <stddef.h>

int first(void) { return 1; }

/** Adds two numbers. */
static int add(int a, int b) { return a + b; }

/* plain block comment above */
int plain(int x) { return x; }

/// Triples x.
/// Never overflows here.
unsigned triple(unsigned x) { return 3 * x; }

// Computes a thing
// across lines
int (*getfp(void))(int) { return 0; }

// detached comment

int detached(void) { return 0; }

#ifdef __cplusplus
extern "C" {
#endif
#if defined(FAST) && !defined(SLOW)
int pick(int x) { return x; }
#else
int pick(int x) { return -x; }
#endif
#ifdef __cplusplus
}
#endif
"""


def by_name(funcs, name):
    return [f for f in funcs if f.name == name]


def test_finds_every_definition_with_signature():
    funcs = extract(SRC)
    assert [f.name for f in funcs] == ["first", "add", "plain", "triple", "getfp", "detached", "pick", "pick"]
    assert by_name(funcs, "add")[0].signature == "static int add(int a, int b)"
    assert by_name(funcs, "add")[0].is_static
    assert by_name(funcs, "getfp")[0].signature == "int (*getfp(void))(int)"
    assert by_name(funcs, "add")[0].source == "static int add(int a, int b) { return a + b; }"


def test_doc_comments_and_license_banner_rejected():
    funcs = extract(SRC)
    assert by_name(funcs, "first")[0].doc is None  # the license banner above is not its doc
    assert by_name(funcs, "add")[0].doc == "Adds two numbers."
    assert by_name(funcs, "triple")[0].doc == "Triples x.\nNever overflows here."
    assert by_name(funcs, "getfp")[0].doc == "Computes a thing\nacross lines"
    assert by_name(funcs, "plain")[0].doc == "plain block comment above"
    assert by_name(funcs, "detached")[0].doc is None  # a blank line separates it


def test_license_banner_directly_above_function_is_not_a_doc():
    src = "/* SPDX-License-Identifier: MIT */\nint f(void) { return 0; }\n"
    assert extract(src)[0].doc is None


def test_preprocessor_branches_and_their_conditions():
    funcs = by_name(extract(SRC), "pick")
    assert all(f.in_preproc for f in funcs)
    # SLOW is under `!`: defining it would not help. (tree-sitter nests the unbalanced
    # `extern "C" {` of the __cplusplus guard around it; mining ignores reserved __ macros.)
    assert [c for c in funcs[0].conditions if not c.startswith("__")] == ["FAST"]
    assert [c for c in funcs[1].conditions if not c.startswith("__")] == []  # the #else branch


def test_header_only_implementation_macro():
    src = """#ifndef LIB_H
#define LIB_H
int lib_add(int a, int b);
#endif
#ifdef LIB_IMPLEMENTATION
int lib_add(int a, int b) { return a + b; }
#endif
"""
    assert implementation_macros(src) == ["LIB_IMPLEMENTATION"]


def test_broken_code_does_not_raise():
    funcs = extract("int ok(void) { return 1; }\nint broken( { return ; \n\x00\xff garbage")
    assert funcs[0].name == "ok"
