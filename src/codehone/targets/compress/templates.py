"""The compress prompt: code in → its notation out (the response is the notation alone)."""

from __future__ import annotations

from ...templates import Mode, TargetTemplates

_LANG = {"python": "Python", "c": "C"}


def _system(u) -> str:
    return ("You compress code into codehone notation: an optional first line `~alias=name ...` mapping short "
            "aliases to identifiers, then the code without comments, blank lines or spare whitespace, using the "
            "aliases. It must expand back to the same program. Answer with the notation only.")


COMPRESS = TargetTemplates(
    target="compress",
    system=_system,
    modes={
        "compress": Mode(
            name="compress",
            instruction=lambda u: f"Compress this {_LANG.get(u.get('language') or 'python', 'code')} code.",
            input=lambda u: f"```{u.get('language') or 'python'}\n{u['source'].strip()}\n```",
            description="the function's source, as written",
        ),
    },
    response=lambda u: u["artifact"].strip("\n"),
    response_description="the notation: symbol map line (when it saves tokens), then the compressed code",
)
