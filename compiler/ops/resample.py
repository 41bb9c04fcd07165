"""upsample: resize the H×W planes of a C×H×W input, nearest or bilinear, as torch.nn.Upsample / F.interpolate
and ONNX Resize (and the older Upsample).

Each output row (and, independently, each output column) reads a fixed set of source rows with fixed weights,
so the op is defined by one table per axis (`axis_taps`). For output index x the source coordinate is, by
coordinate_transformation_mode (ONNX's names, computed as onnxruntime computes them; scale = scale_factor, or
out/in when only the size is given):

    asymmetric           x/scale                      (torch's nearest; ONNX Upsample)
    align_corners        x·(in − 1)/(out − 1)         (0 when out = 1; torch's align_corners=True)
    half_pixel           (x + ½)/scale − ½             (torch's bilinear with align_corners=False)
    pytorch_half_pixel   (x + ½)/scale − ½, 0 when out = 1
    half_pixel_symmetric (x + ½)/scale − ½ + (in/2)·(1 − out/(in·scale))

Without a coordinate_transformation_mode the op is torch's F.interpolate: asymmetric for nearest, half_pixel
for bilinear, computed as torch computes them (x·s with s = 1/scale_factor in float32, or in/out), including
its kernels' rule of ignoring scale_factor when out = in (and for nearest out = 2·in). Nearest rounds the
coordinate (floor as torch's nearest; ceil, round_prefer_floor, round_prefer_ceil) and clamps it to [0, in − 1];
its coordinates are float32, like torch's and onnxruntime's, so the same source pixel is chosen. Bilinear clamps
the coordinate to [0, in − 1] and weighs the two source pixels around it. The C reads the tables; it computes
no coordinate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ModelError
from . import register
from .base import Op, Shape, attr, c_float, check_rank, pair_at_least, parse_positive_float

MODES = ("nearest", "bilinear")
COORDINATES = ("asymmetric", "align_corners", "half_pixel", "pytorch_half_pixel", "half_pixel_symmetric")
NEAREST_MODES = ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")


def _choice(options: tuple[str, ...], optional: bool = False):
    def parse(v, where):
        if v is None and optional:
            return None
        if v not in options:
            raise ModelError(f"{where} must be one of {', '.join(options)}{' (or null)' if optional else ''}, got {v!r}")
        return v
    return parse


def _optional_pair(v, where):
    return None if v is None else pair_at_least(1)(v, where)


def _scale_factor(v, where) -> tuple[float, float] | None:
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ModelError(f"{where} must be a number or [sh, sw], got {v!r}")
        return (parse_positive_float(v[0], where), parse_positive_float(v[1], where))
    s = parse_positive_float(v, where)
    return (s, s)


@dataclass(frozen=True)
class AxisTaps:
    """One axis's table: per output index, the source indices and their weights (one tap for nearest, two for
    bilinear)."""
    index: tuple[tuple[int, ...], ...]
    weight: tuple[tuple[float, ...], ...]


def torch_scale(in_size: int, out_size: int, scale_factor: float | None, mode: str) -> float | None:
    """The scale factor torch's kernels use: the given one, except where its CPU kernels compute from the sizes
    (nearest when out = in or out = 2·in, bilinear when out = in; pytorch/pytorch#62386)."""
    if scale_factor is None:
        return None
    if out_size == in_size or (mode == "nearest" and out_size == 2 * in_size):
        return None
    return scale_factor


def source_coordinates(in_size: int, out_size: int, scale_factor: float | None, coordinates: str | None,
                       mode: str, dtype=np.float64) -> np.ndarray:
    """The source coordinate of every output index, in `dtype` (float32 for nearest, whose rounding decides which
    pixel is nearest). coordinates None: torch's rule (nearest: x·s, bilinear: (x + ½)·s − ½, s = 1/scale_factor
    or in/out, as torch computes them); else ONNX's formula, as onnxruntime computes it (x/scale, scale =
    scale_factor or out/in)."""
    f = np.dtype(dtype).type
    x = np.arange(out_size, dtype=dtype)
    if coordinates is None:
        scale_factor = torch_scale(in_size, out_size, scale_factor, mode)
        s = f(1.0 / scale_factor) if scale_factor is not None else f(in_size) / f(out_size)
        return x * s if mode == "nearest" else (x + f(0.5)) * s - f(0.5)
    scale = f(scale_factor) if scale_factor is not None else f(out_size) / f(in_size)
    if coordinates == "asymmetric":
        return x / scale
    if coordinates == "align_corners":
        return np.zeros(out_size, dtype) if out_size == 1 else x * f(in_size - 1) / f(out_size - 1)
    if coordinates == "pytorch_half_pixel" and out_size == 1:
        return np.zeros(1, dtype)
    src = (x + f(0.5)) / scale - f(0.5)
    if coordinates == "half_pixel_symmetric":
        # The output's centre maps onto the input's when the scaled size in·scale is not whole.
        adjustment = f(out_size) / (scale * f(in_size))
        src = f(in_size) / f(2) * (f(1) - adjustment) + src
    return src


def axis_taps(in_size: int, out_size: int, scale_factor: float | None, mode: str, coordinates: str | None,
              nearest_mode: str) -> AxisTaps:
    """The table of one axis (see the module docstring)."""
    if mode == "nearest":
        src = source_coordinates(in_size, out_size, scale_factor, coordinates, mode, np.float32).astype(np.float64)
        rounded = {"floor": np.floor(src), "ceil": np.ceil(src), "round_prefer_floor": np.ceil(src - 0.5),
                   "round_prefer_ceil": np.floor(src + 0.5)}[nearest_mode]
        index = np.clip(rounded, 0, in_size - 1).astype(int)
        return AxisTaps(tuple((int(i),) for i in index), tuple((1.0,) for _ in index))
    src = np.clip(source_coordinates(in_size, out_size, scale_factor, coordinates, mode), 0, in_size - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = src - lo
    return AxisTaps(tuple((int(a), int(b)) for a, b in zip(lo, hi)),
                    tuple((float(1 - f), float(f)) for f in frac))


@dataclass(frozen=True)
class UpsampleAttrs:
    scale_factor: tuple[float, float] | None = attr(
        _scale_factor, None, doc="s or [sh, sw] > 0: out = ⌊in·s⌋, and coordinates scale by 1/s")
    size: tuple[int, int] | None = attr(_optional_pair, None,
                                        doc="the output size OH, or [OH, OW]; with scale_factor too, the "
                                            "coordinates still scale by 1/scale_factor (ONNX's "
                                            "keep_aspect_ratio_policy)")
    mode: str = attr(_choice(MODES), "nearest", doc="nearest or bilinear")
    coordinate_transformation_mode: str | None = attr(
        _choice(COORDINATES, optional=True), None,
        doc="asymmetric, align_corners, half_pixel, pytorch_half_pixel or half_pixel_symmetric, as ONNX Resize "
            "computes them (torch's align_corners=True is align_corners); default: torch's F.interpolate "
            "(asymmetric for nearest, half_pixel for bilinear, with torch's scale rules)")
    nearest_mode: str = attr(_choice(NEAREST_MODES), "floor",
                             doc="how nearest rounds the coordinate: floor (torch's), ceil, round_prefer_floor, "
                                 "round_prefer_ceil (torch's nearest-exact with half_pixel)")


@register
class Upsample(Op):
    name = "upsample"
    per_sample = True
    onnx_types = ("Resize", "Upsample")
    Attrs = UpsampleAttrs
    template = "ops/upsample.c.j2"
    doc = ("resize H×W, nearest or bilinear, by scale_factor or to size, as torch.nn.Upsample / F.interpolate and "
           "ONNX Resize; every output row and column reads source pixels from tables computed at compile time")

    def coordinates(self, layer) -> str:
        """For the summary: the coordinate mode by its ONNX name (torch's default is asymmetric for nearest,
        half_pixel for bilinear)."""
        a = layer.attrs
        if a.coordinate_transformation_mode is not None:
            return a.coordinate_transformation_mode
        return "torch's " + ("asymmetric" if a.mode == "nearest" else "half_pixel")

    def out_size(self, layer, in_shape: Shape) -> tuple[int, int]:
        a = layer.attrs
        if a.size is not None:
            return a.size
        if a.scale_factor is None:
            raise ModelError(f"{layer.where}: give attribute 'scale_factor' or 'size'")
        return (int(math.floor(in_shape[1] * a.scale_factor[0])), int(math.floor(in_shape[2] * a.scale_factor[1])))

    def infer_shape(self, layer, in_shapes) -> Shape:
        check_rank(layer, in_shapes, 3)
        c, h, w = in_shapes[0]
        oh, ow = self.out_size(layer, in_shapes[0])
        if oh < 1 or ow < 1:
            sh, sw = layer.attrs.scale_factor
            raise ModelError(f"{layer.where}: attribute 'scale_factor' {list(layer.attrs.scale_factor)} gives an "
                             f"empty output: ⌊{h}·{sh:g}⌋ × ⌊{w}·{sw:g}⌋ = {oh}×{ow}")
        return (c, oh, ow)

    def tables(self, layer, in_shape: Shape) -> tuple[AxisTaps, AxisTaps]:
        a = layer.attrs
        _, h, w = in_shape
        oh, ow = self.out_size(layer, in_shape)
        sh, sw = a.scale_factor if a.scale_factor is not None else (None, None)
        coordinates = a.coordinate_transformation_mode
        return (axis_taps(h, oh, sh, a.mode, coordinates, a.nearest_mode),
                axis_taps(w, ow, sw, a.mode, coordinates, a.nearest_mode))

    def macs(self, layer, in_shapes, out_shape):
        return int(np.prod(out_shape)) * (1 if layer.attrs.mode == "nearest" else 6)

    def formula(self, layer, in_shapes, out_shape):
        a = layer.attrs
        _, h, w = in_shapes[0]
        _, oh, ow = out_shape
        how = f"{a.mode}, {self.coordinates(layer)}" + (f", {a.nearest_mode}" if a.mode == "nearest" else "")
        if a.size is not None or a.scale_factor is None:
            return f"{h}×{w} -> {oh}×{ow} ({how})"
        sh, sw = a.scale_factor
        return f"⌊{h}·{sh:g}⌋ × ⌊{w}·{sw:g}⌋ = {oh}×{ow} ({how})"

    def reference(self, layer, inputs, weights):
        x = inputs[0]
        rows, cols = self.tables(layer, x.shape[1:])
        y = 0.0
        # Σ over the row taps a of weight_a · (Σ over the column taps b of weight_b · x[source row a, source column b])
        for a in range(len(rows.index[0])):
            r = np.array([t[a] for t in rows.index])
            wr = np.array([t[a] for t in rows.weight]).reshape(-1, 1)
            inner = 0.0
            for b in range(len(cols.index[0])):
                c = np.array([t[b] for t in cols.index])
                wc = np.array([t[b] for t in cols.weight]).reshape(1, -1)
                inner = inner + wc * x[:, :, r][:, :, :, c]
            y = y + wr * inner
        return y

    def kernel_args(self, layer, in_shapes, out_shape):
        c, h, w = in_shapes[0]
        _, oh, ow = out_shape
        rows, cols = self.tables(layer, in_shapes[0])
        nearest = layer.attrs.mode == "nearest"
        return {"C": c, "W": w, "HW": h * w, "OH": oh, "OW": ow, "OHW": oh * ow, "nearest": nearest,
                "taps": 1 if nearest else 2, "row_index": [list(t) for t in rows.index],
                "col_index": [list(t) for t in cols.index],
                "row_weight": [[c_float(v) for v in t] for t in rows.weight],
                "col_weight": [[c_float(v) for v in t] for t in cols.weight],
                "parallel": False}  # the plain loops: one thread (compiler/kernels/resample.py splits channels)
