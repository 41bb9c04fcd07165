"""Loop nests over strided tensors, for the element-wise and data-movement kernels.

An op describes its kernel as one loop per output axis and, for each array it touches
(the output first, then its inputs), the stride in floats of every loop. `loop_nest`
drops axes of size 1 and merges neighbouring loops that every array walks contiguously,
so that equal shapes become one flat loop, a per-channel C×1×1 operand two loops and a
transpose only the loops it really needs. The template (templates/ops/_loops.c.j2) receives
the loops and, per array, its index as terms (loop variable, stride) and a constant offset,
all numbers precomputed here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .base import Shape


def contiguous_strides(shape: Sequence[int]) -> list[int]:
    """Row-major strides in floats."""
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= d
    return strides[::-1]


def broadcast_strides(shape: Shape, out_shape: Shape) -> list[int]:
    """Strides that read a tensor of `shape` at every index of `out_shape` (NumPy broadcasting: shapes align
    at the right, and an axis of size 1 repeats, i.e. has stride 0)."""
    padded = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    return [0 if d == 1 else s for d, s in zip(padded, contiguous_strides(padded))]


@dataclass(frozen=True)
class Loop:
    var: str  # i0, i1, ...
    bound: int
    indent: str  # its depth, as spaces


@dataclass(frozen=True)
class Term:
    """var · stride (scaled: stride != 1, so it is printed)."""
    var: str
    stride: int
    scaled: bool


@dataclass(frozen=True)
class Index:
    """An array's index inside the loops: the sum of its terms and offset (zero: no term and no offset)."""
    terms: tuple[Term, ...]
    offset: int
    zero: bool


@dataclass(frozen=True)
class LoopNest:
    bounds: tuple[int, ...]  # outermost first
    strides: tuple[tuple[int, ...], ...]  # per array, one stride per loop
    offsets: tuple[int, ...]  # per array, a constant added to its index

    def index(self, array: int) -> Index:
        """Array `array`'s index inside the loops, e.g. i0 · 20 + i1 + 3."""
        terms = tuple(Term(f"i{k}", s, s != 1) for k, s in enumerate(self.strides[array]) if s)
        offset = self.offsets[array]
        return Index(terms, offset, not terms and not offset)

    def template_args(self) -> dict:
        """What templates/ops/_loops.c.j2 reads: the loops, the body's indentation, every array's index."""
        loops = tuple(Loop(f"i{k}", b, "    " * (k + 1)) for k, b in enumerate(self.bounds))
        return {"loops": loops, "body_indent": "    " * (len(loops) + 1),
                "indices": tuple(self.index(a) for a in range(len(self.strides)))}


def loop_nest(bounds: Sequence[int], strides: Sequence[Sequence[int]],
              offsets: Sequence[int] | None = None) -> LoopNest:
    """Simplify loops `bounds` with per-array `strides`: drop size-1 loops, merge loop k into k+1 when every
    array's stride[k] == stride[k+1]·bounds[k+1] (one contiguous run, or both broadcast)."""
    keep = [k for k, b in enumerate(bounds) if b != 1]
    dims = [bounds[k] for k in keep]
    per_array = [[s[k] for k in keep] for s in strides]
    k = len(dims) - 2
    while k >= 0:
        if all(s[k] == s[k + 1] * dims[k + 1] for s in per_array):
            dims[k:k + 2] = [dims[k] * dims[k + 1]]
            for s in per_array:
                s[k:k + 2] = [s[k + 1]]
        k -= 1
    if not dims:  # one element
        dims, per_array = [1], [[0] for _ in per_array]
    return LoopNest(tuple(dims), tuple(tuple(s) for s in per_array),
                    tuple(offsets) if offsets is not None else (0,) * len(per_array))
