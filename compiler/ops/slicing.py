"""Ops that copy part of their input, or all of it in another order: slice, split, chunk, gather (constant
indices) and channel_shuffle.

An op with several outputs (torch.split, torch.chunk, ONNX Split) is one layer per output: `split` and `chunk`
compute the piece `index` of the split, so `x1, x2 = x.chunk(2, dim=1)` is two `chunk` layers reading x with
index 0 and 1. Every layer keeps one output tensor, which the memory plan places and frees on its own; the input
is read once in all (each layer copies only its own piece).

They share one kernel, templates/ops/copy.c.j2: one loop per output axis over the input read with its own
strides (compiler/ops/strided.py merges the loops that run contiguously), and a memcpy for the innermost
contiguous run (a channel slice of a C×H×W sample is one run).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from ..errors import ModelError, ShapeError
from . import register
from .base import Op, Shape, attr, batch_offset, fmt_shape, int_at_least, parse_int, resolve_axis
from .strided import LoopNest, contiguous_strides, loop_nest


# ---------------------------------------------------------------- attribute parsers
def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def int_list(v, where: str) -> tuple[int, ...]:
    """A non-empty list of integers (any sign)."""
    if not isinstance(v, (list, tuple)) or not v or not all(_is_int(d) for d in v):
        raise ModelError(f"{where} must be a non-empty list of integers, got {v!r}")
    return tuple(int(d) for d in v)


def axes_list(v, where: str) -> tuple[int, ...]:
    """An axis, or a non-empty list of axes (as PyTorch counts them: 0 the batch, negative from the end)."""
    if _is_int(v):
        return (int(v),)
    return int_list(v, where)


def optional_axes(v, where: str) -> tuple[int, ...] | None:
    return None if v is None else axes_list(v, where)


def nonzero_steps(v, where: str) -> tuple[int, ...] | None:
    if v is None:
        return None
    steps = int_list(v, where)
    if 0 in steps:
        raise ModelError(f"{where} must not contain 0 (a step of 0 never advances), got {list(steps)}")
    return steps


def split_sizes(v, where: str) -> int | tuple[int, ...]:
    """torch.split's split_size_or_sections: a piece size >= 1, or the list of every piece's size."""
    if _is_int(v):
        return int_at_least(1)(v, where)
    if not isinstance(v, (list, tuple)) or not v or not all(_is_int(d) and d >= 0 for d in v):
        raise ModelError(f"{where} must be an integer >= 1 or a non-empty list of integers >= 0, got {v!r}")
    return tuple(int(d) for d in v)


def int_or_int_list(v, where: str) -> int | tuple[int, ...]:
    if _is_int(v):
        return int(v)
    return int_list(v, where)


# ---------------------------------------------------------------- the shared copy kernel
def copy_args(out_shape: Shape, in_strides: list[int], in_offset: int) -> dict:
    """templates/ops/copy.c.j2's loops: y in order, x0 read with `in_strides` (one per output axis, in floats)
    from `in_offset`; the innermost loop becomes one memcpy of `run` floats when both walk it contiguously."""
    nest = loop_nest(out_shape, [contiguous_strides(out_shape), in_strides], [0, in_offset])
    run = 0
    if nest.strides[0][-1] == 1 and nest.strides[1][-1] == 1:
        run = nest.bounds[-1]
        nest = LoopNest(nest.bounds[:-1], tuple(s[:-1] for s in nest.strides), nest.offsets)
    return {"run": run, **nest.template_args()}


def piece_args(layer, in_shape: Shape, out_shape: Shape, axis: int, start: int) -> dict:
    """The copy of elements [start, start + out_shape[axis]) along per-sample axis `axis`."""
    strides = contiguous_strides(in_shape)
    return copy_args(out_shape, strides, start * strides[axis])


# ---------------------------------------------------------------- slice
@dataclass(frozen=True)
class SliceAttrs:
    axes: tuple[int, ...] = attr(axes_list, doc="the axes to slice (0 is the batch, 1 the channels; negative counts "
                                                "from the end), each at most once")
    starts: tuple[int, ...] = attr(int_list, doc="per axis, the first index (negative counts from the end; clamped "
                                                 "to the axis, as Python slices and ONNX Slice do)")
    ends: tuple[int, ...] = attr(int_list, doc="per axis, the index to stop before (negative counts from the end; "
                                               "past the size is clamped)")
    steps: tuple[int, ...] | None = attr(nonzero_steps, None, doc="per axis, the step (negative walks backwards "
                                                                   "from `starts`); none: 1 on every axis")


@register
class Slice(Op):
    name = "slice"
    onnx_types = ("Slice",)
    Attrs = SliceAttrs
    template = "ops/copy.c.j2"
    doc = ("the elements starts:ends:steps of the given axes, x[..., a:b:s, ...] as Python slicing, torch.narrow and "
           "ONNX Slice (negative indices count from the end, ends past the size are clamped); a copy")

    def ranges(self, layer, shape: Shape) -> dict[int, range]:
        """Per sliced per-sample axis, the indices it keeps."""
        a = layer.attrs
        steps = a.steps if a.steps is not None else (1,) * len(a.axes)
        for field, values in (("starts", a.starts), ("ends", a.ends), ("steps", steps)):
            if len(values) != len(a.axes):
                raise ShapeError(f"{layer.where}: attribute '{field}' has {len(values)} value(s) but 'axes' "
                                 f"{list(a.axes)} names {len(a.axes)}; give one per axis")
        out: dict[int, range] = {}
        for axis, start, end, step in zip(a.axes, a.starts, a.ends, steps):
            k = resolve_axis(layer, "axes", axis, shape)
            if k in out:
                raise ShapeError(f"{layer.where}: attribute 'axes' {list(a.axes)} names axis "
                                 f"{k + batch_offset(layer)} twice")
            kept = range(*slice(start, end, step).indices(shape[k]))
            if not kept:
                raise ShapeError(f"{layer.where}: attributes 'starts' {start}, 'ends' {end}, 'steps' {step} select "
                                 f"nothing of axis {axis} (size {shape[k]}): an empty tensor")
            out[k] = kept
        return out

    def infer_shape(self, layer, in_shapes):
        shape = in_shapes[0]
        ranges = self.ranges(layer, shape)
        return tuple(len(ranges[k]) if k in ranges else d for k, d in enumerate(shape))

    def formula(self, layer, in_shapes, out_shape):
        ranges = self.ranges(layer, in_shapes[0])
        off = batch_offset(layer)
        return ", ".join(f"axis {k + off}: {r.start}:{r.stop if r.stop >= 0 else ''}:{r.step} of {in_shapes[0][k]} "
                         f"-> {len(r)}" for k, r in sorted(ranges.items()))

    def reference(self, layer, inputs, weights):
        x = inputs[0]
        index = [slice(None)] * x.ndim
        for k, r in self.ranges(layer, x.shape[1:]).items():
            index[k + 1] = slice(r.start, r.stop if r.stop >= 0 else None, r.step)
        return x[tuple(index)]

    def kernel_args(self, layer, in_shapes, out_shape):
        shape = in_shapes[0]
        ranges, strides = self.ranges(layer, shape), contiguous_strides(shape)
        offset = sum(r.start * strides[k] for k, r in ranges.items())
        return copy_args(out_shape, [s * ranges[k].step if k in ranges else s for k, s in enumerate(strides)], offset)


# ---------------------------------------------------------------- split, chunk
class _Piece(Op):
    """One piece of an axis cut into consecutive pieces (`sizes`), the one numbered `index`."""
    template = "ops/copy.c.j2"

    def axis(self, layer, shape: Shape) -> int:
        return resolve_axis(layer, "axis", layer.attrs.axis, shape)

    def sizes(self, layer, size: int) -> list[int]:
        raise NotImplementedError

    def piece(self, layer, shape: Shape) -> tuple[int, int, int]:
        """(per-sample axis, first index, length) of the piece this layer computes."""
        axis = self.axis(layer, shape)
        sizes = self.sizes(layer, shape[axis])
        index = layer.attrs.index
        if not -len(sizes) <= index < len(sizes):
            raise ShapeError(f"{layer.where}: attribute 'index' = {index}, but {self.how(layer, shape[axis])} "
                             f"cuts axis {layer.attrs.axis} (size {shape[axis]}) into {len(sizes)} piece(s) "
                             f"{sizes}; index is 0..{len(sizes) - 1}")
        index %= len(sizes)
        if sizes[index] == 0:
            raise ShapeError(f"{layer.where}: piece {index} of {sizes} is empty")
        return axis, sum(sizes[:index]), sizes[index]

    def how(self, layer, size: int) -> str:
        raise NotImplementedError

    def infer_shape(self, layer, in_shapes):
        axis, _, length = self.piece(layer, in_shapes[0])
        return in_shapes[0][:axis] + (length,) + in_shapes[0][axis + 1:]

    def formula(self, layer, in_shapes, out_shape):
        axis, start, length = self.piece(layer, in_shapes[0])
        return (f"axis {layer.attrs.axis}: {self.how(layer, in_shapes[0][axis])}, piece {layer.attrs.index} = "
                f"[{start}, {start + length})")

    def reference(self, layer, inputs, weights):
        axis, start, length = self.piece(layer, inputs[0].shape[1:])
        return np.take(inputs[0], np.arange(start, start + length), axis=axis + 1)

    def kernel_args(self, layer, in_shapes, out_shape):
        axis, start, _ = self.piece(layer, in_shapes[0])
        return piece_args(layer, in_shapes[0], out_shape, axis, start)


@dataclass(frozen=True)
class SplitAttrs:
    split_size_or_sections: int | tuple[int, ...] = attr(
        split_sizes, doc="as torch.split: the size of every piece (the last may be smaller), or the list of the "
                         "pieces' sizes, which must add up to the axis")
    index: int = attr(parse_int, doc="the piece this layer computes, 0 first (negative counts from the last): one "
                                     "layer per output of the split")
    axis: int = attr(parse_int, 1, doc="the axis to split, as torch.split's dim: 1 = channels (0 is the batch; "
                                       "negative counts from the end)")


@register
class Split(_Piece):
    name = "split"
    onnx_types = ("Split",)  # the handler makes `chunk` layers when the node gives no sizes
    Attrs = SplitAttrs
    doc = ("piece `index` of torch.split(x, split_size_or_sections, dim=axis) (ONNX Split with `split`); one layer "
           "per piece, each a copy of its own range")

    def sizes(self, layer, size):
        s = layer.attrs.split_size_or_sections
        if isinstance(s, int):
            return [s] * (size // s) + ([size % s] if size % s else [])
        if sum(s) != size:
            raise ShapeError(f"{layer.where}: attribute 'split_size_or_sections' {list(s)} adds up to "
                             f"{' + '.join(map(str, s))} = {sum(s)}, but axis {layer.attrs.axis} has size {size}")
        return list(s)

    def how(self, layer, size):
        s = layer.attrs.split_size_or_sections
        return f"split_size_or_sections {s if isinstance(s, int) else list(s)}"


@dataclass(frozen=True)
class ChunkAttrs:
    chunks: int = attr(int_at_least(1), doc="as torch.chunk: cut into pieces of ceil(size / chunks) (the last may "
                                            "be smaller, and there may be fewer than `chunks`)")
    index: int = attr(parse_int, doc="the piece this layer computes, 0 first (negative counts from the last): one "
                                     "layer per chunk")
    axis: int = attr(parse_int, 1, doc="the axis to cut, as torch.chunk's dim: 1 = channels (0 is the batch; "
                                       "negative counts from the end)")


@register
class Chunk(_Piece):
    name = "chunk"
    Attrs = ChunkAttrs
    doc = ("piece `index` of torch.chunk(x, chunks, dim=axis) (ShuffleNet's channel split; ONNX Split without "
           "`split`); one layer per chunk, each a copy of its own range")

    def sizes(self, layer, size):
        each = -(-size // layer.attrs.chunks)
        return [each] * (size // each) + ([size % each] if size % each else [])

    def how(self, layer, size):
        return f"chunks {layer.attrs.chunks} of ceil({size}/{layer.attrs.chunks}) = {-(-size // layer.attrs.chunks)}"


# ---------------------------------------------------------------- gather
@dataclass(frozen=True)
class GatherAttrs:
    indices: int | tuple[int, ...] = attr(int_or_int_list, doc="the indices to take along `axis` (negative count "
                                                               "from the end): a list keeps the axis with one entry "
                                                               "per index (torch.index_select), one integer removes "
                                                               "it (torch.select)")
    axis: int = attr(parse_int, 1, doc="the axis to index, as torch.index_select's dim: 1 = channels (0 is the batch; "
                                       "negative counts from the end)")


@register
class Gather(Op):
    name = "gather"
    onnx_types = ("Gather",)
    Attrs = GatherAttrs
    template = "ops/gather.c.j2"
    doc = ("the elements at constant `indices` along `axis`, x[..., indices, ...] as torch.index_select (a list), "
           "torch.select (one integer) and ONNX Gather with a constant indices tensor; a copy")

    def positions(self, layer, shape: Shape) -> tuple[int, list[int]]:
        """(per-sample axis, the indices as positions 0..size-1)."""
        axis = resolve_axis(layer, "axis", layer.attrs.axis, shape)
        size = shape[axis]
        indices = layer.attrs.indices
        out = []
        for i in (indices,) if isinstance(indices, int) else indices:
            if not -size <= i < size:
                raise ShapeError(f"{layer.where}: attribute 'indices' has {i}, out of range for axis "
                                 f"{layer.attrs.axis} of size {size} (valid: {-size}..{size - 1})")
            out.append(i % size)
        return axis, out

    def infer_shape(self, layer, in_shapes):
        shape = in_shapes[0]
        axis, positions = self.positions(layer, shape)
        if isinstance(layer.attrs.indices, int):
            if len(shape) == 1:
                raise ShapeError(f"{layer.where}: one index removes axis {layer.attrs.axis}, the only per-sample axis "
                                 f"of {fmt_shape(shape)}; give 'indices' as a list to keep it")
            return shape[:axis] + shape[axis + 1:]
        return shape[:axis] + (len(positions),) + shape[axis + 1:]

    def formula(self, layer, in_shapes, out_shape):
        _, positions = self.positions(layer, in_shapes[0])
        shown = ", ".join(map(str, positions[:8])) + (", ..." if len(positions) > 8 else "")
        return f"axis {layer.attrs.axis}: [{shown}] of {fmt_shape(in_shapes[0])} -> {fmt_shape(out_shape)}"

    def reference(self, layer, inputs, weights):
        axis, positions = self.positions(layer, inputs[0].shape[1:])
        taken = np.take(inputs[0], positions, axis=axis + 1)
        return taken.squeeze(axis + 1) if isinstance(layer.attrs.indices, int) else taken

    def kernel_args(self, layer, in_shapes, out_shape):
        # Per index of the axes before `axis` (outer), each index j copies one block of `inner` floats.
        shape = in_shapes[0]
        axis, positions = self.positions(layer, shape)
        inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
        return {"outer": int(np.prod(shape[:axis], dtype=np.int64)), "count": len(positions), "inner": inner,
                "in_block": shape[axis] * inner, "out_block": len(positions) * inner,
                "offsets": ", ".join(str(p * inner) for p in positions)}


# ---------------------------------------------------------------- channel_shuffle
@dataclass(frozen=True)
class ChannelShuffleAttrs:
    groups: int = attr(int_at_least(1), doc="the number of groups g; the channels C must be a multiple of g")


@register
class ChannelShuffle(Op):
    name = "channel_shuffle"
    per_sample = True
    Attrs = ChannelShuffleAttrs
    template = "ops/copy.c.j2"
    doc = ("ShuffleNet's channel shuffle, as torch.nn.ChannelShuffle(groups): channel i·(C/g) + j goes to j·g + i "
           "(reshape N×g×(C/g)×..., swap axes 1 and 2, reshape back; the optimizer recognizes that "
           "Reshape-Transpose-Reshape, as ONNX exports it, as this op)")

    def infer_shape(self, layer, in_shapes):
        shape, g = in_shapes[0], layer.attrs.groups
        if shape[0] % g:
            raise ShapeError(f"{layer.where}: attribute 'groups' = {g} does not divide the {shape[0]} channels of "
                             f"{fmt_shape(shape)} ({shape[0]} % {g} = {shape[0] % g})")
        return shape

    def formula(self, layer, in_shapes, out_shape):
        c, g = in_shapes[0][0], layer.attrs.groups
        return f"{c} channels = {g} groups × {c // g}: channel i·{c // g} + j -> j·{g} + i"

    def reference(self, layer, inputs, weights):
        x, g = inputs[0], layer.attrs.groups
        n, c, rest = x.shape[0], x.shape[1], x.shape[2:]
        return x.reshape(n, g, c // g, *rest).swapaxes(1, 2).reshape(x.shape)

    def kernel_args(self, layer, in_shapes, out_shape):
        shape, g = in_shapes[0], layer.attrs.groups
        per, rest = shape[0] // g, int(np.prod(shape[1:], dtype=np.int64))
        # Output viewed as (C/g)×g×rest, read from the input viewed as g×(C/g)×rest.
        return copy_args((per, g, rest), [rest, per * rest, 1], 0)
