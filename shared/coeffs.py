"""Wavelet coefficient structures, in pywt's order and vocabulary, defined once.

A 1D transform gives ``[cA_J, cD_J, ..., cD_1]`` (:data:`Coeffs1d`); a 2D transform gives
``[cA_J, (cH_J, cV_J, cD_J), ..., (cH_1, cV_1, cD_1)]`` (:data:`Coeffs2d`): the
approximation at the coarsest level, then the detail bands from coarse to fine, each 2D
level a (horizontal, vertical, diagonal) triple. Every tensor is ``(N, C, ...)``.

Band names follow pywt: ``cA4``, ``cD4`` ... in 1D; ``cA2``, ``cH2``, ``cV2``, ``cD2`` ...
in 2D; a coefficient's feature name adds its position (``cD3_7``, ``cH2_3_5``), so a
predictor's importances map back to bands and scales.

Examples
--------
>>> import torch
>>> c = [torch.zeros(1, 1, 2, 2), (torch.ones(1, 1, 2, 2),) * 3]
>>> [tuple(t.shape) for t in flatten_coeffs(c)][:2], band_names(1, ndim=2)
([(1, 1, 2, 2), (1, 1, 2, 2)], ['cA1', 'cH1', 'cV1', 'cD1'])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "Coeffs1d",
    "Coeffs2d",
    "Detail2d",
    "band_levels",
    "band_names",
    "coefficient_names",
    "flat_features",
    "flatten_coeffs",
    "unflatten_coeffs",
]

#: A 1D decomposition ``[cA_J, cD_J, ..., cD_1]``.
Coeffs1d: TypeAlias = list[Tensor]
#: The detail bands of one 2D level: ``(cH, cV, cD)`` (horizontal, vertical, diagonal).
Detail2d: TypeAlias = tuple[Tensor, Tensor, Tensor]
#: A 2D decomposition ``[cA_J, (cH_J, cV_J, cD_J), ..., (cH_1, cV_1, cD_1)]``.
Coeffs2d: TypeAlias = list[Any]


def flatten_coeffs(coeffs: Sequence | Tensor) -> list[Tensor]:
    """Leaf tensors of a pywt-ordered coefficient list (2D detail triples unpacked).

    A single tensor (a transform whose coefficients are one array) is its own leaf.

    Examples
    --------
    >>> c = [torch.zeros(1, 1, 2, 2), (torch.ones(1, 1, 2, 2),) * 3]
    >>> len(flatten_coeffs(c)), len(flatten_coeffs(torch.zeros(3)))
    (4, 1)
    """
    if isinstance(coeffs, Tensor):
        return [coeffs]
    out: list[Tensor] = []
    for c in coeffs:
        if isinstance(c, (tuple, list)):
            out.extend(c)
        else:
            out.append(c)
    return out


def unflatten_coeffs(leaves: Sequence[Tensor], like: Any) -> Any:
    """Arrange ``leaves`` in the nesting of ``like`` (a tensor, list, or list of tuples).

    Examples
    --------
    >>> like = [torch.zeros(1), (torch.zeros(1), torch.zeros(1))]
    >>> out = unflatten_coeffs([torch.ones(1)] * 3, like)
    >>> isinstance(out, list) and isinstance(out[1], tuple)
    True
    """
    it = iter(leaves)

    def build(node: Any) -> Any:
        if isinstance(node, Tensor):
            return next(it)
        return type(node)(build(c) for c in node)

    result = build(like)
    if next(it, None) is not None:
        raise ValueError("more leaves than the structure holds")
    return result


def band_names(levels: int, ndim: int = 1) -> list[str]:
    """Names of the bands of a ``levels``-level transform, in pywt order.

    Examples
    --------
    >>> band_names(4)
    ['cA4', 'cD4', 'cD3', 'cD2', 'cD1']
    >>> band_names(2, ndim=2)
    ['cA2', 'cH2', 'cV2', 'cD2', 'cH1', 'cV1', 'cD1']
    """
    if ndim == 1:
        return [f"cA{levels}"] + [f"cD{j}" for j in range(levels, 0, -1)]
    if ndim == 2:
        return [f"cA{levels}"] + [f"c{b}{j}" for j in range(levels, 0, -1) for b in "HVD"]
    raise ValueError(f"ndim must be 1 or 2, got {ndim}")


def band_levels(levels: int, ndim: int = 1) -> list[int]:
    """The level of every band of :func:`band_names` (the approximation counts as ``levels``).

    Examples
    --------
    >>> band_levels(2, ndim=2)
    [2, 2, 2, 2, 1, 1, 1]
    """
    return [int(name.lstrip("cAHVD")) for name in band_names(levels, ndim)]


def coefficient_names(coeffs: Sequence) -> list[str]:
    """Feature names of flattened coefficients: band, level and position.

    1D: ``cA4_0``, ``cD4_3``, ... ; 2D: ``cH2_3_5`` (band, level, row, column). With more
    than one channel the channel comes first (``ch1_cD1_7``).

    Examples
    --------
    >>> coeffs = [torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), torch.zeros(1, 1, 4)]
    >>> names = coefficient_names(coeffs)
    >>> names[:3], names[-1]
    (['cA2_0', 'cA2_1', 'cD2_0'], 'cD1_3')
    """
    leaves = flatten_coeffs(coeffs)
    ndim = 2 if any(isinstance(c, (tuple, list)) for c in coeffs) else 1
    names = band_names(len(coeffs) - 1, ndim)
    out = []
    for name, tensor in zip(names, leaves, strict=True):
        channels, *spatial = tensor.shape[1:]
        for ch in range(channels):
            prefix = f"ch{ch}_" if channels > 1 else ""
            for pos in np.ndindex(*spatial):
                out.append(f"{prefix}{name}_" + "_".join(str(p) for p in pos))
    return out


def flat_features(coeffs: Sequence) -> Tensor:
    """All coefficients of each item side by side, ``(N, total)``.

    The columns are in the order of :func:`coefficient_names`.

    Examples
    --------
    >>> flat_features([torch.ones(2, 1, 3), torch.zeros(2, 1, 3)]).shape
    torch.Size([2, 6])
    """
    return torch.cat([c.reshape(c.shape[0], -1) for c in flatten_coeffs(coeffs)], dim=1)
