"""The fast conv2d kernels of opt_level 2: which one a layer gets, its packed weights and its integers.

- groups = 1: `conv2d_blocked` — register-blocked direct convolution, VL output channels per vector
  (weights packed [K/VL][C][KH][KW][VL]), KV vectors × PB output pixels of accumulators in registers,
  border columns split from the interior so interior blocks run without bounds tests;
- groups = C = K (depthwise): `conv2d_depthwise` — one output row per step, inner loop over columns;
- other groupings keep the plain kernel.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

CACHE_BYTES = 512 * 1024  # data this size stays in a core's L2 (about half of it) between passes
PARALLEL_MACS = 1 << 17  # below this a layer runs on one thread: waking the team costs more than it saves


@lru_cache(maxsize=None)
def vector_lanes() -> int:
    """Floats per vector for the blocked kernel: 16 with AVX-512 on this machine, else 8."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return 8
    return 16 if " avx512f" in flags else 8


def block_shape(lanes: int, k_blocks: int) -> tuple[int, int]:
    """(KV vectors of output channels, PB output pixels) per register block: KV·PB accumulators
    plus KV weights and one input value fit the vector registers (32 with AVX-512, 16 with AVX2)."""
    kv = 2 if k_blocks % 2 == 0 else 1
    if lanes == 16:
        return kv, (12 if kv == 2 else 16)
    return kv, (6 if kv == 2 else 12)


def full_columns(col_lo: list[int], col_hi: list[int], kw: int) -> tuple[int, int]:
    """[OWA, OWB): the output columns whose every kernel tap lies inside the input (a contiguous range)."""
    full = [o for o, (lo, hi) in enumerate(zip(col_lo, col_hi)) if lo == 0 and hi == kw]
    if not full:
        return len(col_lo), len(col_lo)
    return full[0], full[-1] + 1


def blocked_lowering(args: dict, weights: dict[str, np.ndarray], macs: int):
    """args: the plain conv2d kernel_args (+ residual / act). Returns (template, arrays, args)."""
    lanes = vector_lanes()
    k, c, kh, kw = weights["weight"].shape
    k_blocks = -(-k // lanes)
    kv, pb = block_shape(lanes, k_blocks)
    packed = np.zeros((k_blocks * lanes, c, kh, kw), np.float32)
    packed[:k] = weights["weight"]
    packed = packed.reshape(k_blocks, lanes, c, kh, kw).transpose(0, 2, 3, 4, 1)
    bias = np.zeros(k_blocks * lanes, np.float32)
    if "bias" in weights:
        bias[:k] = weights["bias"]
    owa, owb = full_columns(args["col_lo"], args["col_hi"], kw)
    # Loop order: which would be re-read from beyond L2 more, the input (once per channel group)
    # or the weights (once per output row)?
    input_bytes, weight_bytes = 4 * c * args["H"] * args["W"], 4 * packed.size
    reread_input = input_bytes * (k_blocks // kv) if input_bytes > CACHE_BYTES else 0
    reread_weights = weight_bytes * args["OH"] if weight_bytes > CACHE_BYTES else 0
    inner = owb - owa
    out = dict(args, VL=lanes, KB=k_blocks, KV=kv, PB=pb, CKK=c * kh * kw, LASTN=k - (k_blocks - 1) * lanes,
               OHW=args["OH"] * args["OW"], OWA=owa, OWB=owb, NBLOCKS=inner // pb, REM=inner % pb,
               border_cols=owa > 0 or owb < args["OW"], parallel=macs >= PARALLEL_MACS,
               rows_outer=reread_weights < reread_input)
    return "ops/conv2d_blocked.c.j2", {"weight": packed, "bias": bias}, out


def depthwise_columns(ow: int, w: int, sw: int, dw: int, pl: int, kw: int) -> tuple[list[int], list[int]]:
    """Per kernel column t, the output columns [lo, hi) with 0 <= o·SW − PL + t·DW < W."""
    lo, hi = [], []
    for t in range(kw):
        valid = [o for o in range(ow) if 0 <= o * sw - pl + t * dw < w]
        lo.append(valid[0] if valid else 0)
        hi.append(valid[-1] + 1 if valid else 0)
    return lo, hi


def depthwise_lowering(args: dict, weights: dict[str, np.ndarray], macs: int):
    lo, hi = depthwise_columns(args["OW"], args["W"], args["SW"], args["DW"], args["PL"], args["KW"])
    out = dict(args, ow_lo=lo, ow_hi=hi, parallel=macs >= PARALLEL_MACS)
    return "ops/conv2d_depthwise.c.j2", dict(weights), out
