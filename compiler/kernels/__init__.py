"""Kernels: the C implementations a layer can be lowered to, one module per family, each with its template.

A `Kernel` says which ops it computes, which layers it can take (`unsuitable`: hard limits) and which it
wants when choosing automatically (`wanted`: its cost rule), which tensor layouts it reads and writes
(`blocked_io`), the frozen record of integers its template renders (`params`), the arena scratch it
needs and the constant arrays it reads. `select_kernels` (compiler/kernels/select.py) makes the choice
once per layer; memory planning and lowering only read that record.

Kernels register themselves with `@register_kernel`; every module of this package is imported here, so
adding a kernel is one module, one template and its tests. For each op the automatic choice tries the
kernels that compute it in order of `priority` (highest first); `plain` (the op's own template, every
loop literal) takes every layer the others leave.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, ClassVar

import numpy as np

from ..ops.base import Shape
from ..target import Target


class Kernel:
    """One kernel family. Methods get the layer (compiler.ir.Layer), its per-sample input and output shapes
    and the Target."""

    name: ClassVar[str]
    ops: ClassVar[tuple[str, ...]]  # the ops it computes
    template: ClassVar[str] = ""
    priority: ClassVar[int] = 0  # the automatic choice tries higher first
    opt_level: ClassVar[int] = 2  # the lowest opt level that uses it
    doc: ClassVar[str] = ""

    def unsuitable(self, layer, in_shapes: list[Shape], out_shape: Shape, target: Target) -> str | None:
        """Why this kernel cannot compute the layer (None: it can)."""
        return None

    def wanted(self, layer, in_shapes: list[Shape], out_shape: Shape, target: Target) -> str | None:
        """Why the automatic choice takes it for a layer it can compute (None: leave the layer to the next)."""
        return self.doc or self.name

    def blocked_io(self, layer, in_shapes: list[Shape], out_shape: Shape, target: Target) -> tuple[str, ...] | None:
        """Whether it can write its output channel-blocked (compiler/kernels/layouts.py): None if not, else per
        input "any" (read in either layout), "same" (only in the output's layout), "if_out" (blocked only when
        the output is), "for_out" (blocked whenever the output is) or "plain" (C×H×W only)."""
        return None

    def refine(self, layer, in_shapes: list[Shape], out_shape: Shape, target: Target,
               layouts: tuple[int, ...]) -> tuple["Kernel", str] | None:
        """Once the layouts are known: another kernel that should take the layer instead, with the reason."""
        return None

    def template_for(self, layer, params: Any) -> str:
        return self.template

    def rows_template_for(self, layer, params: Any) -> str | None:
        """The template of its batched form, `fn_rows(n, ...)`: the layer over rows 0..n-1 of [n][...] arrays,
        each row with the same bits as `fn` gives that sample (the batched tail, compiler/batching.py).
        None: it has none."""
        return None

    def params(self, layer, in_shapes: list[Shape], out_shape: Shape, target: Target,
               layouts: tuple[int, ...]) -> Any:
        """The frozen record its template renders. layouts: per input, then the output, 0 for C×H×W or L for
        channel-blocked [C/L][H][W][L]."""
        raise NotImplementedError

    def scratch_floats(self, params: Any) -> int:
        """Floats of arena scratch it needs during its own call (0: none)."""
        return 0

    def arrays(self, layer, weights: dict[str, np.ndarray], params: Any) -> dict[str, np.ndarray]:
        """The constant arrays its C reads, by suffix (default: the op's lowered weights)."""
        return layer.spec.lower_weights(layer, weights)

    def uses_thread_pool(self, params: Any) -> bool:
        """Whether its C hands work items to the thread pool (templates/ops/_parallel.c.j2)."""
        return False


KERNELS: dict[str, Kernel] = {}


def register_kernel(cls: type[Kernel]) -> type[Kernel]:
    if cls.name in KERNELS:
        raise RuntimeError(f"kernel {cls.name!r} registered twice")
    KERNELS[cls.name] = cls()
    return cls


def kernels_for(op: str) -> list[Kernel]:
    """The kernels that compute `op`, in the order the automatic choice tries them."""
    return sorted((k for k in KERNELS.values() if op in k.ops or not k.ops),
                  key=lambda k: -k.priority)


for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("select",):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Kernel", "KERNELS", "register_kernel", "kernels_for"]
