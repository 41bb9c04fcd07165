"""Errors and warnings about model descriptions."""
from runtime.errors import BuildError, ConvcError, LibraryError

__all__ = ["ConvcError", "BuildError", "LibraryError", "ModelError", "ShapeError", "ConvcWarning"]


class ModelError(ConvcError, ValueError):
    """The model description is invalid; the message names the file, the layer and the attribute."""


class ShapeError(ModelError):
    """A layer's output shape is impossible; the message shows the formula with its numbers."""


class ConvcWarning(UserWarning):
    """Something legal but probably unintended, such as input rows a stride drops."""
