"""A layered (Sugiyama-style) drawing of a DAG, top to bottom, in pure Python: pictures without Graphviz.

1. Layers: each node one layer below its lowest input (longest path from the inputs); a node without
   inputs, one layer above its first reader.
2. An edge that spans several layers passes through one narrow dummy node per layer it crosses.
3. Order within a layer: barycentre sweeps down and up; the order with the fewest crossings is kept.
4. x positions: the longest path (the network's main line) is one straight column; every other node
   is pulled to the mean x of its neighbours in the layer swept from, keeping the layer's order and
   spacing (a weighted isotonic regression, solved exactly by pooling adjacent violators).
The result gives each node its box and each edge its polyline, for draw.py to write as SVG.
"""
from __future__ import annotations

from dataclasses import dataclass, field

NODE_GAP = 24.0  # horizontal space between boxes
LAYER_GAP = 44.0  # vertical space between layers (edges and their labels run there)
DUMMY_WIDTH = 8.0
SWEEPS = 12


@dataclass
class Box:
    width: float
    height: float
    x: float = 0.0  # centre
    y: float = 0.0  # top


@dataclass
class Layout:
    boxes: dict[str, Box]
    edges: dict[tuple[str, str], list[tuple[float, float]]]  # (source, target) -> points, source first
    width: float
    height: float
    layers: list[list[str]] = field(default_factory=list)  # real nodes per layer, left to right
    crossings: int = 0


def layered_layout(nodes: list[str], edges: list[tuple[str, str]], sizes: dict[str, tuple[float, float]]) -> Layout:
    """Place `nodes` (in topological order) with `sizes` (width, height) and route `edges` (source, target)."""
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    for s, t in edges:
        preds[t].append(s)
    rank: dict[str, int] = {}
    for n in nodes:
        rank[n] = 1 + max((rank[p] for p in preds[n]), default=-1)
    # A node without inputs (a constant operand) sits just above its first reader, not at the top
    # with an edge down through every layer between.
    first_reader: dict[str, int] = {}
    for s, t in edges:
        first_reader[s] = min(first_reader.get(s, rank[t]), rank[t])
    for n in nodes:
        if not preds[n] and n in first_reader:
            rank[n] = first_reader[n] - 1

    # Long edges become chains through dummy nodes, one per layer crossed.
    chains: dict[tuple[str, str], list[str]] = {}
    width: dict[str, float] = {n: sizes[n][0] for n in nodes}
    rank_of = dict(rank)
    up: dict[str, list[str]] = {n: [] for n in nodes}
    down: dict[str, list[str]] = {n: [] for n in nodes}
    for s, t in edges:
        chain = [s]
        for r in range(rank[s] + 1, rank[t]):
            d = f"\0dummy{len(width)}"
            width[d], rank_of[d] = DUMMY_WIDTH, r
            up[d], down[d] = [], []
            chain.append(d)
        chain.append(t)
        for a, b in zip(chain, chain[1:]):
            down[a].append(b)
            up[b].append(a)
        chains[(s, t)] = chain

    layers: list[list[str]] = [[] for _ in range(max(rank_of.values(), default=-1) + 1)]
    for n in nodes:  # real nodes in topological order, then dummies in edge order
        layers[rank_of[n]].append(n)
    for chain in chains.values():
        for d in chain[1:-1]:
            layers[rank_of[d]].append(d)

    layers, crossings = _order(layers, up, down)
    x = _positions(layers, up, down, width, _spine(nodes, preds))
    heights = [max((sizes[n][1] for n in layer if n in sizes), default=0.0) for layer in layers]
    tops, y = [], LAYER_GAP / 2
    for h in heights:
        tops.append(y)
        y += h + LAYER_GAP
    left = min((x[n] - width[n] / 2 for n in x), default=0.0)
    boxes = {}
    for r, layer in enumerate(layers):
        for n in layer:
            if n in sizes:  # a real node: centred vertically in its layer
                boxes[n] = Box(sizes[n][0], sizes[n][1], x[n] - left + NODE_GAP / 2, tops[r] + (heights[r] - sizes[n][1]) / 2)
    routes = {}
    for (s, t), chain in chains.items():
        points = [(boxes[s].x, boxes[s].y + boxes[s].height)]
        for d in chain[1:-1]:  # straight down through each crossed layer
            r = rank_of[d]
            points += [(x[d] - left + NODE_GAP / 2, tops[r]), (x[d] - left + NODE_GAP / 2, tops[r] + heights[r])]
        points.append((boxes[t].x, boxes[t].y))
        routes[(s, t)] = points
    right = max((x[n] + width[n] / 2 for n in x), default=0.0)
    real = [[n for n in layer if n in sizes] for layer in layers]
    return Layout(boxes, routes, right - left + NODE_GAP, y - LAYER_GAP / 2, real, crossings)


def _crossings(upper: list[str], lower: list[str], down: dict[str, list[str]]) -> int:
    pos = {n: i for i, n in enumerate(lower)}
    ends = [pos[t] for s in upper for t in down[s] if t in pos]
    # pairs (i < j) of edges whose lower ends are in the opposite order: count inversions by merge sort
    return _inversions(ends)


def _inversions(a: list[int]) -> int:
    if len(a) < 2:
        return 0
    mid = len(a) // 2
    left, right = a[:mid], a[mid:]
    count = _inversions(left) + _inversions(right)
    i = j = 0
    for k in range(len(a)):
        if j >= len(right) or (i < len(left) and left[i] <= right[j]):
            a[k] = left[i]
            i += 1
        else:
            a[k] = right[j]
            j += 1
            count += len(left) - i
    return count


def _total_crossings(layers, down) -> int:
    return sum(_crossings(a, b, down) for a, b in zip(layers, layers[1:]))


def _order(layers: list[list[str]], up, down) -> tuple[list[list[str]], int]:
    """Barycentre ordering: sweep down (by the layer above) and up (by the layer below); keep the best."""
    best, best_count = [list(layer) for layer in layers], _total_crossings(layers, down)
    current = [list(layer) for layer in layers]
    for sweep in range(SWEEPS):
        if best_count == 0:
            break
        downward = sweep % 2 == 0
        indices = range(1, len(current)) if downward else range(len(current) - 2, -1, -1)
        for r in indices:
            fixed = current[r - 1] if downward else current[r + 1]
            pos = {n: i for i, n in enumerate(fixed)}
            neighbours = up if downward else down

            def barycentre(item):
                i, n = item
                ps = [pos[m] for m in neighbours[n] if m in pos]
                return (sum(ps) / len(ps) if ps else i, i)  # no neighbours: keep its place

            current[r] = [n for _, n in sorted(enumerate(current[r]), key=barycentre)]
        count = _total_crossings(current, down)
        if count < best_count:
            best, best_count = [list(layer) for layer in current], count
    return best, best_count


def _spine(nodes: list[str], preds: dict[str, list[str]]) -> set[str]:
    """The longest chain of nodes through the graph (its main path), drawn as one straight column."""
    length: dict[str, int] = {}
    via: dict[str, str | None] = {}
    for n in nodes:  # topological order
        best = max(preds[n], key=lambda p: length[p], default=None)
        length[n] = 1 + (length[best] if best is not None else 0)
        via[n] = best
    end = max(nodes, key=lambda n: length[n], default=None)
    spine = set()
    while end is not None:
        spine.add(end)
        end = via[end]
    return spine


def _positions(layers, up, down, width, spine: set[str]) -> dict[str, float]:
    """x centres: the spine stays at 0; alternate sweeps pull every other node under (or over) its
    neighbours, keeping each layer's order and spacing. A pull by one neighbour at a time would let the
    whole drawing drift sideways, layer by layer, in a deep network; the spine anchors it."""
    x: dict[str, float] = {}
    for layer in layers:  # start packed around the spine
        pos = 0.0
        for n in layer:
            x[n] = pos + width[n] / 2
            pos += width[n] + NODE_GAP
        shift = next((x[n] for n in layer if n in spine), 0.0)
        for n in layer:
            x[n] -= shift
    for sweep in range(2 * SWEEPS):
        downward = sweep % 2 == 0
        indices = range(1, len(layers)) if downward else range(len(layers) - 2, -1, -1)
        for r in indices:
            layer = layers[r]
            neighbours = up if downward else down
            want, weight = [], []
            for n in layer:
                ms = neighbours[n] or (down[n] if downward else up[n])
                want.append(0.0 if n in spine else sum(x[m] for m in ms) / len(ms) if ms else x[n])
                weight.append(SPINE_WEIGHT if n in spine else 1.0)
            for n, value in zip(layer, _place(want, weight, [width[n] for n in layer])):
                x[n] = value
    return x


SPINE_WEIGHT = 1000.0


def _place(want: list[float], weight: list[float], widths: list[float]) -> list[float]:
    """Centres as close as possible (weighted least squares) to `want`, in order, at least NODE_GAP apart.

    With offsets o_i (the least distance from the first centre to the i-th), y_i = x_i - o_i must be
    non-decreasing: isotonic regression of want_i - o_i, by pooling adjacent violators.
    """
    offsets, total = [], 0.0
    for i, w in enumerate(widths):
        if i:
            total += (widths[i - 1] + w) / 2 + NODE_GAP
        offsets.append(total)
    blocks: list[list[float]] = []  # [weighted mean, total weight, count]
    for target, w in zip((v - o for v, o in zip(want, offsets)), weight):
        blocks.append([target, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, total_w, count = blocks.pop()
            last = blocks[-1]
            last[0] = (last[0] * last[1] + mean * total_w) / (last[1] + total_w)
            last[1] += total_w
            last[2] += count
    ys = [mean for mean, _, count in blocks for _ in range(int(count))]
    return [y + o for y, o in zip(ys, offsets)]
