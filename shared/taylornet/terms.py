"""Every Taylor term named, as a table; main effects and interactions by input group.

A table row is one monomial coefficient of one layer's polynomial::

    level        1..K coarse-graining levels, K + 1 the readout, 0 the whole net expanded
                 at a point (:func:`local_taylor_table`)
    layer        "level1", ..., "readout" or "net"
    position     "shared" (one set of coefficients for all blocks), block coordinates
                 "i" / "i,j" (per-position layers), or "all" (the readout, the whole net)
    order        0 (bias), 1 (linear), 2 (quadratic), ...
    inputs       the monomial, e.g. "1", "x0[5]", "x0[5]*x1[4]", "h1.2[+0,+1]"; names are
                 absolute positions, or offsets "+o" within the block when shared
    input_index  tuple of the inputs' indices: flat indices into the layer's (C, *S) input
                 map (C order), or block-vector indices when shared
    output       output channel (levels) or output index (readout, net)
    coefficient  the monomial's coefficient: output = sum of coefficient * product(inputs)

PROVISIONAL design (see the package docstring).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import torch
from torch import Tensor

if TYPE_CHECKING:
    from shared.taylornet.net import TaylorLayer, TaylorNet

__all__ = [
    "COLUMNS",
    "group_interactions",
    "group_main_effects",
    "largest_terms",
    "layer_terms_table",
    "local_taylor_table",
    "read_terms_table",
    "terms_table",
]

COLUMNS = [
    "level",
    "layer",
    "position",
    "order",
    "inputs",
    "input_index",
    "output",
    "coefficient",
]


def _rows(
    level: int,
    layer: str,
    position: str,
    order: int,
    monos: Sequence[tuple[int, ...]],
    names: Sequence[str],
    index: Sequence[int],
    coef: np.ndarray,
) -> pd.DataFrame:
    """One table block: ``coef`` is ``(out, n_monomials)``."""
    n_out, n_mono = coef.shape
    inputs = ["*".join(names[a] for a in m) or "1" for m in monos]
    idx = [tuple(index[a] for a in m) for m in monos]
    return pd.DataFrame(
        {
            "level": level,
            "layer": layer,
            "position": position,
            "order": order,
            "inputs": inputs * n_out,
            "input_index": idx * n_out,
            "output": np.repeat(np.arange(n_out), n_mono),
            "coefficient": coef.reshape(-1).astype(np.float64),
        },
        columns=COLUMNS,
    )


def layer_terms_table(
    layer: TaylorLayer,
    *,
    orders: Sequence[int] | None = None,
    expand_shared: bool = False,
) -> pd.DataFrame:
    """The terms of one :class:`TaylorLayer` (columns in the module docstring).

    ``expand_shared=True`` repeats shared coefficients at every block position with
    absolute names and indices, as a per-position layer would list them.

    Examples
    --------
    >>> from shared.taylornet import TaylorLayer
    >>> layer = TaylorLayer(1, 1, spatial=2, quadratic="full")
    >>> layer_terms_table(layer)["inputs"].tolist()
    ['1', 'x0[0]', 'x0[1]', 'x0[0]*x0[0]', 'x0[0]*x0[1]', 'x0[1]*x0[1]']
    """
    orders = list(range(layer.order + 1)) if orders is None else list(orders)
    if layer.shared and layer.n_positions > 1:
        positions: list[int | None] = list(range(layer.n_positions)) if expand_shared else [None]
    else:
        positions = list(range(layer.n_positions))
    coefs = {k: layer.coefficients(k).cpu().numpy() for k in orders}
    frames = []
    for pos in positions:
        names, index = layer.input_names(pos)
        row = 0 if (pos is None or layer.shared) else pos
        label = layer.position_label(pos)
        for k in orders:
            monos = [()] if k == 0 else layer.monomials(k)
            frames.append(
                _rows(layer.level, layer.name, label, k, monos, names, index, coefs[k][row])
            )
    return pd.concat(frames, ignore_index=True)


def terms_table(
    net: TaylorNet,
    *,
    levels: Sequence[int] | None = None,
    orders: Sequence[int] | None = None,
    expand_shared: bool = False,
) -> pd.DataFrame:
    """Every term of a :class:`TaylorNet`'s levels (``1..K``) and readout (``K + 1``).

    Parameters
    ----------
    net : TaylorNet
    levels : sequence of int, optional
        Levels to list; default all.
    orders : sequence of int, optional
        Orders to list; default every order of each layer (orders a layer lacks are skipped).
    expand_shared : bool, default False
        See :func:`layer_terms_table`.

    Examples
    --------
    >>> from shared.taylornet import TaylorNet
    >>> net = TaylorNet(1, 4, n_outputs=1, channels=[2], quadratic="full")
    >>> table = terms_table(net, levels=[1], orders=[2])
    >>> len(table), table["inputs"].iloc[1]
    (6, 'x0[+0]*x0[+1]')
    """
    layers = net.taylor_layers()
    wanted = range(1, len(layers) + 1) if levels is None else levels
    frames = []
    for level in wanted:
        if not 1 <= level <= len(layers):
            raise ValueError(f"level must be in 1..{len(layers)}, got {level}")
        layer = layers[level - 1]
        own = [
            k
            for k in (orders if orders is not None else range(layer.order + 1))
            if k <= layer.order
        ]
        frames.append(layer_terms_table(layer, orders=own, expand_shared=expand_shared))
    return pd.concat(frames, ignore_index=True)


def read_terms_table(path: str | Path) -> pd.DataFrame:
    """Read a terms table written with ``DataFrame.to_csv(path, index=False)``.

    Restores the types a CSV loses: ``position`` and ``inputs`` stay strings,
    ``input_index`` becomes tuples of int again.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from shared.taylornet import TaylorNet
    >>> table = TaylorNet(1, 4, n_outputs=1, channels=2).terms_table()
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "terms.csv"
    >>> table.to_csv(path, index=False)
    >>> read_terms_table(path).equals(table)
    True
    """
    table = pd.read_csv(
        path, dtype={"layer": str, "position": str, "inputs": str}, keep_default_na=False
    )
    table["input_index"] = [
        tuple(int(v) for v in s.strip("()").split(",") if v.strip()) for s in table["input_index"]
    ]
    return table[COLUMNS]


def _group_of(groups: Mapping[int, str] | Sequence[str], default: str | None):
    def lookup(i: int) -> str:
        try:
            return groups[i]
        except (KeyError, IndexError):
            if default is None:
                raise ValueError(
                    f"input feature {i} has no group: extend the mapping or pass default="
                ) from None
            return default

    return lookup


def _absolute(table: pd.DataFrame) -> pd.DataFrame:
    if (table["position"] == "shared").any():
        raise ValueError(
            "rows with shared coefficients carry block-relative indices: build the table "
            "with expand_shared=True (or select a per-position level, the readout or the net)"
        )
    return table


def _select(table: pd.DataFrame, order: int, level: int | None, output: int | None) -> pd.DataFrame:
    sel = table[table["order"] == order]
    if level is not None:
        sel = sel[sel["level"] == level]
    if output is not None:
        sel = sel[sel["output"] == output]
    if sel["level"].nunique() > 1:
        raise ValueError("the rows mix levels, whose inputs differ: pass level=")
    return _absolute(sel)


def group_main_effects(
    table: pd.DataFrame,
    groups: Mapping[int, str] | Sequence[str],
    *,
    level: int | None = None,
    output: int | None = None,
    absolute: bool = True,
    default: str | None = None,
) -> pd.DataFrame:
    """First-order terms summed by input group, largest first.

    Parameters
    ----------
    table : DataFrame
        A terms table with absolute input indices (a per-position level, the readout,
        ``expand_shared=True`` or :func:`local_taylor_table`).
    groups : mapping or sequence
        Input feature index (as in ``input_index``) -> group name, e.g. the wavelet scale of
        each coefficient. For a 1D input laid out as pywt's ``[cA_J, cD_J, ..., cD_1]``
        (one channel): ``[name for name, c in zip(names, coeffs) for _ in range(c.shape[-1])]``.
    level, output : int, optional
        Keep only this level / output (the rows must come from one level).
    absolute : bool, default True
        Sum ``|coefficient|`` (strength) rather than the signed coefficients.
    default : str, optional
        Group of unmapped features; without it they raise ValueError.

    Returns
    -------
    DataFrame
        Columns ``group``, ``effect``, ``n_terms``, sorted by ``effect`` (by ``|effect|``
        when signed) in decreasing order.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"level": 0, "position": "all", "order": 1, "output": 0,
    ...                   "input_index": [(0,), (1,), (2,)], "coefficient": [0.5, -2.0, 1.0]})
    >>> group_main_effects(t, ["coarse", "fine", "fine"]).values.tolist()
    [['fine', 3.0, 2], ['coarse', 0.5, 1]]
    """
    sel = _select(table, 1, level, output)
    lookup = _group_of(groups, default)
    coef = sel["coefficient"].abs() if absolute else sel["coefficient"]
    frame = pd.DataFrame({"group": [lookup(i[0]) for i in sel["input_index"]], "effect": coef})
    out = frame.groupby("group", sort=False)["effect"].agg(["sum", "size"]).reset_index()
    out.columns = ["group", "effect", "n_terms"]
    key = out["effect"].abs()
    return out.loc[key.sort_values(ascending=False, kind="stable").index].reset_index(drop=True)


def group_interactions(
    table: pd.DataFrame,
    groups: Mapping[int, str] | Sequence[str],
    *,
    level: int | None = None,
    output: int | None = None,
    absolute: bool = True,
    default: str | None = None,
) -> pd.DataFrame:
    """Second-order terms summed by unordered pair of input groups, strongest first.

    A monomial ``x_i x_j`` counts for the pair (group of i, group of j); squares and pairs
    within one group give ``(g, g)``. Parameters as in :func:`group_main_effects`.

    Returns
    -------
    DataFrame
        Columns ``group_a``, ``group_b``, ``strength``, ``n_terms``; ``group_a`` comes first
        in the order the groups first appear in ``groups``.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"level": 0, "position": "all", "order": 2, "output": 0,
    ...                   "input_index": [(0, 1), (1, 2), (2, 2)],
    ...                   "coefficient": [1.0, -3.0, 0.5]})
    >>> group_interactions(t, ["coarse", "fine", "fine"]).values.tolist()
    [['fine', 'fine', 3.5, 2], ['coarse', 'fine', 1.0, 1]]
    """
    sel = _select(table, 2, level, output)
    lookup = _group_of(groups, default)
    seen = list(dict.fromkeys(groups.values() if isinstance(groups, Mapping) else groups))
    rank = {g: r for r, g in enumerate(seen)}
    pairs = []
    for i, j in sel["input_index"]:
        a, b = lookup(i), lookup(j)
        pairs.append((a, b) if rank.get(a, len(rank)) <= rank.get(b, len(rank)) else (b, a))
    coef = sel["coefficient"].abs() if absolute else sel["coefficient"]
    frame = pd.DataFrame(
        {"group_a": [p[0] for p in pairs], "group_b": [p[1] for p in pairs], "strength": coef}
    )
    out = frame.groupby(["group_a", "group_b"], sort=False)["strength"].agg(["sum", "size"])
    out = out.reset_index()
    out.columns = ["group_a", "group_b", "strength", "n_terms"]
    key = out["strength"].abs()
    return out.loc[key.sort_values(ascending=False, kind="stable").index].reset_index(drop=True)


def largest_terms(table: pd.DataFrame, n: int = 10, *, order: int | None = None) -> pd.DataFrame:
    """The ``n`` terms of largest ``|coefficient|`` (optionally of one order).

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"order": [1, 1, 2], "coefficient": [0.1, -3.0, 2.0]})
    >>> largest_terms(t, 1, order=1)["coefficient"].tolist()
    [-3.0]
    """
    sel = table if order is None else table[table["order"] == order]
    return sel.loc[sel["coefficient"].abs().sort_values(ascending=False, kind="stable").index[:n]]


def local_taylor_table(
    net: TaylorNet, x: Tensor | None = None, *, outputs: Sequence[int] | None = None
) -> pd.DataFrame:
    """The whole net's Taylor expansion to second order around points ``x``, as terms.

    ``net(x0 + delta) ~ f + g.delta + sum_{i<=j} c_ij delta_i delta_j`` with ``g`` the
    gradient, ``c_ij = H_ij`` (``i < j``) and ``c_ii = H_ii / 2`` from the Hessian ``H``;
    coefficients are averaged over the rows of ``x`` (default: the origin). Inputs are named
    ``x{c}[pos]`` with flat indices into the unpadded ``(C, *S)`` input, so the group
    helpers give the main effects and pairwise interactions of input groups on the output.
    With ``norm="none"`` and degree <= 2 this is the net's exact polynomial. With a
    standardisation the net is a rational function and the origin a poor point (its level
    maps have no spread): expand around data instead. Costs a Hessian per point,
    ``O(C * prod(S))`` backward passes.

    Examples
    --------
    >>> import torch
    >>> from shared.taylornet import TaylorNet
    >>> net = TaylorNet(1, 2, n_outputs=1, channels=[], quadratic="full", norm="none")
    >>> with torch.no_grad():
    ...     _ = net.readout.quad.copy_(torch.tensor([[[0.0, 3.0, 0.0]]]))
    >>> t = local_taylor_table(net.double())
    >>> t[t.order == 2]["coefficient"].round(6).tolist()
    [0.0, 3.0, 0.0]
    """
    size, n_in = net.input_size, net.in_channels
    param = next(net.parameters())
    if x is None:
        x = torch.zeros(1, n_in, *size, dtype=param.dtype, device=param.device)
    n_feat = n_in * int(np.prod(size))
    outs = list(range(net.n_outputs)) if outputs is None else list(outputs)

    def f(v: Tensor) -> Tensor:
        return net(v.reshape(1, n_in, *size))[0, outs]

    flat = x.reshape(len(x), n_feat).detach()
    value = torch.stack([f(v) for v in flat]).mean(0).detach()
    grad = torch.stack([torch.func.jacrev(f)(v) for v in flat]).mean(0).detach()
    # reverse-over-reverse: forward mode would pull in torch's deprecated jvp decompositions
    hessian = torch.func.jacrev(torch.func.jacrev(f))
    hess = torch.stack([hessian(v) for v in flat]).mean(0).detach()
    ia, ib = np.triu_indices(n_feat)
    quad = hess[:, ia, ib] * torch.where(torch.as_tensor(ia == ib), 0.5, 1.0).to(hess)
    grid = np.indices((n_in, *size)).reshape(1 + len(size), -1).T
    names = [f"x{g[0]}[{','.join(map(str, g[1:]))}]" for g in grid]
    index = list(range(n_feat))
    pairs = [(int(a), int(b)) for a, b in zip(ia, ib, strict=True)]
    frames = [
        _rows(0, "net", "all", 0, [()], names, index, value[:, None].cpu().numpy()),
        _rows(0, "net", "all", 1, [(i,) for i in index], names, index, grad.cpu().numpy()),
        _rows(0, "net", "all", 2, pairs, names, index, quad.cpu().numpy()),
    ]
    table = pd.concat(frames, ignore_index=True)
    table["output"] = np.asarray(outs)[table["output"].to_numpy()]
    table["input_index"] = [tuple(int(v) for v in t) for t in table["input_index"]]
    return table
