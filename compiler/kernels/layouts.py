"""Tensor layouts at opt level 2: which tensors are stored channel-blocked instead of C×H×W.

A channel-blocked C×H×W tensor with L lanes is stored [C/L][H][W][L], so one vector load reads one
pixel of L channels. The kernels whose vectors run along the channels use it: the blocked conv stores
its output with whole-vector stores (in C×H×W it scatters them), and the depthwise conv fills every
lane on small maps (its C×H×W kernel runs vectors along a row: a 7-wide row fills 7 of 16 lanes). Pools and
channel concats of whole blocks keep whichever layout their tensors share, so they do not send the convs
around them back to C×H×W.

A tensor is stored channel-blocked when
- it is C×H×W with C a multiple of L, and not a model input or output (the caller sees C×H×W);
- its producer's kernel can write it so and every reader's kernel can read it so
  (`Kernel.blocked_io`; readers include views, which cannot, so what a view shows stays C×H×W; a kernel
  that reads C×H×W only says "plain");
- the kernels that tie two tensors together agree (a pool's input and output, a concat's inputs and output
  are one group): a fused residual is read in the layout of the output
  it is added to (tied tensors are blocked together or not at all), a reader that takes it only "if_out"
  (a 1×1 conv on a large map, whose channel-vector kernel would otherwise scatter its output across the
  planes) writes a blocked output too, and a depthwise conv writes a blocked output only "for_out" of a
  blocked input (from a blocked input it can write either layout).
The memory plan is unchanged: the blocked tensor has the same number of floats.
"""
from __future__ import annotations

from ..ir import Graph


def choose_layouts(graph: Graph, io: dict[str, tuple[str, ...] | None], lanes: int) -> dict[str, int]:
    """Tensor name -> `lanes` for the channel-blocked tensors (absent: C×H×W).

    io: per computed layer, its chosen kernel's `blocked_io` (None: C×H×W only); layers absent from it
    (inputs, views, constants) read and write C×H×W only.
    """
    if not any(io.values()):
        return {}

    def readable(name: str) -> bool:
        for reader in graph.consumers(name):
            modes = io.get(reader)
            if modes is None or any(m == "plain" for src, m in zip(graph.layer(reader).inputs, modes) if src == name):
                return False
        return True

    candidates = set()
    for layer in graph.layers():
        shape = graph.out_shape(layer.name)
        if (io.get(layer.name) is not None and layer.name not in graph.outputs and len(shape) == 3
                and shape[0] % lanes == 0 and readable(layer.name)):
            candidates.add(layer.name)

    # Tied tensors: one group each (union-find); a group is blocked only if all of it can be.
    parent = {name: name for name in graph.nx.nodes}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for name, modes in io.items():
        if modes is None:
            continue
        for src, mode in zip(graph.layer(name).inputs, modes):
            if mode == "same":
                parent[root(src)] = root(name)
    groups: dict[str, list[str]] = {}
    for name in graph.nx.nodes:
        groups.setdefault(root(name), []).append(name)
    chosen = {r for r, members in groups.items() if all(m in candidates for m in members)}
    # "if_out": the input is blocked only where the output is too; "for_out": the output only where the input
    # is. Where one is not, the other's group goes back to C×H×W (until nothing changes).
    changed = True
    while changed:
        changed = False
        for name, modes in io.items():
            if modes is None:
                continue
            for src, mode in zip(graph.layer(name).inputs, modes):
                out_blocked, in_blocked = root(name) in chosen, root(src) in chosen
                if mode == "if_out" and in_blocked and not out_blocked:
                    chosen.discard(root(src))
                    changed = True
                elif mode == "for_out" and out_blocked and not in_blocked:
                    chosen.discard(root(name))
                    changed = True
    return {name: lanes for name in graph.nx.nodes if root(name) in chosen}
