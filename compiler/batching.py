"""The batched tail: the trailing layers a batch runs once per group of samples, not once per sample.

At batch 1 a dense layer streams its weights from memory (on one thread AlexNet's classifier takes 7.7 of its
17 ms, VGG-11's 16.6 of 110 ms, at about 15 GFLOP/s), and a model that runs a batch a sample at a time streams
them again for every sample. So when a batch has more than one sample, the layers up to the tail (the head)
run per sample as before, one sample per thread, each leaving the tensor the tail starts from in its row of
a group area; then each tail layer runs once over the group's rows: a kernel with a batched form
(KernelChoice.rows_template, from Kernel.rows_template_for: dense_blocked's reads every weight once per
group) takes them all in one call,
any other is called once per row. Every row gets the bits its sample gets alone, so a result does not depend
on the batch size or the thread count.

The tail is the longest trailing chain of computed layers, each reading only the one before it (through
views, such as a flatten, that nothing else reads), ending at a model output that nothing reads and that is
no other output's storage, and starting at a layer with a batched form; its layers need no arena scratch.
It is kept only if its weights outgrow the target's L2 cache: below that, samples one after another read
them from L2.

plan_batch_tail decides it (the pipeline calls it after kernel selection, for a shared-library build that is
not a profiling one); plan_memory lays out the group area; lower and the templates (model.c.j2) follow.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ir import Graph
from .kernels.select import KernelPlan

GROUP_SAMPLES = 8  # samples per group: how many rows a batched kernel reads each weight for


@dataclass(frozen=True)
class BatchTail:
    """The trailing layers a batch runs once per group of `group` samples, in order; `source`: the tensor they
    start from, which the head leaves for them (per sample)."""
    layers: tuple[str, ...]
    source: str
    group: int
    weight_bytes: int  # the tail's constant arrays


def _input_root(graph: Graph, name: str) -> tuple[str, list[str]]:
    """The layer whose tensor `name` reads (following views back), and the views on the way."""
    views = []
    while graph.layer(name).spec.is_view:
        views.append(name)
        name = graph.layer(name).inputs[0]
    return name, views


def _tail_layer(graph: Graph, kernels: KernelPlan, name: str) -> bool:
    """Whether layer `name` can run row by row over a group: one input, per sample, no scratch."""
    layer, choice = graph.layer(name), kernels[name]
    return len(layer.inputs) == 1 and graph.repeats(name) == 1 and choice.scratch_floats == 0


def plan_batch_tail(graph: Graph, kernels: KernelPlan, group: int = GROUP_SAMPLES) -> BatchTail | None:
    """The model's batched tail (module doc), or None if it has none worth running per group."""
    if not graph.batched:
        return None
    computed = [layer.name for layer in graph.layers() if layer.name in kernels]
    if not computed:
        return None
    last = computed[-1]
    if graph.outputs.count(last) != 1 or graph.consumers(last) or not _tail_layer(graph, kernels, last):
        return None
    chain = [last]
    source = graph.layer(last).inputs[0]
    while True:
        root, views = _input_root(graph, source)
        reads = [chain[0]] if not views else [views[-1]]
        if (root not in kernels or root in graph.outputs or not _tail_layer(graph, kernels, root)
                or any(v in graph.outputs for v in views) or graph.consumers(root) != reads
                or any(graph.consumers(v) != [w] for v, w in zip(views[1:], views))):
            break
        if views and graph.consumers(views[0]) != [chain[0]]:
            break
        chain.insert(0, root)
        source = graph.layer(root).inputs[0]
    while chain != computed[len(computed) - len(chain):]:  # a head layer placed between two of the chain's
        chain.pop(0)
    while chain and kernels[chain[0]].rows_template is None:  # the tail starts at a batched layer
        chain.pop(0)
    if not chain:
        return None
    source = graph.layer(chain[0]).inputs[0]
    if graph.layer(_input_root(graph, source)[0]).spec.is_constant:
        return None
    weight_bytes = sum(4 * int(np.prod(array.shape)) for name in chain
                       for array in graph.layer_weights(name).values())
    if weight_bytes <= kernels.target.l2_bytes:
        return None
    return BatchTail(tuple(chain), source, group, weight_bytes)
