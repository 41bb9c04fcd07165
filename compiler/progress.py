"""Progress of a long compile: each stage (parse, infer, optimize, generate, cc) with the elapsed time.

`compiler.compile(..., progress=callback)` calls `callback(stage)` as each stage starts and
`callback("done")` at the end; `terminal_progress` is the callback the command line uses.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

Progress = Callable[[str], None]
STAGES = ("parse", "infer", "optimize", "generate", "cc")


def no_progress(stage: str) -> None:
    """The default: report nothing."""


class TerminalProgress:
    """Prints `convc: [  1.2 s] cc` lines to a stream (stderr), one per stage."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.start = time.perf_counter()

    def __call__(self, stage: str) -> None:
        self.stream.write(f"convc: [{time.perf_counter() - self.start:6.2f} s] {stage}\n")
        self.stream.flush()


def terminal_progress(quiet: bool = False, stream: TextIO | None = None) -> Progress:
    """A reporter on stderr when it is a terminal and not `quiet`; otherwise silence."""
    stream = stream or sys.stderr
    if quiet or not stream.isatty():
        return no_progress
    return TerminalProgress(stream)
