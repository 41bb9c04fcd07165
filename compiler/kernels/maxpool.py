"""Max-pool kernels of opt level 2, both with every bound a literal:

- interior (templates/ops/maxpool2d_interior.c.j2): every window lies inside the input, so the window loops
  unroll and the column loop vectorizes;
- padded (templates/ops/maxpool2d_padded.c.j2): windows reach into the padding (or past the input with
  ceil_mode): per window column the literal range of output columns whose tap lies inside, channels split
  across threads.
"""
from __future__ import annotations

from types import MappingProxyType

from . import Kernel, register_kernel
from .common import PARALLEL_MACS, valid_range


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
        return MappingProxyType(layer.spec.kernel_args(layer, in_shapes, out_shape))


@register_kernel
class MaxPoolPadded(Kernel):
    name = "maxpool_padded"
    ops = ("maxpool2d",)
    template = "ops/maxpool2d_padded.c.j2"
    priority = 10

    def wanted(self, layer, in_shapes, out_shape, target):
        return "windows reach the padding: literal column ranges per window column"

    def params(self, layer, in_shapes, out_shape, target, layouts):
        args = layer.spec.kernel_args(layer, in_shapes, out_shape)
        col_taps = []
        for j in range(args["KW"]):
            offset = j * args["DW"] - args["PL"]
            lo, hi = valid_range(args["OW"], args["W"], args["SW"], offset)
            if lo < hi:
                col_taps.append({"j": j, "lo": lo, "hi": hi, "offset": offset})
        reads = args["C"] * args["OH"] * args["OW"] * args["KH"] * args["KW"]
        return MappingProxyType(dict(args, col_taps=col_taps, parallel=reads >= PARALLEL_MACS))

    def uses_thread_pool(self, params):
        return True
