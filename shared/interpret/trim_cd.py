"""TRIM + CD: contextual-decomposition scores of groups of transform coefficients.

For a linear transform ``W`` (the wavelet transforms of :mod:`shared.transform`, the
Fourier annuli of :class:`~shared.attributions.FourierBands2d`), TRIM with CD is pixel-space
CD with the relevant input ``rel = W^-1(M * W x)`` for a coefficient mask ``M`` and the
irrelevant input ``irrel = x - rel``; what the transform fails to reconstruct goes to the
irrelevant part, so ``rel + irrel = x`` and the scores are conserved (Singh, Ha et al.,
*Transformation importance*, 2020). A group is a mask per coefficient array (leaf), in the
order of :func:`shared.coeffs.flatten_coeffs`: a whole wavelet level, one band, a block of
positions in a band, or one Fourier annulus. All groups of all inputs are scored in batched
passes (:func:`~shared.interpret.cd.cd_batched`).

Scales: :func:`wavelet_scales` and :func:`fourier_scales` give every level or annulus its
frequency range in cycles per pixel and, with the pixel size in arcmin, its multipole range
``ell = 2 pi f / pixel`` and its wavelength range in arcmin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from shared.attributions import FourierBands2d
from shared.coeffs import flatten_coeffs, unflatten_coeffs
from shared.interpret.cd import CDScores, cd_batched
from shared.transform import DWT1d, DWT2d

__all__ = [
    "CoefficientGroup",
    "TrimCD",
    "band_groups",
    "block_groups",
    "fourier_groups",
    "fourier_scales",
    "level_groups",
    "select_target",
    "standard_groups",
    "trim_cd",
    "wavelet_scales",
]

_BANDS_2D = ("H", "V", "D")


@dataclass(frozen=True)
class CoefficientGroup:
    """A named group of transform coefficients.

    Parameters
    ----------
    name : str
        Label (pywt vocabulary: ``cA3``, ``cD2``, ``cH1``, ``level2``, ...).
    masks : tuple
        One mask per coefficient leaf (``flatten_coeffs`` order): a number (0 or 1 for the
        whole leaf) or a tensor broadcastable to the leaf without its batch dimension.
    info : dict
        JSON-able description (kind, level, band, positions, frequencies).

    Examples
    --------
    >>> g = CoefficientGroup("cA1", (1.0, 0.0))
    >>> g.name, g.masks
    ('cA1', (1.0, 0.0))
    """

    name: str
    masks: tuple[Any, ...]
    info: dict[str, Any] = field(default_factory=dict)


# -- coefficient structures -----------------------------------------------------------------------
# -- group builders -------------------------------------------------------------------------------
def _entries(coeffs: Sequence) -> list[list[Tensor]]:
    """Leaves grouped by pywt entry: [cA_J], then each level's band(s)."""
    return [list(c) if isinstance(c, (tuple, list)) else [c] for c in coeffs]


def _one_hot(n_leaves: int, chosen: Sequence[int]) -> tuple[float, ...]:
    return tuple(1.0 if i in chosen else 0.0 for i in range(n_leaves))


def _is_2d(coeffs: Sequence) -> bool:
    return any(isinstance(c, (tuple, list)) for c in coeffs[1:])


def level_groups(coeffs: Sequence) -> list[CoefficientGroup]:
    """One group per pywt entry: the approximation ``cA_J``, then each detail level.

    Parameters
    ----------
    coeffs : list
        Wavelet coefficients in pywt order (1D or 2D), e.g. ``DWT2d(...)(x)``.

    Examples
    --------
    >>> from shared import DWT2d
    >>> coeffs = DWT2d("db2", levels=2)(torch.randn(1, 1, 16, 16))
    >>> [g.name for g in level_groups(coeffs)]
    ['cA2', 'level2', 'level1']
    """
    entries = _entries(coeffs)
    n_leaves, levels = sum(len(e) for e in entries), len(entries) - 1
    two_d = _is_2d(coeffs)
    groups = [CoefficientGroup(f"cA{levels}", _one_hot(n_leaves, [0]), _info("approx", levels))]
    start = 1
    for k, entry in enumerate(entries[1:]):
        level = levels - k
        name = f"level{level}" if two_d else f"cD{level}"
        chosen = list(range(start, start + len(entry)))
        groups.append(CoefficientGroup(name, _one_hot(n_leaves, chosen), _info("detail", level)))
        start += len(entry)
    return groups


def _info(kind: str, level: int, band: str | None = None) -> dict[str, Any]:
    f_max = 2.0 ** -(level + 1) if kind == "approx" else 2.0**-level
    f_min = 0.0 if kind == "approx" else 2.0 ** -(level + 1)
    info: dict[str, Any] = {"kind": kind, "level": level, "f_min": f_min, "f_max": f_max}
    if band is not None:
        info["band"] = band
    return info


def _leaf_names(coeffs: Sequence) -> list[tuple[str, dict[str, Any]]]:
    entries = _entries(coeffs)
    levels = len(entries) - 1
    out = [(f"cA{levels}", _info("approx", levels))]
    for k, entry in enumerate(entries[1:]):
        level = levels - k
        if len(entry) == 1:
            out.append((f"cD{level}", _info("detail", level)))
        else:
            out += [(f"c{b}{level}", _info("detail", level, b)) for b in _BANDS_2D[: len(entry)]]
    return out


def band_groups(coeffs: Sequence) -> list[CoefficientGroup]:
    """One group per coefficient array: ``cA_J``, then ``cH_j, cV_j, cD_j`` (2D) or ``cD_j``.

    Examples
    --------
    >>> from shared import DWT2d
    >>> coeffs = DWT2d("db2", levels=1)(torch.randn(1, 1, 8, 8))
    >>> [g.name for g in band_groups(coeffs)]
    ['cA1', 'cH1', 'cV1', 'cD1']
    """
    names = _leaf_names(coeffs)
    return [
        CoefficientGroup(name, _one_hot(len(names), [i]), info)
        for i, (name, info) in enumerate(names)
    ]


def block_groups(coeffs: Sequence, block: int | Sequence[int]) -> list[CoefficientGroup]:
    """Groups of ``block``-sized tiles of positions in every coefficient array.

    Parameters
    ----------
    coeffs : list
        Coefficients (pywt order) of one example input; only their shapes are used.
    block : int or sequence of int
        Tile size in coefficients along each spatial axis (the last 1 or 2 axes).

    Examples
    --------
    >>> from shared import DWT1d
    >>> coeffs = DWT1d("haar", levels=1)(torch.randn(1, 1, 8))
    >>> [g.name for g in block_groups(coeffs, 2)]
    ['cA1[0:2]', 'cA1[2:4]', 'cD1[0:2]', 'cD1[2:4]']
    """
    names = _leaf_names(coeffs)
    leaves = flatten_coeffs(coeffs)
    groups = []
    for i, ((name, info), leaf) in enumerate(zip(names, leaves, strict=True)):
        spatial = leaf.shape[2:]
        sizes = [block] * len(spatial) if isinstance(block, int) else list(block)
        if len(sizes) != len(spatial) or min(sizes) < 1:
            raise ValueError(f"block must give one positive size per spatial axis, got {block}")
        starts = [range(0, n, b) for n, b in zip(spatial, sizes, strict=True)]
        for corner in np.stack(np.meshgrid(*starts, indexing="ij"), -1).reshape(-1, len(spatial)):
            stop = [min(int(c) + b, n) for c, b, n in zip(corner, sizes, spatial, strict=True)]
            window = tuple(slice(int(c), s) for c, s in zip(corner, stop, strict=True))
            mask = torch.zeros(spatial, dtype=leaf.dtype, device=leaf.device)
            mask[window] = 1
            masks = tuple(mask if k == i else 0.0 for k in range(len(leaves)))
            label = ",".join(f"{int(c)}:{s}" for c, s in zip(corner, stop, strict=True))
            block_info = {
                **info,
                "kind": "block",
                "leaf": i,
                "start": [int(c) for c in corner],
                "stop": stop,
            }
            groups.append(CoefficientGroup(f"{name}[{label}]", masks, block_info))
    return groups


def fourier_groups(bands: FourierBands2d) -> list[CoefficientGroup]:
    """One group per annulus of a :class:`~shared.attributions.FourierBands2d`.

    Examples
    --------
    >>> from shared.attributions import FourierBands2d
    >>> [g.name for g in fourier_groups(FourierBands2d(2, edges=[0.0, 0.25, 0.8]))]
    ['f[0,0.25)', 'f[0.25,0.8)']
    """
    edges = [float(e) for e in np.asarray(bands.edges)]
    return [
        CoefficientGroup(
            f"f[{edges[b]:g},{edges[b + 1]:g})",
            _one_hot(bands.n_bands, [b]),
            {"kind": "fourier", "band": b, "f_min": edges[b], "f_max": edges[b + 1]},
        )
        for b in range(bands.n_bands)
    ]


def standard_groups(
    transform: nn.Module, x: Tensor, by: str = "level", block: int = 8
) -> list[CoefficientGroup]:
    """The usual group set of a transform: ``by`` = ``level``, ``band`` or ``block``.

    Fourier annuli (:class:`~shared.attributions.FourierBands2d`) are always one group per
    annulus.

    Examples
    --------
    >>> from shared import DWT1d
    >>> [g.name for g in standard_groups(DWT1d("db2", levels=2), torch.randn(1, 1, 16))]
    ['cA2', 'cD2', 'cD1']
    """
    if isinstance(transform, FourierBands2d):
        return fourier_groups(transform)
    with torch.no_grad():
        coeffs = transform(x[:1])
    if by == "level":
        return level_groups(coeffs)
    if by == "band":
        return band_groups(coeffs)
    if by == "block":
        return block_groups(coeffs, block)
    raise ValueError(f"by must be 'level', 'band' or 'block', got {by!r}")


# -- scales ---------------------------------------------------------------------------------------
def _with_sky(row: dict[str, Any], pixel_arcmin: float | None) -> dict[str, Any]:
    """Add multipoles and wavelengths in arcmin to a row with f_min/f_max (cycles/pixel)."""
    f_min, f_max = row["f_min"], row["f_max"]
    row["period_min_px"] = 1.0 / f_max if f_max > 0 else None
    row["period_max_px"] = 1.0 / f_min if f_min > 0 else None
    if pixel_arcmin is not None:
        pixel_rad = math.radians(pixel_arcmin / 60.0)
        row["ell_min"] = 2 * math.pi * f_min / pixel_rad
        row["ell_max"] = 2 * math.pi * f_max / pixel_rad
        row["arcmin_min"] = pixel_arcmin / f_max if f_max > 0 else None
        row["arcmin_max"] = pixel_arcmin / f_min if f_min > 0 else None
    return row


def wavelet_scales(levels: int, pixel_arcmin: float | None = None) -> list[dict[str, Any]]:
    """Nominal frequency band of each level of a dyadic wavelet transform.

    Level ``j`` details cover ``f`` in ``[2^-(j+1), 2^-j]`` cycles per pixel (periods of
    ``2^j`` to ``2^(j+1)`` pixels); the approximation ``cA_J`` covers ``[0, 2^-(J+1)]``.
    With ``pixel_arcmin``, multipoles ``ell = 2 pi f / pixel`` (pixel in radians) and
    wavelengths ``pixel / f`` in arcmin are added. Rows follow :func:`level_groups` order;
    an unbounded end is ``None``.

    Parameters
    ----------
    levels : int
        Number of levels ``J``.
    pixel_arcmin : float, optional
        Pixel size in arcmin.

    Examples
    --------
    >>> rows = wavelet_scales(2, pixel_arcmin=1.0)
    >>> [r["level"] for r in rows], round(rows[-1]["ell_max"])
    ([2, 2, 1], 10800)
    """
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    rows = [{"name": f"cA{levels}", **_info("approx", levels)}]
    rows += [{"name": f"level{j}", **_info("detail", j)} for j in range(levels, 0, -1)]
    return [_with_sky(r, pixel_arcmin) for r in rows]


def fourier_scales(
    edges: Sequence[float] | FourierBands2d, pixel_arcmin: float | None = None
) -> list[dict[str, Any]]:
    """Frequency, multipole and wavelength range of each Fourier annulus.

    Parameters
    ----------
    edges : sequence of float or FourierBands2d
        Band edges in cycles per pixel.
    pixel_arcmin : float, optional
        Pixel size in arcmin (adds ``ell_*`` and ``arcmin_*``).

    Examples
    --------
    >>> rows = fourier_scales([0.0, 0.25, 0.5], pixel_arcmin=2.0)
    >>> round(rows[1]["ell_min"]), rows[1]["arcmin_max"]
    (2700, 8.0)
    """
    values = edges.edges if isinstance(edges, FourierBands2d) else edges
    e = [float(v) for v in np.asarray(values)]
    rows = [
        {"name": f"f[{e[b]:g},{e[b + 1]:g})", "band": b, "f_min": e[b], "f_max": e[b + 1]}
        for b in range(len(e) - 1)
    ]
    return [_with_sky(r, pixel_arcmin) for r in rows]


# -- scoring --------------------------------------------------------------------------------------
@dataclass
class TrimCD:
    """CD scores of coefficient groups: ``rel``/``irrel`` of shape ``(G, N, *output)``."""

    names: list[str]
    rel: Tensor
    irrel: Tensor
    info: list[dict[str, Any]]

    def scores(self, target: int | None = None) -> Tensor:
        """Relevant parts ``(G, N)`` for one output index (all outputs if ``None``)."""
        return select_target(self.rel, target)

    def summary(self, target: int | None = None) -> list[dict[str, Any]]:
        """JSON-able mean and standard deviation over inputs of every group's score.

        Numbers for a single output (or ``target``), lists over the outputs otherwise.
        """
        s = self.scores(target).detach().double().cpu()
        s = s.reshape(s.shape[0], s.shape[1], -1)
        mean = s.mean(1)
        sd = s.std(1) if s.shape[1] > 1 else torch.zeros_like(mean)

        def plain(row: Tensor) -> float | list[float]:
            return float(row[0]) if row.numel() == 1 else row.tolist()

        return [
            {"name": n, **i, "mean": plain(mean[g]), "sd": plain(sd[g])}
            for g, (n, i) in enumerate(zip(self.names, self.info, strict=True))
        ]


def select_target(out: Tensor, target: int | None) -> Tensor:
    """``out[..., target]`` for ``(G, N, n_out)`` scores; unchanged for ``None``.

    Examples
    --------
    >>> select_target(torch.zeros(3, 2, 4), 1).shape
    torch.Size([3, 2])
    """
    if target is None:
        return out
    if out.ndim < 3:
        raise ValueError("scores have no output dimension to select a target from")
    return out[..., target]


def _stacked_masks(groups: Sequence[CoefficientGroup], leaves: list[Tensor]) -> list[Tensor]:
    """Per leaf, the masks of all groups as one ``(G, ...)`` tensor broadcastable to it."""
    out = []
    for i, leaf in enumerate(leaves):
        per_group = [g.masks[i] for g in groups]
        opts = {"dtype": leaf.dtype, "device": leaf.device}
        if all(not isinstance(m, Tensor) for m in per_group):
            stacked = torch.tensor([float(m) for m in per_group], **opts)  # type: ignore[arg-type]
            out.append(stacked.view(-1, *[1] * (leaf.ndim - 1)))
        else:
            shape = leaf.shape[1:]
            out.append(
                torch.stack([torch.as_tensor(m, **opts).expand(shape) for m in per_group])  # type: ignore[arg-type]
            )
    return out


def _inverse(transform: Any, coeffs: Any, x: Tensor) -> Tensor:
    if isinstance(transform, DWT1d):
        return transform.inverse(coeffs, size=x.shape[-1])
    if isinstance(transform, DWT2d):
        return transform.inverse(coeffs, size=(x.shape[-2], x.shape[-1]))
    return transform.inverse(coeffs)


def trim_cd(
    model: nn.Module,
    x: Tensor,
    transform: Any,
    groups: Sequence[CoefficientGroup],
    *,
    chunk_size: int | None = None,
    check: bool = True,
) -> TrimCD:
    """CD scores of coefficient groups of ``transform`` for every input (TRIM + CD).

    Parameters
    ----------
    model : nn.Module
        The teacher, in eval mode, on the device and in the dtype of ``x``.
    x : Tensor
        Inputs in the model's layout, e.g. maps ``(N, 1, H, W)`` or traces ``(N, 1, L)``.
    transform : object
        ``forward(x) -> coeffs`` and ``inverse(coeffs)``, linear: :class:`~shared.DWT1d`,
        :class:`~shared.DWT2d`, :class:`~shared.attributions.FourierBands2d`.
    groups : sequence of CoefficientGroup
        E.g. from :func:`level_groups`, :func:`band_groups`, :func:`block_groups`,
        :func:`fourier_groups` or :func:`standard_groups`.
    chunk_size : int, optional
        Rows (group x input) per forward pass.
    check : bool, default True
        Check conservation against the recorded forward pass.

    Returns
    -------
    TrimCD
        Names, info and ``(G, N, *output)`` relevant and irrelevant parts; for every group,
        ``rel + irrel`` is the model output. The scores are differentiable in the model's
        parameters; call under ``torch.no_grad()`` to score without keeping a graph.

    Examples
    --------
    >>> from shared import DWT1d
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).double().eval()
    >>> dwt = DWT1d("db2", levels=2)
    >>> x = torch.randn(3, 1, 16, dtype=torch.float64)
    >>> res = trim_cd(net, x, dwt, standard_groups(dwt, x))
    >>> res.names, tuple(res.scores(0).shape)
    (['cA2', 'cD2', 'cD1'], (3, 3))
    """
    if not groups:
        raise ValueError("no groups to score")
    coeffs = transform(x)
    leaves = flatten_coeffs(coeffs)
    for g in groups:
        if len(g.masks) != len(leaves):
            raise ValueError(
                f"group {g.name!r} has {len(g.masks)} leaf masks, the transform gives "
                f"{len(leaves)} coefficient arrays"
            )
    masks = _stacked_masks(groups, leaves)

    def relevant(x_rows: Tensor, group_idx: Tensor, samples: Tensor) -> Tensor:
        kept = [leaf[samples] * m[group_idx] for leaf, m in zip(leaves, masks, strict=True)]
        return _inverse(transform, unflatten_coeffs(kept, coeffs), x_rows)

    scores: CDScores = cd_batched(
        model, x, relevant, len(groups), chunk_size=chunk_size, check=check
    )
    return TrimCD([g.name for g in groups], scores.rel, scores.irrel, [g.info for g in groups])
