"""conv_transpose2d: the transposed 2-D convolution, as torch.nn.ConvTranspose2d and ONNX ConvTranspose.

It is conv2d's adjoint: input pixel (ih, iw) adds its value times the kernel to the output window at
(ih·S − P_top, iw·S − P_left), the taps D apart. Per spatial axis

    out = (in − 1)·S − P_begin − P_end + D·(F − 1) + output_padding + 1

where the padding crops the full result and output_padding adds rows/columns at the end (bottom/right).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ModelError, ShapeError
from . import register
from .base import Op, Shape, Window, attr, check_rank, int_at_least, pair_at_least, parse_bool, parse_padding
from .spatial import Conv2d, check_groups


def _padding(v, where) -> tuple[int, int, int, int]:
    p = parse_padding(v, where)
    if p == "same":
        raise ModelError(f'{where}: "same" is not supported for conv_transpose2d; give the padding explicitly')
    return p  # type: ignore[return-value]


@dataclass(frozen=True)
class TransposedAxis:
    """One spatial axis of a transposed convolution."""
    size: int
    kernel: int
    stride: int
    dilation: int
    pad_lo: int
    pad_hi: int
    output_padding: int

    @property
    def out(self) -> int:
        return ((self.size - 1) * self.stride - self.pad_lo - self.pad_hi + self.dilation * (self.kernel - 1)
                + self.output_padding + 1)

    def formula(self) -> str:
        p = f"2·{self.pad_lo}" if self.pad_lo == self.pad_hi else f"{self.pad_lo} − {self.pad_hi}"
        return (f"({self.size} − 1)·{self.stride} − {p} + {self.dilation}·({self.kernel} − 1) + "
                f"{self.output_padding} + 1 = {self.out}")

    def taps(self) -> tuple[list[int], list[int], list[int]]:
        """Per kernel tap t: the input indices [lo, hi) whose output index i·S + off lies in [0, out), and off =
        t·D − P_begin. The output indices a tap reaches from consecutive inputs are S apart, so they are one
        contiguous range of inputs."""
        lo, hi, off = [], [], []
        for t in range(self.kernel):
            o = t * self.dilation - self.pad_lo
            first = max(0, -(o // self.stride)) if o < 0 else 0  # ceil(−o / S) for o < 0
            last = min(self.size, (self.out - 1 - o) // self.stride + 1) if o <= self.out - 1 else 0
            lo.append(first)
            hi.append(max(first, last))
            off.append(o)
        return lo, hi, off


@dataclass(frozen=True)
class ConvTranspose2dAttrs:
    filters: int = attr(int_at_least(1), doc="output channels K")
    kernel: tuple[int, int] = attr(pair_at_least(1), doc="F, or [FH, FW]")
    stride: tuple[int, int] = attr(pair_at_least(1), (1, 1), doc="S, or [SH, SW]")
    padding: tuple[int, int, int, int] = attr(_padding, (0, 0, 0, 0),
                                              doc="P | [PH, PW] | [top, left, bottom, right]: rows/columns cropped "
                                                  "from the full result")
    output_padding: tuple[int, int] = attr(pair_at_least(0), (0, 0),
                                           doc="rows/columns added at the bottom/right, or [OPH, OPW]")
    dilation: tuple[int, int] = attr(pair_at_least(1), (1, 1), doc="D, or [DH, DW]")
    groups: int = attr(int_at_least(1), 1, doc="channel groups")
    bias: bool = attr(parse_bool, True, doc="add a learned bias per filter")


@register
class ConvTranspose2d(Op):
    name = "conv_transpose2d"
    per_sample = True
    onnx_types = ("ConvTranspose",)
    Attrs = ConvTranspose2dAttrs
    template = "ops/conv_transpose2d.c.j2"
    doc = ("transposed 2-D convolution as torch.nn.ConvTranspose2d (conv2d's adjoint: each input pixel adds the kernel "
           "times its value to the output, S apart); out = (in − 1)·S − 2P + D·(F − 1) + output_padding + 1; "
           "weight [C, K/groups, FH, FW] (PyTorch's layout), bias [K]")

    def axes(self, layer, in_shape: Shape) -> tuple[TransposedAxis, TransposedAxis]:
        a = layer.attrs
        _, h, w = in_shape
        pt, pl, pb, pr = a.padding
        return (TransposedAxis(h, a.kernel[0], a.stride[0], a.dilation[0], pt, pb, a.output_padding[0]),
                TransposedAxis(w, a.kernel[1], a.stride[1], a.dilation[1], pl, pr, a.output_padding[1]))

    def infer_shape(self, layer, in_shapes) -> Shape:
        check_rank(layer, in_shapes, 3)
        a = layer.attrs
        check_groups(layer, in_shapes[0][0])
        axes = self.axes(layer, in_shapes[0])
        for label, ax in zip(("height", "width"), axes):
            if ax.out <= 0:
                raise ShapeError(f"{layer.where}: output {label} (in − 1)·S − 2P + D·(F − 1) + output_padding + 1 = "
                                 f"{ax.formula()} ≤ 0: attribute 'padding' ({ax.pad_lo} + {ax.pad_hi}) crops more "
                                 f"than the full result ({ax.out + ax.pad_lo + ax.pad_hi})")
        return (a.filters, axes[0].out, axes[1].out)

    def weight_shapes(self, layer, in_shapes):
        a = layer.attrs
        shapes = {"weight": (in_shapes[0][0], a.filters // a.groups, *a.kernel)}
        if a.bias:
            shapes["bias"] = (a.filters,)
        return shapes

    # He-uniform over fan_in = weight.size(1)·FH·FW, as conv2d (and torch's ConvTranspose2d) count it.
    init_weights = Conv2d.init_weights

    def macs(self, layer, in_shapes, out_shape):
        """Every tap that lands inside the output."""
        ah, aw = self.axes(layer, in_shapes[0])
        (rlo, rhi, _), (clo, chi, _) = ah.taps(), aw.taps()
        rows, cols = sum(h - l for l, h in zip(rlo, rhi)), sum(h - l for l, h in zip(clo, chi))
        return in_shapes[0][0] * (layer.attrs.filters // layer.attrs.groups) * rows * cols

    def window(self, layer, in_shapes):
        # An output pixel sees ⌈span/S⌉ input pixels per axis; the finer output grid (a jump of 1/S) is not
        # modelled, so later receptive fields are overestimated.
        ah, aw = self.axes(layer, in_shapes[0])
        spans = [math.ceil((ax.dilation * (ax.kernel - 1) + 1) / ax.stride) for ax in (ah, aw)]
        return Window((spans[0], spans[1]), (1, 1))

    def formula(self, layer, in_shapes, out_shape):
        fh, fw = (ax.formula() for ax in self.axes(layer, in_shapes[0]))
        return fh if fh == fw else f"H: {fh}; W: {fw}"

    def reference(self, layer, inputs, weights):
        a, x = layer.attrs, inputs[0]
        n, c, h, w = x.shape
        ah, aw = self.axes(layer, x.shape[1:])
        g, kg = a.groups, a.filters // a.groups
        # The full result before cropping (and long enough for output_padding), then the crop.
        full_h = max((h - 1) * ah.stride + ah.dilation * (ah.kernel - 1) + 1, ah.pad_lo + ah.out)
        full_w = max((w - 1) * aw.stride + aw.dilation * (aw.kernel - 1) + 1, aw.pad_lo + aw.out)
        full = np.zeros((n, a.filters, full_h, full_w))
        xg = x.reshape(n, g, c // g, h, w)
        wg = weights["weight"].astype(np.float64).reshape(g, c // g, kg, *a.kernel)
        for i in range(ah.kernel):
            for j in range(aw.kernel):
                spread = np.einsum("ngchw,gck->ngkhw", xg, wg[..., i, j]).reshape(n, a.filters, h, w)
                r, s = i * ah.dilation, j * aw.dilation
                full[:, :, r:r + (h - 1) * ah.stride + 1:ah.stride, s:s + (w - 1) * aw.stride + 1:aw.stride] += spread
        y = full[:, :, ah.pad_lo:ah.pad_lo + ah.out, aw.pad_lo:aw.pad_lo + aw.out]
        if a.bias:
            y = y + weights["bias"].astype(np.float64).reshape(1, -1, 1, 1)
        return y

    def kernel_args(self, layer, in_shapes, out_shape):
        a = layer.attrs
        c, h, w = in_shapes[0]
        k, oh, ow = out_shape
        ah, aw = self.axes(layer, in_shapes[0])
        (rlo, rhi, roff), (clo, chi, coff) = ah.taps(), aw.taps()
        cg, kg = c // a.groups, a.filters // a.groups
        return {"K": k, "CG": cg, "KG": kg, "H": h, "W": w, "HW": h * w, "OW": ow, "OHW": oh * ow,
                "KH": a.kernel[0], "KW": a.kernel[1], "KHW": a.kernel[0] * a.kernel[1], "SH": ah.stride,
                "SW": aw.stride, "row_lo": rlo, "row_hi": rhi, "row_off": roff, "col_lo": clo, "col_hi": chi,
                "col_off": coff, "has_bias": a.bias}
