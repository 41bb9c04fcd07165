"""Exceptions shared by the compiler and the runtime (the runtime never imports the compiler)."""


class ConvcError(Exception):
    """Base class of every error convc raises on purpose."""


class BuildError(ConvcError):
    """The C compiler is missing or rejected the generated source; `log_path` keeps its output."""

    def __init__(self, message: str, log_path: str | None = None):
        super().__init__(message if log_path is None else f"{message}\n  compiler log: {log_path}")
        self.log_path = log_path


class LibraryError(ConvcError):
    """A compiled library cannot be used: missing, corrupt, or built by another convc version."""
