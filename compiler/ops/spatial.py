"""The sliding-window family: conv2d, maxpool2d, avgpool2d.

They share one output-size rule (`conv_output_size`), one padding resolver and one
table of valid kernel taps per output row/column (`tap_ranges`), so their C loops
need no bounds tests: the tables say which taps of each window fall inside the input.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import ConvcWarning, ModelError, ShapeError
from . import register
from .base import (Op, Shape, Window, attr, check_rank, int_at_least, pair_at_least, parse_bool,
                   parse_padding, parse_pool_padding)


# ---------------------------------------------------------------- shared rules
@dataclass(frozen=True)
class AxisSize:
    """One spatial axis: out = floor-or-ceil((size + pad_lo + pad_hi − dilation·(kernel−1) − 1)/stride) + 1."""
    size: int
    kernel: int
    stride: int
    dilation: int
    pad_lo: int
    pad_hi: int
    ceil_mode: bool = False

    @property
    def span(self) -> int:  # effective kernel extent
        return self.dilation * (self.kernel - 1) + 1

    @property
    def numerator(self) -> int:
        return self.size + self.pad_lo + self.pad_hi - self.span

    @property
    def out(self) -> int:
        num = self.numerator
        if not self.ceil_mode:
            return num // self.stride + 1
        # Rounded up even when the window is larger than the padded input (num < 0), as PyTorch and ONNX do:
        # MaxPool2d(3, stride=2, ceil_mode=True) on 2×2 gives 1×1.
        out = -(-num // self.stride) + 1
        # PyTorch/ONNX: the last window must start inside the input or the leading padding.
        if (out - 1) * self.stride >= self.size + self.pad_lo:
            out -= 1
        return out

    @property
    def dropped(self) -> int:
        """Input rows/columns at the far edge that no window reaches because the division is not whole.

        Only real input counts: when the remainder falls in the trailing padding nothing is lost.
        Windows narrower than the stride (a 1×1 stride-2 projection) skip rows between windows by
        design, so the unread edge is no surprise and is not reported.
        """
        if self.numerator < 0 or self.numerator % self.stride == 0 or self.span < self.stride:
            return 0
        last_end = (self.out - 1) * self.stride - self.pad_lo + self.span
        return max(0, self.size - last_end)

    def formula(self) -> str:
        if self.dilation == 1:
            k = f" − {self.kernel}"
        else:
            k = f" − {self.dilation}·({self.kernel}−1) − 1"
        if self.pad_lo == self.pad_hi:
            p = f" + 2·{self.pad_lo}"
        else:
            p = f" + {self.pad_lo} + {self.pad_hi}"
        inner = f"({self.size}{k}{p})/{self.stride}"
        if self.numerator % self.stride and (self.numerator >= 0 or self.ceil_mode):
            inner = f"⌈{inner}⌉" if self.ceil_mode else f"⌊{inner}⌋"
        return f"{inner} + 1 = {self.out}"


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                     ceil_mode: bool = False) -> int:
    """out = floor((W − D·(F−1) − 1 + 2P)/S) + 1 (ceil with ceil_mode); may be ≤ 0 for impossible layers."""
    return AxisSize(size, kernel, stride, dilation, padding, padding, ceil_mode).out


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """Padding so that out = ceil(size/stride); an odd total puts the extra row at the end (as PyTorch, ONNX SAME_UPPER)."""
    span = dilation * (kernel - 1) + 1
    total = max((math.ceil(size / stride) - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def tap_ranges(axis: AxisSize) -> tuple[list[int], list[int]]:
    """For each output index o, the kernel taps [lo, hi) whose input index o·S − P + t·D lies in [0, size)."""
    lo, hi = [], []
    for o in range(axis.out):
        start = o * axis.stride - axis.pad_lo
        first = -(start // axis.dilation) if start < 0 else 0  # ceil(−start / D)
        last = min(axis.kernel, (axis.size - 1 - start) // axis.dilation + 1) if start < axis.size else 0
        lo.append(first)
        hi.append(max(first, last))
    return lo, hi


def _axes(layer, in_shape: Shape, kernel, stride, dilation, pads, ceil_mode=False) -> tuple[AxisSize, AxisSize]:
    _, h, w = in_shape
    if pads == "same":
        pt, pb = same_padding(h, kernel[0], stride[0], dilation[0])
        pl, pr = same_padding(w, kernel[1], stride[1], dilation[1])
    else:
        pt, pl, pb, pr = pads
    return (AxisSize(h, kernel[0], stride[0], dilation[0], pt, pb, ceil_mode),
            AxisSize(w, kernel[1], stride[1], dilation[1], pl, pr, ceil_mode))


def _check_axes(layer, axes: tuple[AxisSize, AxisSize]) -> None:
    for label, ax in zip(("height", "width"), axes):
        if ax.out <= 0:
            raise ShapeError(
                f"{layer.where}: output {label} {ax.formula()} ≤ 0: the window "
                f"({ax.span}) is larger than the padded input ({ax.size} + {ax.pad_lo} + {ax.pad_hi})")
        if ax.dropped:
            warnings.warn(ConvcWarning(
                f"{layer.where}: output {label} {ax.formula()} is not whole: "
                f"the last {ax.dropped} input {'row' if label == 'height' else 'column'}(s) are never read"),
                stacklevel=2)


def _formula(axes: tuple[AxisSize, AxisSize]) -> str:
    fh, fw = axes[0].formula(), axes[1].formula()
    return fh if fh == fw else f"H: {fh}; W: {fw}"


def _windows(x: np.ndarray, axes: tuple[AxisSize, AxisSize], pad_value: float) -> np.ndarray:
    """Batched input (N, C, H, W) -> a view (N, C, OH, OW, KH, KW) of every window, padding applied."""
    ah, aw = axes
    xp = np.pad(x, ((0, 0), (0, 0), (ah.pad_lo, max(ah.pad_hi, 0)), (aw.pad_lo, max(aw.pad_hi, 0))),
                constant_values=pad_value)
    # ceil_mode windows may run past the padded input: pad further with the same value.
    need_h = (ah.out - 1) * ah.stride + ah.span
    need_w = (aw.out - 1) * aw.stride + aw.span
    xp = np.pad(xp, ((0, 0), (0, 0), (0, max(0, need_h - xp.shape[2])), (0, max(0, need_w - xp.shape[3]))),
                constant_values=pad_value)
    n, c, hp, wp = xp.strides
    return np.lib.stride_tricks.as_strided(
        xp, shape=(x.shape[0], x.shape[1], ah.out, aw.out, ah.kernel, aw.kernel),
        strides=(n, c, hp * ah.stride, wp * aw.stride, hp * ah.dilation, wp * aw.dilation), writeable=False)


def check_groups(layer, channels: int) -> None:
    """The attribute 'groups' divides the input channels and the attribute 'filters' (conv2d, conv_transpose2d)."""
    a = layer.attrs
    if channels % a.groups or a.filters % a.groups:
        raise ModelError(f"{layer.where}: attribute 'groups' = {a.groups} must divide both the input "
                         f"channels ({channels}) and 'filters' ({a.filters})")


def _tap_args(axes: tuple[AxisSize, AxisSize]) -> dict:
    (rlo, rhi), (clo, chi) = tap_ranges(axes[0]), tap_ranges(axes[1])
    ah, aw = axes
    return dict(OH=ah.out, OW=aw.out, KH=ah.kernel, KW=aw.kernel, SH=ah.stride, SW=aw.stride,
                DH=ah.dilation, DW=aw.dilation, PT=ah.pad_lo, PL=aw.pad_lo,
                row_lo=rlo, row_hi=rhi, col_lo=clo, col_hi=chi)


# ---------------------------------------------------------------- conv2d
@dataclass(frozen=True)
class Conv2dAttrs:
    filters: int = attr(int_at_least(1), doc="output channels K")
    kernel: tuple[int, int] = attr(pair_at_least(1), doc="F, or [FH, FW]")
    stride: tuple[int, int] = attr(pair_at_least(1), (1, 1), doc="S, or [SH, SW]")
    padding: tuple[int, int, int, int] | str = attr(
        parse_padding, (0, 0, 0, 0), doc='P | [PH, PW] | [top, left, bottom, right] | "same" | "valid"')
    dilation: tuple[int, int] = attr(pair_at_least(1), (1, 1), doc="D, or [DH, DW]")
    groups: int = attr(int_at_least(1), 1, doc="channel groups; groups = C (= filters) is depthwise")
    bias: bool = attr(parse_bool, True, doc="add a learned bias per filter")


@register
class Conv2d(Op):
    name = "conv2d"
    per_sample = True
    onnx_types = ("Conv",)
    Attrs = Conv2dAttrs
    template = "ops/conv2d.c.j2"
    doc = "2-D cross-correlation as torch.nn.Conv2d; weight [K, C/groups, FH, FW], bias [K]"

    def axes(self, layer, in_shape):
        a = layer.attrs
        return _axes(layer, in_shape, a.kernel, a.stride, a.dilation, a.padding)

    def infer_shape(self, layer, in_shapes) -> Shape:
        check_rank(layer, in_shapes, 3)
        a = layer.attrs
        check_groups(layer, in_shapes[0][0])
        axes = self.axes(layer, in_shapes[0])
        _check_axes(layer, axes)
        return (a.filters, axes[0].out, axes[1].out)

    def weight_shapes(self, layer, in_shapes):
        a = layer.attrs
        shapes = {"weight": (a.filters, in_shapes[0][0] // a.groups, *a.kernel)}
        if a.bias:
            shapes["bias"] = (a.filters,)
        return shapes

    def init_weights(self, layer, in_shapes, rng):
        shapes = self.weight_shapes(layer, in_shapes)
        fan_in = int(np.prod(shapes["weight"][1:]))
        out = {"weight": rng.uniform(-1, 1, shapes["weight"]) * math.sqrt(6.0 / fan_in)}
        if "bias" in shapes:
            out["bias"] = rng.uniform(-1, 1, shapes["bias"]) / math.sqrt(fan_in)
        return out

    def macs(self, layer, in_shapes, out_shape):
        k, oh, ow = out_shape
        a = layer.attrs
        return k * oh * ow * (in_shapes[0][0] // a.groups) * a.kernel[0] * a.kernel[1]

    def window(self, layer, in_shapes):
        ah, aw = self.axes(layer, in_shapes[0])
        return Window((ah.span, aw.span), (ah.stride, aw.stride))

    def formula(self, layer, in_shapes, out_shape):
        return _formula(self.axes(layer, in_shapes[0]))

    def reference(self, layer, inputs, weights):
        a, x = layer.attrs, inputs[0]
        axes = self.axes(layer, x.shape[1:])
        win = _windows(x, axes, 0.0)  # N, C, OH, OW, KH, KW
        n, c, oh, ow, kh, kw = win.shape
        g = a.groups
        win = win.reshape(n, g, c // g, oh, ow, kh, kw)
        w = weights["weight"].reshape(g, a.filters // g, c // g, kh, kw)
        y = np.einsum("ngchwij,gkcij->ngkhw", win, w, optimize=True).reshape(n, a.filters, oh, ow)
        if a.bias:
            y = y + weights["bias"].reshape(1, -1, 1, 1)
        return y

    def kernel_args(self, layer, in_shapes, out_shape):
        a = layer.attrs
        c, h, w = in_shapes[0]
        args = _tap_args(self.axes(layer, in_shapes[0]))
        cg, khw = c // a.groups, a.kernel[0] * a.kernel[1]
        args.update(C=c, H=h, W=w, HW=h * w, K=a.filters, CG=cg, KG=a.filters // a.groups, KHW=khw, WK=cg * khw,
                    has_bias=a.bias, residual=False, activation=())
        return args


# ---------------------------------------------------------------- pooling
@dataclass(frozen=True)
class MaxPoolAttrs:
    kernel: tuple[int, int] = attr(pair_at_least(1), doc="F, or [FH, FW]")
    stride: tuple[int, int] | None = attr(lambda v, w: pair_at_least(1)(v, w), None, doc="defaults to kernel")
    padding: tuple[int, int, int, int] = attr(parse_pool_padding, (0, 0, 0, 0),
                                              doc="P | [PH, PW] | [top, left, bottom, right]; padding is −∞")
    dilation: tuple[int, int] = attr(pair_at_least(1), (1, 1), doc="D, or [DH, DW]")
    ceil_mode: bool = attr(parse_bool, False, doc="round the output size up instead of down")


@dataclass(frozen=True)
class AvgPoolAttrs:
    kernel: tuple[int, int] = attr(pair_at_least(1), doc="F, or [FH, FW]")
    stride: tuple[int, int] | None = attr(lambda v, w: pair_at_least(1)(v, w), None, doc="defaults to kernel")
    padding: tuple[int, int, int, int] = attr(parse_pool_padding, (0, 0, 0, 0),
                                              doc="P | [PH, PW] | [top, left, bottom, right]; padding is 0")
    ceil_mode: bool = attr(parse_bool, False, doc="round the output size up instead of down")
    count_include_pad: bool = attr(parse_bool, True, doc="divide by the window size including padding")


class _Pool(Op):
    per_sample = True
    def axes(self, layer, in_shape):
        a = layer.attrs
        dilation = getattr(a, "dilation", (1, 1))
        return _axes(layer, in_shape, a.kernel, a.stride or a.kernel, dilation, a.padding, a.ceil_mode)

    def infer_shape(self, layer, in_shapes) -> Shape:
        check_rank(layer, in_shapes, 3)
        axes = self.axes(layer, in_shapes[0])
        for label, ax in zip(("top/bottom", "left/right"), axes):
            if max(ax.pad_lo, ax.pad_hi) >= ax.span:
                raise ModelError(f"{layer.where}: attribute 'padding' ({label} = {ax.pad_lo}/{ax.pad_hi}) must be "
                                 f"smaller than the window ({ax.span}), or some windows see only padding")
        _check_axes(layer, axes)
        for label, ax in zip(("height", "width"), axes):
            # With dilation, every tap of a window can miss the input (a 1-row input between two taps).
            empty = [o for o, (lo, hi) in enumerate(zip(*tap_ranges(ax))) if lo >= hi]
            if empty:
                raise ModelError(f"{layer.where}: output {label} index {empty[0]}: the window of attributes 'padding' "
                                 f"({ax.pad_lo}/{ax.pad_hi}) and 'dilation' ({ax.dilation}) sees only padding")
        return (in_shapes[0][0], axes[0].out, axes[1].out)

    def window(self, layer, in_shapes):
        ah, aw = self.axes(layer, in_shapes[0])
        return Window((ah.span, aw.span), (ah.stride, aw.stride))

    def formula(self, layer, in_shapes, out_shape):
        return _formula(self.axes(layer, in_shapes[0]))

    def kernel_args(self, layer, in_shapes, out_shape):
        c, h, w = in_shapes[0]
        args = _tap_args(self.axes(layer, in_shapes[0]))
        args.update(C=c, H=h, W=w, HW=h * w)
        return args


@register
class MaxPool2d(_Pool):
    name = "maxpool2d"
    onnx_types = ("MaxPool",)
    Attrs = MaxPoolAttrs
    template = "ops/maxpool2d.c.j2"
    doc = "max over each window, as torch.nn.MaxPool2d"

    def reference(self, layer, inputs, weights):
        win = _windows(inputs[0], self.axes(layer, inputs[0].shape[1:]), -np.inf)
        return win.max(axis=(4, 5))


@register
class AvgPool2d(_Pool):
    name = "avgpool2d"
    onnx_types = ("AveragePool",)
    Attrs = AvgPoolAttrs
    template = "ops/avgpool2d.c.j2"
    doc = "mean over each window, as torch.nn.AvgPool2d"

    def divisors(self, layer, in_shape) -> tuple[list[int], list[int]]:
        """Per output row and column, how many input rows/columns the mean divides by.

        With count_include_pad the window counts its padding but not what lies past the
        trailing padding (ceil_mode windows), as PyTorch does.
        """
        out = []
        for ax in self.axes(layer, in_shape):
            lo, hi = tap_ranges(ax)
            if layer.attrs.count_include_pad:
                counts = [min(o * ax.stride - ax.pad_lo + ax.kernel, ax.size + ax.pad_hi)
                          - (o * ax.stride - ax.pad_lo) for o in range(ax.out)]
            else:
                counts = [h - l for l, h in zip(lo, hi)]
            out.append(counts)
        return out[0], out[1]

    def reference(self, layer, inputs, weights):
        x = inputs[0]
        win = _windows(x, self.axes(layer, x.shape[1:]), 0.0)
        rows, cols = self.divisors(layer, x.shape[1:])
        return win.sum(axis=(4, 5)) / np.outer(rows, cols)

    def kernel_args(self, layer, in_shapes, out_shape):
        args = super().kernel_args(layer, in_shapes, out_shape)
        args["row_div"], args["col_div"] = self.divisors(layer, in_shapes[0])
        return args
