"""Size limits checked before any weight is created, any table is built or any C is written.

Generated kernels index per-sample tensors and the weights with C `int`, so no size may reach
2**31; the defaults are far below that and far above real CNNs (VGG-16: 138 M weights, largest
tensor 3.2 M values per sample), so a model file cannot make convc allocate gigabytes, spend
minutes building tables, or emit C whose index arithmetic overflows. Pass your own
`compiler.Limits(...)` to `compiler.load` / `compiler.compile` to raise or lower them.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .errors import ModelError
from .ir import Graph

C_INT_MAX = 2**31 - 1  # the largest index a generated kernel can hold


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what a model may ask for; every bound is at most 2**31 - 1."""
    max_tensor_elements: int = 2**28  # values in one tensor of one sample (1 GiB of float32)
    max_weights: int = 2**28  # weights of the whole model, all layers together
    max_spatial: int = 2**18  # height or width of any tensor (1-D signals run as height-1 images)
    max_attribute: int = 2**16  # any integer attribute (filters, units, kernel, stride, padding, ...)
    max_layers: int = 10_000
    max_description_bytes: int = 64 * 2**20  # a .yaml / .json file

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= C_INT_MAX:
                raise ValueError(f"Limits.{f.name} must be an integer in [1, {C_INT_MAX}], got {value!r}")


    @property
    def max_weights_bytes(self) -> int:
        """The most a weights file may unpack to: max_weights as float64, plus room for headers."""
        return 8 * self.max_weights + 2**20


DEFAULT_LIMITS = Limits()


def _ints(value) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, (tuple, list)):
        return [i for v in value for i in _ints(v)]
    return []


def check_attributes(graph: Graph, limits: Limits = DEFAULT_LIMITS) -> None:
    """Layer count and integer attributes; runs before shape inference (whose tables they size)."""
    if graph.nx.number_of_nodes() > limits.max_layers:
        raise ModelError(f"{graph.source}: the model has {graph.nx.number_of_nodes()} layers; the limit is "
                         f"{limits.max_layers} (compiler.Limits.max_layers)")
    for layer in graph.layers():
        check_layer_attributes(layer, limits)


def check_layer_attributes(layer, limits: Limits = DEFAULT_LIMITS) -> None:
    """One layer's integer attributes (front ends that infer shapes as they parse call it per layer)."""
    if layer.op == "input" or not dataclasses.is_dataclass(layer.attrs):
        return
    for f in dataclasses.fields(layer.attrs):
        # A target shape (reshape, constant) holds tensor sizes, not window or channel counts.
        limit, which = ((limits.max_tensor_elements, "max_tensor_elements") if f.name == "shape"
                        else (limits.max_attribute, "max_attribute"))
        big = [v for v in _ints(getattr(layer.attrs, f.name)) if abs(v) > limit]
        if big:
            raise ModelError(f"{layer.where}: attribute '{f.name}' = {big[0]} exceeds the limit "
                             f"{limit} (compiler.Limits.{which})")


def check_tensor(graph: Graph, layer, limits: Limits = DEFAULT_LIMITS) -> None:
    """One layer's output size; run during shape inference, so no later layer sees a huge input."""
    check_shape(layer, graph.shape(layer.name), limits)


def check_shape(layer, shape, limits: Limits = DEFAULT_LIMITS) -> None:
    """check_tensor for a layer whose output `shape` is known but not yet in a graph."""
    if len(shape) == 3 and max(shape[1:]) > limits.max_spatial:
        raise ModelError(f"{layer.where}: output {list(shape)} has a side longer than "
                         f"{limits.max_spatial} (compiler.Limits.max_spatial)")
    n = math.prod(shape)
    if n > limits.max_tensor_elements:
        raise ModelError(f"{layer.where}: output {list(shape)} has {n} values per sample; the limit is "
                         f"{limits.max_tensor_elements} (compiler.Limits.max_tensor_elements)")


def check_sizes(graph: Graph, limits: Limits = DEFAULT_LIMITS) -> None:
    """Every tensor's size and the total weight count, from the inferred shapes (before weights exist)."""
    total = 0
    for layer in graph.layers():
        check_tensor(graph, layer, limits)
        for suffix, w_shape in layer.spec.weight_shapes(layer, graph.in_shapes(layer.name)).items():
            count = math.prod(w_shape)
            total += count
            if total > limits.max_weights:
                raise ModelError(f"{layer.where}: weight '{layer.name}.{suffix}' {list(w_shape)} brings the model "
                                 f"to {total} weights; the limit is {limits.max_weights} "
                                 "(compiler.Limits.max_weights)")
