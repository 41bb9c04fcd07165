"""Max-pool kernels of opt level 2, both with every bound a literal:

- interior (templates/ops/maxpool2d_interior.c.j2): every window lies inside the input, so the window loops
  unroll and the column loop vectorizes;
- padded (templates/ops/maxpool2d_padded.c.j2): windows reach into the padding (or past the input with
  ceil_mode): per window column the literal range of output columns whose tap lies inside, channels split
  across threads.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import Kernel, register_kernel
from .common import PARALLEL_MACS, ColumnTap, WindowParams, column_taps, record_fields


@dataclass(frozen=True)
class InteriorParams(WindowParams):
    ROW_STEP: int  # input floats between output rows: SH·W
    window_offsets: tuple[int, ...]  # every tap but the first: i·DH·W + j·DW


@dataclass(frozen=True)
class PaddedParams(WindowParams):
    col_taps: tuple[ColumnTap, ...]
    parallel: bool


def _inside(args: dict) -> bool:
    return all(lo == 0 and hi == args[k] for tab, k in (("row", "KH"), ("col", "KW"))
               for lo, hi in zip(args[f"{tab}_lo"], args[f"{tab}_hi"])) and args["PT"] == args["PL"] == 0


@register_kernel
class MaxPoolInterior(Kernel):
    name = "maxpool_interior"
    ops = ("maxpool2d",)
    template = "ops/maxpool2d_interior.c.j2"
    priority = 20

    def unsuitable(self, layer, in_shapes, out_shape, target):
        if not _inside(layer.spec.kernel_args(layer, in_shapes, out_shape)):
            return "it computes windows that lie inside the input only"
        return None

    def wanted(self, layer, in_shapes, out_shape, target):
        return "every window inside the input: literal loops"

    def params(self, layer, in_shapes, out_shape, target, layouts):
        g = record_fields(WindowParams, layer, in_shapes, out_shape)
        return InteriorParams(**g, ROW_STEP=g["SH"] * g["W"],
                              window_offsets=tuple(i * g["DH"] * g["W"] + j * g["DW"]
                                                   for i in range(g["KH"]) for j in range(g["KW"]) if i or j))


@register_kernel
class MaxPoolPadded(Kernel):
    name = "maxpool_padded"
    ops = ("maxpool2d",)
    template = "ops/maxpool2d_padded.c.j2"
    priority = 10

    def wanted(self, layer, in_shapes, out_shape, target):
        return "windows reach the padding: literal column ranges per window column"

    def params(self, layer, in_shapes, out_shape, target, layouts):
        g = record_fields(WindowParams, layer, in_shapes, out_shape)
        reads = g["C"] * g["OH"] * g["OW"] * g["KH"] * g["KW"]
        return PaddedParams(**g, col_taps=column_taps(g), parallel=reads >= PARALLEL_MACS)

    def uses_thread_pool(self, params):
        return True
