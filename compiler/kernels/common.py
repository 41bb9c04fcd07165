"""What several kernels share: work and stack budgets, the conv geometry, filter packing and row cutting."""
from __future__ import annotations

import numpy as np

from ..target import Target

PARALLEL_MACS = 1 << 20  # below this (~10 µs of work) a layer runs on the caller's thread alone
# A kernel's copy of its input rows lives on the stack: bigger ones take another kernel.
STACK_BUFFER_BYTES = 96 * 1024


def cache_bytes(target: Target) -> int:
    """Data this size stays in a core's L2 (about half of it) between passes."""
    return target.l2_bytes // 2


def conv_args(layer, in_shapes) -> dict:
    """The conv2d template integers of a conv or fused conv layer (the op's kernel_args)."""
    return layer.spec.kernel_args(layer, in_shapes, layer.spec.infer_shape(layer, in_shapes))


def conv_weights(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in weights.items() if k in ("weight", "bias")}


def block_shape(k_blocks: int, registers: int) -> tuple[int, int]:
    """(KV vectors of output channels, PB output pixels) per register block: KV·PB accumulators
    plus KV weights and one input value fit the vector registers (32 with AVX-512, 16 with AVX2)."""
    kv = 2 if k_blocks % 2 == 0 else 1
    if registers >= 32:
        return kv, (12 if kv == 2 else 16)
    return kv, (6 if kv == 2 else 12)


def row_segments(col_lo: list[int], col_hi: list[int], kw: int, pb: int) -> list[dict]:
    """Cut an output row into blocks of at most `pb` pixels.

    Each segment: start column, n pixels, count (consecutive equal blocks run as one C loop) and
    mask — None when every tap of every pixel lies inside the input, else per kernel column the
    pixels (0..n-1) whose tap does.
    """
    ow = len(col_lo)
    blocks = []
    for start in range(0, ow, pb):
        n = min(pb, ow - start)
        mask = [[j for j in range(n) if col_lo[start + j] <= t < col_hi[start + j]] for t in range(kw)]
        full = all(len(m) == n for m in mask)
        blocks.append({"start": start, "n": n, "count": 1, "mask": None if full else mask})
    segments: list[dict] = []
    for b in blocks:
        last = segments[-1] if segments else None
        if last and b["mask"] is None and last["mask"] is None and last["n"] == b["n"]:
            last["count"] += 1
        else:
            segments.append(b)
    return segments


def pack_filter_blocks(weights: dict[str, np.ndarray], block: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Filters zero-padded to whole blocks of `block`, the filter index innermost: [K/block][C][FH][FW][block],
    so one vector load reads a tap of `block` filters. Returns (packed weight, zero-padded bias, blocks)."""
    k, c, kh, kw = weights["weight"].shape
    k_blocks = -(-k // block)
    packed = np.zeros((k_blocks * block, c, kh, kw), np.float32)
    packed[:k] = weights["weight"]
    packed = packed.reshape(k_blocks, block, c, kh, kw).transpose(0, 2, 3, 4, 1)
    bias = np.zeros(k_blocks * block, np.float32)
    if "bias" in weights:
        bias[:k] = weights["bias"]
    return packed, bias, k_blocks


def valid_range(out: int, size: int, stride: int, shift: int) -> tuple[int, int]:
    """Output indices [lo, hi) with 0 <= o·stride + shift < size (empty: lo == hi)."""
    valid = [o for o in range(out) if 0 <= o * stride + shift < size]
    return (valid[0], valid[-1] + 1) if valid else (0, 0)


def phases(row_len: int, sw: int, pl: int, w: int) -> list[dict]:
    """Per column phase q: the buffer indices j with 0 <= j·SW + q − PL < W (the rest is zero padding)."""
    out = []
    for q in range(sw):
        valid = [j for j in range(row_len) if 0 <= j * sw + q - pl < w]
        lo, hi = (valid[0], valid[-1] + 1) if valid else (0, 0)
        out.append({"q": q, "lo": lo, "hi": hi})
    return out
