"""convc runtime: load compiled models and call them with NumPy arrays. Needs no compiler package."""
__version__ = "0.1.0"

from .errors import BuildError, ConvcError, LibraryError  # noqa: E402
from .model import Model, load  # noqa: E402

__all__ = ["Model", "load", "ConvcError", "BuildError", "LibraryError", "__version__"]
