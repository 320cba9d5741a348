"""codehone: turn code repositories into small, fast specialist code models, judged by compilers and tests."""

__version__ = "0.1.0"
