"""Errors and warnings about model descriptions."""
from runtime.errors import BuildError, ConvcError, LibraryError

__all__ = ["ConvcError", "BuildError", "LibraryError", "ModelError", "ShapeError", "BatchAxisError", "ConvcWarning"]


class ModelError(ConvcError, ValueError):
    """The model description is invalid; the message names the file, the layer and the attribute."""


class ShapeError(ModelError):
    """A layer's output shape is impossible; the message shows the formula with its numbers."""


class BatchAxisError(ShapeError):
    """A layer acts across the batch axis (or the input has no axis but the batch), which a model that computes
    each sample on its own cannot do. The ONNX front end then imports the model as one whole tensor of fixed
    shape; a native description says so with `batch: N`."""


class ConvcWarning(UserWarning):
    """Something legal but probably unintended, such as input rows a stride drops."""
