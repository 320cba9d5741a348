"""`python -m codehone ...` = the `codehone` command (for subprocesses that must use this interpreter)."""

from .cli import run

run()
