"""Batched map statistics in torch: power spectra, peaks and peak histograms.

Conventions follow lenstools so that it can serve as the oracle:

- power spectrum: ``rfft2`` of the map, |F|^2 averaged over the half-plane Fourier pixels
  whose |ell| lies in ``(edge_k, edge_{k+1}]`` (ell_x = min(i, N - i) * 2 pi / theta,
  ell_y = j * 2 pi / theta), times (theta / N^2)^2 with theta the side angle in radians;
  empty bins are 0;
- peaks: pixels strictly greater than their 8 neighbours, the map wrapping around at the
  edges (``boundary="periodic"``, lenstools' choice) or, for non-periodic maps, only
  interior pixels (``boundary="interior"``); a peak of height v falls in bin k when
  ``thresholds[k] <= v < thresholds[k + 1]``. We return counts; lenstools'
  ``peakCount`` returns counts divided by the bin widths.

Minkowski functionals come from lenstools, map by map. The starlet (isotropic undecimated
wavelet, à trous with the B3 spline) follows Starck, Fadili & Murtagh (2007) and the
weak-lensing statistics of Ajani et al. (2020, 2021): mirror (``reflect``) boundaries,
``n_scales`` planes counting the coarse one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

__all__ = [
    "B3_SPLINE",
    "binned_theory",
    "ell_grid",
    "filter_maps",
    "find_peaks",
    "minkowski_functionals",
    "moments",
    "peak_counts",
    "power_spectrum",
    "starlet",
]

logger = logging.getLogger(__name__)

Boundary = Literal["periodic", "interior"]

#: The B3-spline smoothing filter of the starlet: [1, 4, 6, 4, 1] / 16.
B3_SPLINE = (1.0 / 16, 4.0 / 16, 6.0 / 16, 4.0 / 16, 1.0 / 16)


def _as_tensor(maps: Tensor | np.ndarray) -> Tensor:
    x = torch.as_tensor(maps)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"maps must be square in their last two axes, got {tuple(x.shape)}")
    return x


def ell_grid(n_pix: int, side_angle_deg: float) -> np.ndarray:
    """|ell| of the rfft2 pixels of an ``n_pix`` map (float64, lenstools' arithmetic).

    Examples
    --------
    >>> g = ell_grid(4, 360.0)
    >>> g.shape, g[1, 1]
    ((4, 3), np.float64(1.4142135623730951))
    """
    lpix = 360.0 / side_angle_deg
    i = np.arange(n_pix)
    lx = np.minimum(i, n_pix - i) * lpix
    ly = np.arange(n_pix // 2 + 1) * lpix
    return np.sqrt(lx[:, None] ** 2 + ly[None, :] ** 2)


def _bin_index(ell: np.ndarray, l_edges: np.ndarray) -> np.ndarray:
    edges = np.asarray(l_edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("l_edges must be a strictly increasing 1D array of at least 2 edges")
    # searchsorted(side="left") - 1 puts ell in bin k when edge_k < ell <= edge_{k+1}.
    idx = np.searchsorted(edges, ell, side="left") - 1
    idx[(idx < 0) | (idx >= edges.size - 1)] = -1
    return idx


def power_spectrum(
    maps: Tensor | np.ndarray,
    side_angle_deg: float,
    l_edges: Sequence[float] | np.ndarray,
    chunk_size: int = 64,
) -> tuple[np.ndarray, Tensor]:
    """Binned angular power spectrum of a batch of maps.

    Parameters
    ----------
    maps
        (..., N, N) maps.
    side_angle_deg
        Side angle in degrees.
    l_edges
        Multipole bin edges (increasing).
    chunk_size
        Maps per FFT batch (bounds memory).

    Returns
    -------
    ell : numpy.ndarray
        Bin midpoints.
    power : torch.Tensor
        (..., n_bins) power spectra, in the dtype of ``maps``.

    Examples
    --------
    >>> ell, p = power_spectrum(torch.randn(5, 64, 64), 3.5, [200.0, 1000.0, 3000.0])
    >>> tuple(p.shape)
    (5, 2)
    """
    x = _as_tensor(maps)
    n = x.shape[-1]
    edges = np.asarray(l_edges, dtype=np.float64)
    idx = torch.as_tensor(_bin_index(ell_grid(n, side_angle_deg), edges).ravel())
    n_bins = edges.size - 1
    keep = idx >= 0
    hits = torch.bincount(idx[keep], minlength=n_bins).to(x.dtype)
    # Bin averaging as one matrix product with the (pixels x bins) membership matrix.
    member = torch.zeros(idx.numel(), n_bins, dtype=x.dtype)
    member[torch.arange(idx.numel())[keep], idx[keep]] = 1.0
    norm = (np.deg2rad(side_angle_deg) / n**2) ** 2
    weights = (member * norm / hits.clamp(min=1)).to(x.device)
    lead = x.shape[:-2]
    flat = x.reshape(-1, n, n)
    out = torch.empty(flat.shape[0], n_bins, dtype=x.dtype, device=x.device)
    for start in range(0, flat.shape[0], chunk_size):
        ft = torch.fft.rfft2(flat[start : start + chunk_size])
        power = (ft.real**2 + ft.imag**2).reshape(ft.shape[0], -1)
        out[start : start + chunk_size] = power @ weights
    out = out.reshape(*lead, n_bins)
    return 0.5 * (edges[:-1] + edges[1:]), out


def binned_theory(
    cl: Callable[[np.ndarray], np.ndarray],
    l_edges: Sequence[float] | np.ndarray,
    n_pix: int,
    side_angle_deg: float,
) -> np.ndarray:
    """Expected :func:`power_spectrum` of maps with spectrum ``cl``: its mean over each bin's
    Fourier pixels (not its value at the bin centre).

    Examples
    --------
    >>> binned_theory(lambda l: np.ones_like(l), [100.0, 1000.0], 64, 3.5)
    array([1.])
    """
    ell = ell_grid(n_pix, side_angle_deg)
    idx = _bin_index(ell, np.asarray(l_edges, dtype=np.float64))
    n_bins = len(l_edges) - 1
    values = cl(ell[idx >= 0])
    sums = np.bincount(idx[idx >= 0], weights=values, minlength=n_bins)
    hits = np.bincount(idx[idx >= 0], minlength=n_bins)
    return np.where(hits > 0, sums / np.maximum(hits, 1), 0.0)


def _wrap_pad(x: Tensor, out: Tensor | None = None) -> Tensor:
    """Pad the last two axes by one pixel, wrapping around (one copy, optional buffer)."""
    shape = (*x.shape[:-2], x.shape[-2] + 2, x.shape[-1] + 2)
    if out is None or out.shape != shape or out.dtype != x.dtype:
        out = torch.empty(shape, dtype=x.dtype, device=x.device)
    out[..., 1:-1, 1:-1] = x
    out[..., 0, 1:-1] = x[..., -1, :]
    out[..., -1, 1:-1] = x[..., 0, :]
    out[..., :, 0] = out[..., :, -2]
    out[..., :, -1] = out[..., :, 1]
    return out


def _neighbour_max(
    x: Tensor, boundary: Boundary, buffer: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """(centre pixels, max of their 8 neighbours, padding buffer for reuse)."""
    if boundary == "periodic":
        x = _wrap_pad(x, buffer)
    elif boundary != "interior":
        raise ValueError(f"boundary must be 'periodic' or 'interior', got {boundary!r}")
    # Separable: left/right neighbours, then the rows above and below (3 wide).
    side = torch.maximum(x[..., :, :-2], x[..., :, 2:])
    row3 = torch.maximum(side, x[..., :, 1:-1])
    around = torch.maximum(torch.maximum(row3[..., :-2, :], row3[..., 2:, :]), side[..., 1:-1, :])
    return x[..., 1:-1, 1:-1], around, (x if boundary == "periodic" else None)


def find_peaks(maps: Tensor | np.ndarray, boundary: Boundary = "periodic") -> Tensor:
    """Boolean mask of strict 8-neighbour local maxima.

    Parameters
    ----------
    maps
        (..., N, N) maps.
    boundary
        ``"periodic"``: neighbours wrap around (lenstools); ``"interior"``: edge pixels
        are never peaks.

    Returns
    -------
    torch.Tensor
        (..., N, N) boolean mask.

    Examples
    --------
    >>> m = torch.zeros(5, 5); m[2, 2] = 1.0; m[0, 0] = 2.0
    >>> find_peaks(m).sum().item(), find_peaks(m, "interior").sum().item()
    (2, 1)
    """
    x = _as_tensor(maps)
    centre, around, _ = _neighbour_max(x, boundary)
    mask = centre > around
    if boundary == "interior":
        mask = F.pad(mask, (1, 1, 1, 1), value=False)
    return mask


def _check_thresholds(thresholds: Sequence[float] | np.ndarray | Tensor) -> Tensor:
    t = torch.as_tensor(np.asarray(thresholds, dtype=np.float64))
    if t.ndim != 1 or t.numel() < 2 or bool(torch.any(t[1:] <= t[:-1])):
        raise ValueError("thresholds must be a strictly increasing 1D array of at least 2 edges")
    return t


def peak_counts(
    maps: Tensor | np.ndarray,
    thresholds: Sequence[float] | np.ndarray | Tensor,
    boundary: Boundary = "periodic",
    kernels: Tensor | np.ndarray | None = None,
    chunk_size: int = 32,
) -> Tensor:
    """Histogram of peak heights per map (optionally of maps filtered by ``kernels``).

    Parameters
    ----------
    maps
        (B, N, N) maps (or (N, N)).
    thresholds
        Bin edges; a peak of height v counts in bin k if ``t_k <= v < t_{k+1}``.
    boundary
        See :func:`find_peaks`.
    kernels
        Optional (K, h, w) filters; the maps are filtered first (see :func:`filter_maps`,
        with the same boundary) and the result has an extra axis K.
    chunk_size
        Maps per chunk (bounds memory; keeps temporaries in cache).

    Returns
    -------
    torch.Tensor
        int64 counts, (B, n_bins) or (B, K, n_bins).

    Examples
    --------
    >>> counts = peak_counts(torch.randn(3, 32, 32), [-1.0, 0.0, 1.0, 2.0, 5.0])
    >>> tuple(counts.shape), counts.dtype
    ((3, 4), torch.int64)
    """
    x = _as_tensor(maps)
    single = x.ndim == 2
    if single:
        x = x.unsqueeze(0)
    if x.ndim != 3:
        raise ValueError(f"maps must be (B, N, N), got {tuple(x.shape)}")
    edges = _check_thresholds(thresholds)
    n_bins = edges.numel() - 1
    outputs = []
    buffer = None
    for start in range(0, x.shape[0], chunk_size):
        chunk = x[start : start + chunk_size]
        if kernels is not None:
            chunk = filter_maps(chunk, kernels, boundary)
        centre, around, buffer = _neighbour_max(chunk, boundary, buffer)
        mask = centre > around
        lead = mask.shape[:-2]
        n_maps = int(np.prod(lead)) if lead else 1
        flat_mask = mask.reshape(n_maps, -1)
        which, pos = flat_mask.nonzero(as_tuple=True)
        values = centre.reshape(n_maps, -1)[which, pos]
        e = edges.to(dtype=values.dtype if values.dtype == torch.float64 else torch.float64)
        bins = torch.searchsorted(e, values.to(e.dtype), right=True) - 1
        ok = (bins >= 0) & (bins < n_bins)
        counts = torch.bincount(which[ok] * n_bins + bins[ok], minlength=n_maps * n_bins)
        outputs.append(counts.reshape(*lead, n_bins))
    out = torch.cat(outputs) if outputs else torch.zeros(0, n_bins, dtype=torch.int64)
    return out[0] if single else out


def filter_maps(
    maps: Tensor | np.ndarray, kernels: Tensor | np.ndarray, boundary: Boundary = "periodic"
) -> Tensor:
    """Filter maps by a bank of kernels (cross-correlation, as ``torch.conv2d``).

    Parameters
    ----------
    maps
        (B, N, N) maps.
    kernels
        (K, h, w) kernels (odd sizes keep the output centred).
    boundary
        ``"periodic"``: circular padding, output (B, K, N, N); ``"interior"``: no
        padding, output (B, K, N - h + 1, N - w + 1).

    Returns
    -------
    torch.Tensor

    Examples
    --------
    >>> k = torch.zeros(1, 3, 3); k[0, 1, 1] = 1.0
    >>> x = torch.randn(2, 8, 8)
    >>> torch.equal(filter_maps(x, k)[:, 0], x)
    True
    """
    x = _as_tensor(maps)
    if x.ndim == 2:
        x = x.unsqueeze(0)
    k = torch.as_tensor(kernels, dtype=x.dtype, device=x.device)
    if k.ndim == 2:
        k = k.unsqueeze(0)
    if k.ndim != 3:
        raise ValueError(f"kernels must be (K, h, w), got {tuple(k.shape)}")
    h, w = k.shape[-2:]
    x = x.unsqueeze(1)
    if boundary == "periodic":
        x = F.pad(x, ((w - 1) // 2, w // 2, (h - 1) // 2, h // 2), mode="circular")
    elif boundary != "interior":
        raise ValueError(f"boundary must be 'periodic' or 'interior', got {boundary!r}")
    return F.conv2d(x, k.unsqueeze(1))


def moments(maps: Tensor | np.ndarray) -> dict[str, Tensor]:
    """Per-map mean, standard deviation, skewness and excess kurtosis of the pixels.

    Examples
    --------
    >>> m = moments(torch.randn(2, 64, 64, dtype=torch.float64))
    >>> sorted(m), tuple(m["skewness"].shape)
    (['kurtosis', 'mean', 'skewness', 'std'], (2,))
    """
    x = _as_tensor(maps).flatten(-2)
    mean = x.mean(-1, keepdim=True)
    d = x - mean
    var = (d**2).mean(-1)
    std = var.sqrt()
    return {
        "mean": mean[..., 0],
        "std": std,
        "skewness": (d**3).mean(-1) / var**1.5,
        "kurtosis": (d**4).mean(-1) / var**2 - 3.0,
    }


def minkowski_functionals(
    maps: Tensor | np.ndarray,
    thresholds: Sequence[float] | np.ndarray,
    side_angle_deg: float,
    norm: bool = False,
) -> np.ndarray:
    """Minkowski functionals V0, V1, V2 of each map's excursion sets, via lenstools.

    Parameters
    ----------
    maps
        (B, N, N) maps.
    thresholds
        Threshold edges (lenstools evaluates at the midpoints).
    side_angle_deg
        Side angle in degrees.
    norm
        Thresholds in units of each map's standard deviation.

    Returns
    -------
    numpy.ndarray
        (B, 3, n_bins).

    Examples
    --------
    >>> mf = minkowski_functionals(np.random.randn(2, 32, 32), np.linspace(-2, 2, 5), 3.5)
    >>> mf.shape
    (2, 3, 4)
    """
    from cosmology._lenstools import convergence_map

    x = _as_tensor(maps).detach().cpu().to(torch.float64).numpy()
    if x.ndim == 2:
        x = x[None]
    t = np.asarray(thresholds, dtype=np.float64)
    out = np.empty((x.shape[0], 3, t.size - 1))
    for i in tqdm(range(x.shape[0]), desc="Minkowski", disable=None, leave=False):
        _, v0, v1, v2 = convergence_map(x[i], side_angle_deg).minkowskiFunctionals(t, norm=norm)
        out[i] = (v0, v1, v2)
    return out


def _b3_smooth(x: Tensor, step: int) -> Tensor:
    """``x`` (B, N, N) smoothed by the B3 spline with ``step - 1`` holes, mirror boundary."""
    h = torch.tensor(B3_SPLINE, dtype=x.dtype, device=x.device)
    pad = 2 * step
    y = F.pad(x[:, None], (pad, pad, 0, 0), mode="reflect")
    y = F.conv2d(y, h.reshape(1, 1, 1, 5), dilation=(1, step))
    y = F.pad(y, (0, 0, pad, pad), mode="reflect")
    return F.conv2d(y, h.reshape(1, 1, 5, 1), dilation=(step, 1))[:, 0]


def starlet(maps: Tensor | np.ndarray, n_scales: int = 5) -> Tensor:
    """The starlet transform: ``n_scales - 1`` wavelet scales and the coarse residual.

    The à trous algorithm: ``c_0`` is the map, ``c_{j+1}`` is ``c_j`` smoothed (rows, then
    columns) by the B3 spline :data:`B3_SPLINE` with ``2**j - 1`` zeros between its taps,
    and ``w_j = c_j - c_{j+1}``; so the scales plus the coarse residual ``c_{J}`` sum back
    to the map. Boundaries are mirrored (``reflect``: the edge pixel is not repeated),
    which needs ``2**(n_scales - 1) < N``.

    Parameters
    ----------
    maps
        (B, N, N) maps (or (N, N)).
    n_scales
        Planes returned, the coarse one included (Ajani et al.: 5).

    Returns
    -------
    torch.Tensor
        (B, n_scales, N, N): ``w_0`` (finest, about 2 pixels) ... ``w_{J-1}``, ``c_J``.

    Examples
    --------
    >>> x = torch.randn(2, 32, 32, dtype=torch.float64)
    >>> w = starlet(x, 4)
    >>> tuple(w.shape), bool(torch.allclose(w.sum(1), x, atol=1e-12))
    ((2, 4, 32, 32), True)
    """
    x = _as_tensor(maps)
    single = x.ndim == 2
    if single:
        x = x.unsqueeze(0)
    if x.ndim != 3:
        raise ValueError(f"maps must be (B, N, N), got {tuple(x.shape)}")
    n = x.shape[-1]
    if n_scales < 2 or 2 ** (n_scales - 1) >= n:
        raise ValueError(
            f"n_scales must be at least 2 and 2**(n_scales - 1) < {n} for {n}x{n} maps "
            f"(the mirrored boundary of the coarsest smoothing), got {n_scales}"
        )
    planes = []
    c = x
    for j in range(n_scales - 1):
        smooth = _b3_smooth(c, 2**j)
        planes.append(c - smooth)
        c = smooth
    planes.append(c)
    out = torch.stack(planes, dim=1)
    return out[0] if single else out
