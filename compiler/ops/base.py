"""What every op is made of: typed attributes parsed strictly, and the `Op` interface.

An op's attributes are a frozen dataclass whose fields carry their parser in
`metadata["parse"]`; `parse_attrs` turns a raw dict from a model file into that
dataclass or raises a `ModelError` naming the layer and the attribute.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from ..errors import ModelError, ShapeError

Shape = tuple[int, ...]  # per-sample shape: (C, H, W) or (F,); the batch size is given at call time


# ---------------------------------------------------------------- attribute parsers
def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def int_at_least(lo: int) -> Callable[[Any, str], int]:
    def parse(v: Any, where: str) -> int:
        if not _is_int(v) or int(v) < lo:
            raise ModelError(f"{where} must be an integer >= {lo}, got {v!r}")
        return int(v)
    return parse


def pair_at_least(lo: int) -> Callable[[Any, str], tuple[int, int]]:
    """An int, or [h, w]."""
    one = int_at_least(lo)

    def parse(v: Any, where: str) -> tuple[int, int]:
        if isinstance(v, (list, tuple)):
            if len(v) != 2:
                raise ModelError(f"{where} must be an integer or [h, w], got {v!r}")
            return (one(v[0], where), one(v[1], where))
        x = one(v, where)
        return (x, x)
    return parse


def parse_padding(v: Any, where: str) -> tuple[int, int, int, int] | str:
    """int | [ph, pw] | [top, left, bottom, right] | "same" | "valid" -> (top, left, bottom, right) or "same"."""
    if isinstance(v, str):
        if v == "same":
            return "same"
        if v == "valid":
            return (0, 0, 0, 0)
        raise ModelError(f'{where} must be an integer, a list, "same" or "valid", got {v!r}')
    nonneg = int_at_least(0)
    if isinstance(v, (list, tuple)):
        if len(v) == 2:
            ph, pw = nonneg(v[0], where), nonneg(v[1], where)
            return (ph, pw, ph, pw)
        if len(v) == 4:
            t, l, b, r = (nonneg(x, where) for x in v)
            return (t, l, b, r)
        raise ModelError(f"{where} must be an integer, [ph, pw] or [top, left, bottom, right], got {v!r}")
    p = nonneg(v, where)
    return (p, p, p, p)


def parse_pool_padding(v: Any, where: str) -> tuple[int, int, int, int]:
    p = parse_padding(v, where)
    if p == "same":
        raise ModelError(f'{where}: "same" is not supported for pooling; give the padding explicitly')
    return p  # type: ignore[return-value]


def parse_bool(v: Any, where: str) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise ModelError(f"{where} must be true or false, got {v!r}")
    return bool(v)


def parse_float(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
        raise ModelError(f"{where} must be a finite number, got {v!r}")
    return float(v)


def parse_positive_float(v: Any, where: str) -> float:
    x = parse_float(v, where)
    if x <= 0:
        raise ModelError(f"{where} must be > 0, got {v!r}")
    return x


def parse_optional_float(v: Any, where: str) -> float | None:
    return None if v is None else parse_float(v, where)


def parse_int(v: Any, where: str) -> int:
    if not _is_int(v):
        raise ModelError(f"{where} must be an integer, got {v!r}")
    return int(v)


def int_list(lo: int, min_len: int = 1) -> Callable[[Any, str], tuple[int, ...]]:
    """A list of at least `min_len` integers, each >= lo."""
    def parse(v: Any, where: str) -> tuple[int, ...]:
        if not isinstance(v, (list, tuple)) or len(v) < min_len or not all(_is_int(d) and d >= lo for d in v):
            raise ModelError(f"{where} must be a list of at least {min_len} integer(s) >= {lo}, got {v!r}")
        return tuple(int(d) for d in v)
    return parse


def resolve_axis(layer, field: str, axis: int, shape: Shape) -> int:
    """A per-sample axis (negative counts from the end) as 0..rank-1, or a ShapeError naming the attribute."""
    rank = len(shape)
    if not -rank <= axis < rank:
        raise ShapeError(f"{layer.where}: attribute '{field}' = {axis} is out of range for a rank-{rank} input "
                         f"({fmt_shape(shape)}); per-sample axes are 0..{rank - 1} (or -{rank}..-1)")
    return axis % rank


def attr(parse: Callable[[Any, str], Any], default: Any = dataclasses.MISSING, doc: str = "") -> Any:
    """A dataclass field that knows how to parse itself from a model file."""
    return field(default=default, metadata={"parse": parse, "doc": doc})


@dataclass(frozen=True)
class NoAttrs:
    pass


def parse_attrs(cls: type, raw: dict[str, Any], where: str) -> Any:
    """Build the attrs dataclass `cls` from `raw`; unknown or missing attributes are errors."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known), key=repr)  # YAML keys need not be strings
    if unknown:
        listing = ", ".join(sorted(known)) or "none"
        raise ModelError(f"{where}: unknown attribute(s) {', '.join(map(repr, unknown))}; this op takes: {listing}")
    values = {}
    for name, f in known.items():
        if name in raw:
            values[name] = f.metadata["parse"](raw[name], f"{where}: attribute '{name}'")
        elif f.default is dataclasses.MISSING:
            raise ModelError(f"{where}: missing required attribute '{name}'")
    return cls(**values)


def attrs_to_dict(attrs: Any) -> dict[str, Any]:
    """The inverse of parse_attrs, for writing descriptions back out (lists, not tuples)."""
    out = {}
    for f in dataclasses.fields(attrs):
        v = getattr(attrs, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


# ---------------------------------------------------------------- the op interface
@dataclass(frozen=True)
class Window:
    """A sliding window along H and W, for receptive fields: effective kernel and stride per axis."""
    kernel: tuple[int, int]
    stride: tuple[int, int]


class Op:
    """One operator: attributes, shape rule, parameter/MAC count, NumPy reference and C template.

    Subclasses set `name`, `Attrs`, `arity` and `template` and override what differs.
    Methods get the layer (`compiler.ir.Layer`: name, op, attrs) and per-sample shapes.
    """

    name: ClassVar[str]
    Attrs: ClassVar[type] = NoAttrs
    arity: ClassVar[int | None] = 1  # None: two or more inputs
    template: ClassVar[str] = ""
    doc: ClassVar[str] = ""
    # An op whose output is its input's memory unchanged (flatten, dropout): no kernel, no buffer.
    is_view: ClassVar[bool] = False
    # An op whose output is one of its own weight tensors (constant): no kernel, no buffer; readers point into
    # the weights, and the tensor is the same for every sample.
    is_constant: ClassVar[bool] = False
    # Made only by optimization passes (fused epilogues); model files cannot name it.
    internal: ClassVar[bool] = False

    # -- shapes and costs
    def infer_shape(self, layer, in_shapes: list[Shape]) -> Shape:
        raise NotImplementedError

    def weight_shapes(self, layer, in_shapes: list[Shape]) -> dict[str, Shape]:
        """Parameter tensors by suffix ("weight", "bias", ...) with PyTorch's shapes."""
        return {}

    def optional_weights(self, layer) -> frozenset[str]:
        """Suffixes a weights file may carry that the op ignores (e.g. num_batches_tracked)."""
        return frozenset()

    def init_weights(self, layer, in_shapes: list[Shape], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Deterministic initial weights when the description gives no weights file."""
        return {}

    def macs(self, layer, in_shapes: list[Shape], out_shape: Shape) -> int:
        return 0

    def window(self, layer, in_shapes: list[Shape]) -> Window | str | None:
        """For receptive fields: a Window, "global" (sees its whole input), or None (pointwise)."""
        return None

    def formula(self, layer, in_shapes: list[Shape], out_shape: Shape) -> str:
        """The output-size formula with this layer's numbers, for the summary and the C comment."""
        return ""

    # -- semantics
    def reference(self, layer, inputs: list[np.ndarray], weights: dict[str, np.ndarray]) -> np.ndarray:
        """NumPy reference on batched float64 arrays: the definition of the op."""
        raise NotImplementedError

    # -- lowering
    def lower_weights(self, layer, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The constant arrays the C kernel reads (default: the weights as given)."""
        return {k: v for k, v in weights.items() if k not in self.optional_weights(layer)}

    def kernel_args(self, layer, in_shapes: list[Shape], out_shape: Shape) -> dict[str, Any]:
        """The integers (and floats) this op's template needs; no arithmetic is left to Jinja."""
        return {}

    def lowering(self, layer, in_shapes: list[Shape], out_shape: Shape, weights: dict[str, np.ndarray],
                 opt_level: int, layouts: tuple[int, ...] | None = None, target=None
                 ) -> tuple[str, dict[str, np.ndarray], dict[str, Any]]:
        """(template, constant arrays, template args) at `opt_level` for `target` (compiler.Target); ops with
        fast kernels choose them here.

        layouts: per input, then the output, 0 for C×H×W or L for channel-blocked [C/L][H][W][L]; None when
        all are C×H×W. Only ops whose `channel_blocked_io` allows it are given a nonzero one."""
        if layouts and any(layouts):
            raise ValueError(f"{layer.where}: this op's kernels read and write C×H×W only")
        return self.template, self.lower_weights(layer, weights), self.kernel_args(layer, in_shapes, out_shape)

    def channel_blocked_io(self, layer, in_shapes: list[Shape], out_shape: Shape,
                           opt_level: int, target) -> tuple[str, ...] | None:
        """Whether the kernel chosen at `opt_level` can write its output channel-blocked (compiler/layouts.py):
        None if not, else per input "any" (read in either layout), "same" (only in the output's layout),
        "if_out" (blocked only when the output is) or "for_out" (blocked whenever the output is)."""
        return None

    def scratch_floats(self, layer, in_shapes: list[Shape], out_shape: Shape, opt_level: int, target) -> int:
        """Floats of arena scratch the kernel chosen at `opt_level` needs during its own call (0: none).
        A kernel with scratch takes it as a last argument `float *restrict scratch`."""
        return 0


def check_rank(layer, in_shapes: list[Shape], rank: int, what: str = "a C×H×W input") -> None:
    for s in in_shapes:
        if len(s) != rank:
            raise ShapeError(f"{layer.where}: expects {what}, got shape {fmt_shape(s)}")


def fmt_shape(s: Shape) -> str:
    return "×".join(str(d) for d in s)


def c_float(x: float) -> str:
    """A float32 C literal that round-trips exactly (9 significant digits)."""
    x = float(np.float32(x))
    if math.isinf(x):
        return "INFINITY" if x > 0 else "(-INFINITY)"
    text = f"{x:.9g}"
    if "e" not in text and "." not in text:
        text += ".0"
    return f"({text}f)" if text.startswith("-") else f"{text}f"
