"""Agglomerative contextual decomposition (ACD) over transform coefficients.

ACD (Singh, Murdoch, Yu, ICLR 2019) builds a hierarchy of feature groups from CD scores.
Here the features are *units* of transform coefficients: tiles of ``tile`` coefficients
in every coefficient array (band) of a wavelet transform, so a group is a region of
scale-space. Units are adjacent when they are neighbours in the same band (8-connectivity
in 2D), when they overlap at the same level in another band (the approximation counts
as the coarsest level), or when they overlap across neighbouring levels (parent and child
in the wavelet tree). The steps follow acd's ``agg_2d`` (``seed_systems.md`` §3.1):

1. score every unit with TRIM + CD; select the units at or above the ``percentile``
   (lowered by 15 once a third of the units is selected, and by 4 until something is);
2. ``num_iters`` times: take the connected components ``C`` of the selected units; score
   every component and every component grown by one unselected neighbour ``u``; rank the
   neighbours by their gain ``s(C + u) - s(C)`` (the best over the components they touch,
   where acd keeps the last one) and select again;
3. merge the final components pairwise, each time the pair with the largest *interaction*
   ``s(C1 + C2) - s(C1) - s(C2)``, until one is left.

acd's 2D pixel smoothing (adding pixels with three selected neighbours) has no analogue
over bands and is left out. Every node of the hierarchy records its CD score and its
interaction, the score minus the sum of its children's scores (zero for a model that is
linear in its input). :func:`acd_hierarchy` returns plain JSON-able data;
:func:`plot_hierarchy` draws it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from shared.coeffs import flatten_coeffs
from shared.interpret.trim_cd import (
    CoefficientGroup,
    block_groups,
    select_target,
    trim_cd,
)

__all__ = ["acd_hierarchy", "node_group", "plot_hierarchy", "unit_adjacency"]


# -- units and their adjacency --------------------------------------------------------------------
def _overlap(a0: float, a1: float, b0: float, b1: float) -> bool:
    return a0 < b1 and b0 < a1


def _adjacent(u: dict[str, Any], v: dict[str, Any], tile: Sequence[int]) -> bool:
    if u["leaf"] == v["leaf"]:
        steps = [abs(a // t - b // t) for a, b, t in zip(u["start"], v["start"], tile, strict=True)]
        return max(steps) == 1
    if abs(u["level"] - v["level"]) > 1:
        return False
    # Coefficient k of level j covers positions [k 2^j, (k + 1) 2^j) of the input.
    su, sv = 2.0 ** u["level"], 2.0 ** v["level"]
    return all(
        _overlap(a0 * su, a1 * su, b0 * sv, b1 * sv)
        for a0, a1, b0, b1 in zip(u["start"], u["stop"], v["start"], v["stop"], strict=True)
    )


def unit_adjacency(units: Sequence[dict[str, Any]], tile: Sequence[int]) -> list[set[int]]:
    """Neighbours of every unit (see the module docstring for the rules).

    Parameters
    ----------
    units : sequence of dict
        Unit descriptions with ``leaf``, ``level``, ``start``, ``stop`` (block group info).
    tile : sequence of int
        Tile size per spatial axis.

    Examples
    --------
    >>> a = {"leaf": 0, "level": 1, "start": [0], "stop": [2]}
    >>> b = {"leaf": 0, "level": 1, "start": [2], "stop": [4]}
    >>> c = {"leaf": 1, "level": 2, "start": [0], "stop": [2]}
    >>> unit_adjacency([a, b, c], [2])
    [{1, 2}, {0, 2}, {0, 1}]
    """
    neighbours: list[set[int]] = [set() for _ in units]
    for i, j in itertools.combinations(range(len(units)), 2):
        if _adjacent(units[i], units[j], tile):
            neighbours[i].add(j)
            neighbours[j].add(i)
    return neighbours


def _components(selected: set[int], neighbours: list[set[int]]) -> list[frozenset[int]]:
    seen: set[int] = set()
    comps = []
    for start in sorted(selected):
        if start in seen:
            continue
        stack, comp = [start], set()
        while stack:
            u = stack.pop()
            if u in comp:
                continue
            comp.add(u)
            stack.extend(v for v in neighbours[u] if v in selected and v not in comp)
        seen |= comp
        comps.append(frozenset(comp))
    return comps


def _threshold(scores: np.ndarray, percentile: float) -> np.ndarray:
    """acd's selection: units at or above a percentile of the unselected (non-NaN) scores."""
    if np.all(np.isnan(scores)):
        return np.zeros(scores.shape, dtype=bool)
    if np.isnan(scores).sum() > scores.size / 3:
        percentile -= 15
    chosen = np.zeros(scores.shape, dtype=bool)
    while not chosen.any():
        thresh = np.nanpercentile(scores, max(percentile, 0.0))
        chosen = np.nan_to_num(scores, nan=-np.inf) >= thresh
        percentile -= 4
    return chosen


# -- scoring ----------------------------------------------------------------------------------
class _Scorer:
    """CD scores (mean over the inputs) of unions of units, in batches of groups."""

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        transform: Any,
        units: list[CoefficientGroup],
        target: int | None,
        chunk_size: int | None,
        group_batch: int,
    ) -> None:
        self.model, self.x, self.transform = model, x, transform
        self.units, self.target = units, target
        self.chunk_size, self.group_batch = chunk_size, group_batch
        self.cache: dict[frozenset[int], float] = {}
        self.n_passes = 0

    def group(self, members: frozenset[int]) -> CoefficientGroup:
        return node_group(self.units, members)

    def __call__(self, sets: Sequence[frozenset[int]]) -> list[float]:
        todo = list(dict.fromkeys(s for s in sets if s not in self.cache))
        for i in range(0, len(todo), self.group_batch):
            batch = todo[i : i + self.group_batch]
            with torch.no_grad():
                res = trim_cd(
                    self.model,
                    self.x,
                    self.transform,
                    [self.group(s) for s in batch],
                    chunk_size=self.chunk_size,
                )
            self.n_passes += 1
            s = select_target(res.rel, self.target).reshape(len(batch), self.x.shape[0], -1)
            if s.shape[-1] != 1:
                raise ValueError(
                    "the model has several outputs; choose one with target=<output index>"
                )
            s = s[..., 0]
            for members, value in zip(batch, s.mean(1).tolist(), strict=True):
                self.cache[members] = float(value)
        return [self.cache[s] for s in sets]


def node_group(units: Sequence[CoefficientGroup], members: frozenset[int] | Sequence[int]):
    """The coefficient group of a set of units (the union of their masks).

    Examples
    --------
    >>> from shared import DWT1d
    >>> from shared.interpret.trim_cd import block_groups
    >>> units = block_groups(DWT1d("haar", levels=1)(torch.randn(1, 1, 8)), 2)
    >>> g = node_group(units, [0, 1])
    >>> g.masks[0].tolist(), g.masks[1]
    ([1.0, 1.0, 1.0, 1.0], 0.0)
    """
    members = sorted(members)
    n_leaves = len(units[members[0]].masks)
    masks: list[Any] = [0.0] * n_leaves
    for m in members:
        for leaf, mask in enumerate(units[m].masks):
            if isinstance(mask, Tensor):
                masks[leaf] = mask.clone() if isinstance(masks[leaf], float) else masks[leaf] + mask
    name = "+".join(units[m].name for m in members)
    return CoefficientGroup(name, tuple(masks), {"kind": "units", "units": list(members)})


# -- the hierarchy ----------------------------------------------------------------------------
class _Tree:
    def __init__(self, unit_scores: list[float]) -> None:
        self.nodes: list[dict[str, Any]] = [
            {
                "id": u,
                "units": [u],
                "score": s,
                "interaction": 0.0,
                "children": [],
                "parent": None,
                "created": 0,
            }
            for u, s in enumerate(unit_scores)
        ]
        self.of_set: dict[frozenset[int], int] = {
            frozenset([u]): u for u in range(len(unit_scores))
        }

    def node(self, members: frozenset[int], score: float, children: list[int], when: int) -> int:
        known = self.of_set.get(members)
        if known is not None:
            return known
        node_id = len(self.nodes)
        child_sum = sum(self.nodes[c]["score"] for c in children)
        self.nodes.append(
            {
                "id": node_id,
                "units": sorted(members),
                "score": score,
                "interaction": score - child_sum,
                "children": children,
                "parent": None,
                "created": when,
            }
        )
        for c in children:
            self.nodes[c]["parent"] = node_id
        self.of_set[members] = node_id
        return node_id

    def children_of(self, members: frozenset[int], previous: list[frozenset[int]]) -> list[int]:
        """Previous components inside ``members``, and the new units as leaves."""
        inside = [p for p in previous if p <= members]
        covered = set().union(*inside) if inside else set()
        return [self.of_set[p] for p in inside] + sorted(members - covered)


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values.tolist()]


def acd_hierarchy(
    model: nn.Module,
    x: Tensor,
    transform: Any,
    *,
    tile: int | Sequence[int] = 4,
    target: int | None = None,
    percentile: float = 90.0,
    num_iters: int = 5,
    absolute: bool = False,
    chunk_size: int | None = None,
    group_batch: int = 256,
) -> dict[str, Any]:
    """A hierarchy of scale-space coefficient groups built by agglomerative CD.

    Parameters
    ----------
    model : nn.Module
        In eval mode, on the device and in the dtype of ``x``.
    x : Tensor
        The input(s) to explain, ``(N, ...)``; scores are means over the ``N`` inputs.
    transform : object
        A linear wavelet transform with ``forward``/``inverse`` (:class:`~shared.DWT1d`,
        :class:`~shared.DWT2d`).
    tile : int or sequence of int, default 4
        Unit size in coefficients along each spatial axis.
    target : int, optional
        Output index to explain (required when the model has several outputs).
    percentile : float, default 90
        Selection percentile of acd's thresholding.
    num_iters : int, default 5
        Growth iterations before the final pairwise merging.
    absolute : bool, default False
        Rank by ``|score|`` (for signed regression outputs) instead of the signed score.
    chunk_size : int, optional
        Rows per forward pass of the CD engine.
    group_batch : int, default 256
        Groups scored per call (bounds the memory of the coefficient masks).

    Returns
    -------
    dict
        JSON-able: ``units`` (name, leaf, level, band, start, stop, score), ``nodes`` (id,
        units, score, interaction, children, parent, created), ``levels`` (per step: the
        components' node ids, the selected units, the tracked unit scores; growth steps
        then merges), ``root``, ``full_score`` (the score of all coefficients) and the
        settings.

    Examples
    --------
    >>> from shared import DWT1d
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.ReLU(), nn.Linear(4, 1))
    >>> net = net.double().eval()
    >>> x = torch.randn(1, 1, 16, dtype=torch.float64)
    >>> h = acd_hierarchy(net, x, DWT1d("haar", levels=2), tile=2, percentile=80)
    >>> root = h["nodes"][h["root"]]
    >>> root["parent"] is None and len(root["units"]) >= 1
    True
    """
    coeffs = transform(x[:1])
    units = block_groups(coeffs, tile)
    n_spatial = flatten_coeffs(coeffs)[0].ndim - 2
    tile_sizes = [tile] * n_spatial if isinstance(tile, int) else list(tile)
    neighbours = unit_adjacency([u.info for u in units], tile_sizes)
    scorer = _Scorer(model, x, transform, units, target, chunk_size, group_batch)
    every = frozenset(range(len(units)))
    unit_scores = scorer([frozenset([u]) for u in range(len(units))] + [every])[:-1]
    tree = _Tree(unit_scores)

    def rank(values: np.ndarray) -> np.ndarray:
        return np.abs(values) if absolute else values

    track = np.array(unit_scores, dtype=np.float64)
    selected = set(np.flatnonzero(_threshold(rank(track), percentile)).tolist())
    levels: list[dict[str, Any]] = []
    previous: list[frozenset[int]] = []
    for step in range(1, num_iters + 1):
        if len(selected) == len(units):
            break
        comps = _components(selected, neighbours)
        borders = {c: sorted({v for u in c for v in neighbours[u]} - selected) for c in comps}
        grown = [c | {u} for c in comps for u in borders[c]]
        comp_scores = scorer(comps + grown)[: len(comps)]
        ids = [
            tree.node(c, s, tree.children_of(c, previous), step)
            for c, s in zip(comps, comp_scores, strict=True)
        ]
        gains = np.full(len(units), -np.inf)
        for c, s in zip(comps, comp_scores, strict=True):
            for u, s_grown in zip(borders[c], scorer([c | {u} for u in borders[c]]), strict=True):
                gains[u] = max(gains[u], s_grown - s)
        touched = np.isfinite(gains)
        track[touched] = gains[touched]
        track[sorted(selected)] = np.nan
        levels.append(
            {
                "step": step,
                "kind": "grow",
                "components": ids,
                "selected": sorted(selected),
                "unit_scores": _nan_to_none(track),
            }
        )
        selected |= set(np.flatnonzero(_threshold(rank(track), percentile)).tolist())
        previous = comps
    comps = _components(selected, neighbours)
    comp_scores = scorer(comps)
    current = [
        tree.node(c, s, tree.children_of(c, previous), len(levels) + 1)
        for c, s in zip(comps, comp_scores, strict=True)
    ]
    levels.append(
        {
            "step": len(levels) + 1,
            "kind": "grow",
            "components": current,
            "selected": sorted(selected),
        }
    )
    while len(current) > 1:
        pairs = list(itertools.combinations(current, 2))
        unions = [
            frozenset(tree.nodes[a]["units"]) | frozenset(tree.nodes[b]["units"]) for a, b in pairs
        ]
        merged = scorer(unions)
        gains_pairs = [
            s - tree.nodes[a]["score"] - tree.nodes[b]["score"]
            for (a, b), s in zip(pairs, merged, strict=True)
        ]
        best = int(np.argmax(gains_pairs))
        a, b = pairs[best]
        new = tree.node(unions[best], merged[best], [a, b], len(levels) + 1)
        current = [n for n in current if n not in (a, b)] + [new]
        levels.append(
            {
                "step": len(levels) + 1,
                "kind": "merge",
                "components": list(current),
                "merged": [a, b],
            }
        )
    return {
        "method": "acd",
        "target": target,
        "tile": tile_sizes,
        "percentile": percentile,
        "num_iters": num_iters,
        "absolute": absolute,
        "n_inputs": int(x.shape[0]),
        "full_score": scorer([every])[0],
        "units": [
            {"id": i, "name": u.name, **{k: v for k, v in u.info.items() if k != "kind"}}
            | {"score": unit_scores[i]}
            for i, u in enumerate(units)
        ],
        "nodes": tree.nodes,
        "levels": levels,
        "root": current[0],
        "n_cd_calls": scorer.n_passes,
    }


# -- figure -------------------------------------------------------------------------------------
def plot_hierarchy(hierarchy: dict[str, Any], ax: Any = None, *, colorbar: bool = True) -> Any:
    """Draw an ACD hierarchy: one row per step, units along x, colour = component score.

    Units run along the x axis band by band (coarse to fine, as in pywt order); row ``k``
    colours every unit inside a component of step ``k`` with that component's CD score
    (blank where the unit is not selected yet), so components appear, grow and merge
    downwards.

    Parameters
    ----------
    hierarchy : dict
        The output of :func:`acd_hierarchy`.
    ax : matplotlib Axes, optional
        Axes to draw on; a new figure's axes by default.
    colorbar : bool, default True
        Add a colour bar.

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> h = {"units": [{"name": "cA1[0:2]"}, {"name": "cD1[0:2]"}],
    ...      "nodes": [{"units": [0], "score": 1.0}, {"units": [1], "score": -1.0},
    ...                {"units": [0, 1], "score": 0.5}],
    ...      "levels": [{"kind": "grow", "components": [0, 1]},
    ...                 {"kind": "merge", "components": [2]}]}
    >>> ax = plot_hierarchy(h)
    >>> ax.get_ylabel()
    'step'
    >>> matplotlib.pyplot.close(ax.figure)
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3))
    units, nodes, levels = hierarchy["units"], hierarchy["nodes"], hierarchy["levels"]
    grid = np.full((len(levels), len(units)), np.nan)
    for row, level in enumerate(levels):
        for node_id in level["components"]:
            grid[row, nodes[node_id]["units"]] = nodes[node_id]["score"]
    finite = grid[np.isfinite(grid)]
    bound = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    image = ax.imshow(
        grid,
        aspect="auto",
        cmap="RdBu_r",
        norm=TwoSlopeNorm(0.0, -bound, bound),
        interpolation="nearest",
    )
    bands = [u["name"].split("[")[0] for u in units]
    starts = [i for i in range(len(bands)) if i == 0 or bands[i] != bands[i - 1]]
    for s in starts[1:]:
        ax.axvline(s - 0.5, color="0.6", lw=0.5)
    ax.set_xticks(starts)
    ax.set_xticklabels([bands[s] for s in starts], rotation=90, fontsize="small")
    ax.set_yticks(range(len(levels)))
    ax.set_yticklabels([f"{lv['kind']} {k + 1}" for k, lv in enumerate(levels)], fontsize="small")
    ax.set_xlabel("coefficient units (band, then position)")
    ax.set_ylabel("step")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label="CD score")
    return ax
