"""maxpool_interior: max pools at opt level 2 whose windows all lie inside the input
(templates/ops/maxpool2d_interior.c.j2): the window loops unroll and the column loop vectorizes; channels split
across threads. Windows that reach the padding take maxpool_padded (compiler/kernels/split_pool.py), and so do
overlapping strided windows (3×3/2), whose row maxima it takes first.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import Kernel, register_kernel
from .blocked_pool import HandsBlockedPools
from .common import WindowParams, record_fields, window_parallel


@dataclass(frozen=True)
class InteriorParams(WindowParams):
    ROW_STEP: int  # input floats between output rows: SH·W
    window_offsets: tuple[int, ...]  # every tap but the first: i·DH·W + j·DW
    parallel: bool


def _inside(args: dict) -> bool:
    return all(lo == 0 and hi == args[k] for tab, k in (("row", "KH"), ("col", "KW"))
               for lo, hi in zip(args[f"{tab}_lo"], args[f"{tab}_hi"])) and args["PT"] == args["PL"] == 0


@register_kernel
class MaxPoolInterior(HandsBlockedPools, Kernel):
    name = "maxpool_interior"
    ops = ("maxpool2d",)
    template = "ops/maxpool2d_interior.c.j2"
    priority = 20

    def unsuitable(self, layer, in_shapes, out_shape, target):
        if not _inside(layer.spec.kernel_args(layer, in_shapes, out_shape)):
            return "it computes windows that lie inside the input only"
        return None

    def wanted(self, layer, in_shapes, out_shape, target):
        a = layer.spec.kernel_args(layer, in_shapes, out_shape)
        if 1 < a["SW"] < a["KW"]:
            # Overlapping strided windows (3×3/2): maxpool_padded's row maxima first read each input value
            # once instead of KW times, 2-3× faster here (SqueezeNet's and AlexNet's pools; 2×2/2 pools,
            # which overlap nowhere, were slower there on wide maps).
            return None
        return "every window inside the input: literal loops"

    def params(self, layer, in_shapes, out_shape, target, layouts):
        g = record_fields(WindowParams, layer, in_shapes, out_shape)
        return InteriorParams(**g, ROW_STEP=g["SH"] * g["W"],
                              window_offsets=tuple(i * g["DH"] * g["W"] + j * g["DW"]
                                                   for i in range(g["KH"]) for j in range(g["KW"]) if i or j),
                              parallel=window_parallel(g))

    def uses_thread_pool(self, params):
        return True
