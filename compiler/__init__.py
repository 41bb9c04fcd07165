"""convc: compile convolutional neural networks to specialized C, called from Python.

    graph = compiler.load("model.yaml")       # parse, validate, infer shapes
    print(graph.summary())
    model = compiler.compile(graph)           # -> runtime.Model
    y = model(x)
    ref = compiler.interpret(graph, {"image": x})
"""
from runtime import __version__  # one version for both packages

from .errors import (BatchAxisError, BuildError, ConvcError, ConvcWarning, LibraryError, ModelError,  # noqa: E402
                     ShapeError)
from .interpret import interpret  # noqa: E402
from .ir import Graph, Layer  # noqa: E402
from .limits import Limits  # noqa: E402
from .ops.spatial import conv_output_size  # noqa: E402
from .pipeline import build, compile, generate_c, load, plan_kernels  # noqa: E402
from .target import Target  # noqa: E402
from .emit import emit_c  # noqa: E402

__all__ = ["load", "compile", "build", "interpret", "generate_c", "emit_c", "plan_kernels", "Graph", "Layer", "Limits", "Target", "conv_output_size",
           "ConvcError", "ModelError", "ShapeError", "BatchAxisError", "BuildError", "LibraryError", "ConvcWarning", "__version__"]
