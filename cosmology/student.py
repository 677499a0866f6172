"""Students: map features from a (learned) wavelet and small predictors of (Omega_m, sigma_8).

Features
    :func:`wavelet_kernels` cuts the paper's four 3x3 kernels (LL, LH, HL, HH) from a
    wavelet; :class:`PeakFilterFeatures` histograms the filtered values at the peaks of
    the map (the paper's student, also the raw-peak, Laplace, Roberts-cross and db5
    baselines); :class:`MultiscalePeakFeatures` histograms peak heights of every level and
    band of the 2D wavelet coefficients (beyond the paper); :class:`PowerSpectrumFeatures`,
    :class:`PixelQuantileFeatures`, :class:`MinkowskiFeatures` and :class:`ConcatFeatures`
    are the other baselines, with the field's strongest statistics:
    :class:`ScatteringFeatures` (kymatio's Morlet scattering transform),
    :class:`StarletL1Features` and :class:`StarletPeakFeatures` (the starlet l1-norm and
    peaks). :class:`WaveletScatteringFeatures` is the scattering transform through a 2D
    DWT, the learned wavelet or db5. Every feature object is fitted on training maps only
    (the histogram ranges come from training quantiles).
Predictors
    :class:`TemplateChi2` is the paper's chi-square template classifier, with the
    per-cosmology covariance of the reference or one pooled covariance;
    :func:`make_regressor` gives ridge and xgboost regressors for continuous designs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from cosmology.statistics import (
    filter_maps,
    find_peaks,
    minkowski_functionals,
    power_spectrum,
    starlet,
)
from shared.coeffs import band_names as _band_names
from shared.coeffs import flatten_coeffs
from shared.students import Savable, class_map
from shared.taylornet.student import TaylorNetPredictor
from shared.transform import DWT2d

__all__ = [
    "STUDENT_CLASSES",
    "ConcatFeatures",
    "ConstantPredictor",
    "MapStudent",
    "MinkowskiFeatures",
    "MultiscalePeakFeatures",
    "PeakFilterFeatures",
    "PixelQuantileFeatures",
    "PowerSpectrumFeatures",
    "ScatteringFeatures",
    "StarletL1Features",
    "StarletPeakFeatures",
    "TemplateChi2",
    "WaveletL1Features",
    "WaveletScatteringFeatures",
    "band_names",
    "check_predictions",
    "feature_parameters",
    "laplace_kernel",
    "make_regressor",
    "raw_kernel",
    "roberts_cross",
    "scattering_paths",
    "wavelet_kernels",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- kernels


def _best_window(f: np.ndarray, width: int = 3) -> np.ndarray:
    # Every window start 0 .. len - width is a candidate: the reference's
    # range(len(h) - 3) never looked at the last one.
    starts = range(len(f) - width + 1)
    energy = [np.sum((f[s : s + width] - f[s : s + width].mean()) ** 2) for s in starts]
    s = int(np.argmax(energy))
    return f[s : s + width]


def wavelet_kernels(transform) -> np.ndarray:
    """The paper's 3x3 kernels LL, LH, HL, HH cut from a wavelet's analysis filters.

    For the lowpass ``h`` and the highpass ``g`` the 3-tap window with the largest
    centred energy is kept; the kernels are their outer products, LH, HL and HH
    mean-centred (as the reference does; LL is not).

    Parameters
    ----------
    transform : DWT2d or LearnableWavelet
        The (learned) wavelet.

    Returns
    -------
    numpy.ndarray
        ``(4, 3, 3)`` float64.

    Examples
    --------
    >>> from shared import DWT2d
    >>> k = wavelet_kernels(DWT2d("db5", levels=1))
    >>> k.shape, bool(abs(k[3].sum()) < 1e-12)
    ((4, 3, 3), True)
    """
    wavelet = getattr(transform, "wavelet", transform)
    h = wavelet.dec_lo.detach().cpu().double().numpy()
    g = wavelet.dec_hi.detach().cpu().double().numpy()
    h3, g3 = _best_window(h), _best_window(g)
    kernels = [np.outer(h3, h3), np.outer(h3, g3), np.outer(g3, h3), np.outer(g3, g3)]
    out = [kernels[0]] + [k - k.mean() for k in kernels[1:]]
    return np.stack(out)


def raw_kernel() -> np.ndarray:
    """The identity 3x3 kernel: filtered values are the peak heights themselves."""
    k = np.zeros((1, 3, 3))
    k[0, 1, 1] = 1.0
    return k


def laplace_kernel() -> np.ndarray:
    """The reference's ``laplace_v1``: 10/3 [[-.05,-.2,-.05],[-.2,1,-.2],[-.05,-.2,-.05]]."""
    k = np.array([[-0.05, -0.2, -0.05], [-0.2, 1.0, -0.2], [-0.05, -0.2, -0.05]])
    return (10.0 / 3.0 * k)[None]


def roberts_cross(maps: Tensor) -> Tensor:
    """Sum of the four 2x2 Roberts-cross gradient magnitudes around each pixel.

    Returns ``(B, 1, N, N)`` (edges wrap around; only interior peaks are used).

    Examples
    --------
    >>> tuple(roberts_cross(torch.zeros(2, 8, 8)).shape)
    (2, 1, 8, 8)
    """
    x = maps
    right = torch.roll(x, -1, -1)
    down = torch.roll(x, -1, -2)
    diag = torch.roll(down, -1, -1)
    # Magnitude of the block whose top-left corner is the pixel.
    mag = torch.sqrt((x - diag) ** 2 + (right - down) ** 2)
    total = (
        mag + torch.roll(mag, 1, -1) + torch.roll(mag, 1, -2) + torch.roll(mag, (1, 1), (-2, -1))
    )
    return total[:, None]


# --------------------------------------------------------------------------- features


def _edges(values: np.ndarray, coverage: float, n_bins: int) -> np.ndarray:
    if values.size == 0:
        # Flat (e.g. all-zero) training maps: histograms of peaks have nothing to bin.
        raise ValueError(
            "the training maps have no peaks (flat or constant maps?): the peak students "
            "cannot place their bins"
        )
    lo, hi = np.quantile(values, [(1 - coverage) / 2, 1 - (1 - coverage) / 2])
    if not hi > lo:
        hi = lo + 1e-12
    return np.linspace(lo, hi, n_bins + 1)


def _counts(values: Tensor, which: Tensor, n_maps: int, edges: list[np.ndarray]) -> Tensor:
    """``(n_maps, K * n_bins)`` counts of ``values`` ``(P, K)`` in uniform per-column ``edges``.

    Bin indices come from arithmetic, not a search, and out-of-range values go to one
    spare bin per column that is dropped afterwards: no boolean compaction of the (large)
    peak list, which is what a per-map student spends its time on.
    """
    n_k, n_bins = values.shape[1], len(edges[0]) - 1
    lo = torch.tensor([float(e[0]) for e in edges], dtype=values.dtype)
    hi = torch.tensor([float(e[-1]) for e in edges], dtype=values.dtype)
    idx = torch.floor((values - lo) * (n_bins / (hi - lo))).long()
    inside = (idx >= 0) & (idx < n_bins) & (values < hi)
    idx = torch.where(inside, idx, n_bins)
    width = n_bins + 1
    index = (which[:, None] * n_k + torch.arange(n_k)[None, :]) * width + idx
    counts = torch.bincount(index.reshape(-1), minlength=n_maps * n_k * width)
    return counts.reshape(n_maps, n_k, width)[..., :n_bins].reshape(n_maps, n_k * n_bins)


def _binned_l1(values: Tensor, edges: np.ndarray) -> Tensor:
    """``(B, n_bins)`` sums of ``|values|`` (B, P) per bin of uniform ``edges``; values
    outside the edges count in the end bins."""
    n_bins = len(edges) - 1
    lo, hi = float(edges[0]), float(edges[-1])
    idx = torch.floor((values - lo) * (n_bins / (hi - lo))).long()
    idx = idx.clamp_(0, n_bins - 1)
    sums = torch.zeros(values.shape[0], n_bins, dtype=torch.float64)
    return sums.scatter_add_(1, idx, values.abs().double())


def _peak_patches(maps: Tensor) -> tuple[Tensor, Tensor]:
    """3x3 neighbourhoods ``(n_peaks, 9)`` of the interior peaks of ``maps`` and map index.

    Filtering only where the peaks are (a few hundred pixels of a 128^2 map) instead of
    the whole map is what keeps the student cheap.
    """
    mask = find_peaks(maps, "interior")
    which, row, col = mask.nonzero(as_tuple=True)
    n = maps.shape[-1]
    # One flat gather (a linear index per neighbour) is cheaper than 2D advanced indexing.
    centre = (which * n + row) * n + col
    offsets = torch.tensor([dr * n + dc for dr in (-1, 0, 1) for dc in (-1, 0, 1)])
    patches = maps.reshape(-1)[centre[:, None] + offsets[None, :]]
    return patches, which


def _peak_values(maps: Tensor, filtered: Tensor) -> tuple[Tensor, Tensor]:
    """Filtered values ``(n_peaks, K)`` at the interior peaks of ``maps`` and their map index."""
    mask = find_peaks(maps, "interior")
    which, row, col = mask.nonzero(as_tuple=True)
    return filtered[which, :, row, col], which


class PeakFilterFeatures(Savable):
    """Histograms of filtered map values at the map's peaks (the paper's student).

    Peaks are strict 8-neighbour maxima of the map away from its edges; each of the
    ``K`` filters is applied and its value at every peak is counted into ``n_bins`` bins
    spanning the central ``coverage`` of the training values of that filter.

    Parameters
    ----------
    kernels : array (K, h, w), optional
        Linear filters (correlation). Exactly one of ``kernels`` and ``filter_fn``.
    filter_fn : callable, optional
        ``maps (B, N, N) -> (B, K, N, N)`` for non-linear filters (Roberts cross).
    n_bins : int
        Bins per filter (paper: 22).
    coverage : float
        Central fraction of the training values the bins span.

    Examples
    --------
    >>> maps = torch.randn(6, 32, 32)
    >>> f = PeakFilterFeatures(raw_kernel(), n_bins=5).fit(maps)
    >>> f.transform(maps).shape
    (6, 5)
    """

    def __init__(
        self,
        kernels: np.ndarray | None = None,
        filter_fn: Callable[[Tensor], Tensor] | None = None,
        n_bins: int = 22,
        coverage: float = 0.98,
    ) -> None:
        if (kernels is None) == (filter_fn is None):
            raise ValueError("give exactly one of kernels and filter_fn")
        if not 0 < coverage <= 1:
            raise ValueError(f"coverage must be in (0, 1], got {coverage}")
        self.kernels = None if kernels is None else np.asarray(kernels, dtype=np.float64)
        self.filter_fn = filter_fn
        self.n_bins = n_bins
        self.coverage = coverage

    @property
    def n_filters(self) -> int:
        return 1 if self.kernels is None else self.kernels.shape[0]

    def _values(self, maps: Tensor) -> tuple[Tensor, Tensor]:
        """Filtered values ``(n_peaks, K)`` at the interior peaks and their map index."""
        if self.kernels is not None:
            if self.kernels.shape[1:] != (3, 3):
                filtered = filter_maps(maps, torch.as_tensor(self.kernels, dtype=maps.dtype))
                return _peak_values(maps, filtered)
            patches, which = _peak_patches(maps)
            k = torch.as_tensor(self.kernels.reshape(len(self.kernels), 9).T, dtype=maps.dtype)
            return patches @ k, which
        return _peak_values(maps, self.filter_fn(maps))

    def values(self, maps: Tensor, chunk_size: int = 512) -> tuple[Tensor, Tensor]:
        """Filtered values ``(n_peaks, K)`` at all peaks of ``maps`` and their map index."""
        vals, whichs = [], []
        for i in range(0, maps.shape[0], chunk_size):
            v, w = self._values(maps[i : i + chunk_size])
            vals.append(v)
            whichs.append(w + i)
        return torch.cat(vals), torch.cat(whichs)

    def fit(self, maps: Tensor | None = None, values: Tensor | None = None) -> PeakFilterFeatures:
        """Bin edges from training maps (or their precomputed :meth:`values`)."""
        if values is None:
            values, _ = self.values(maps)
        self.edges_ = [_edges(v.double().numpy(), self.coverage, self.n_bins) for v in values.T]
        return self

    def histogram(self, values: Tensor, which: Tensor, n_maps: int) -> np.ndarray:
        """``(n_maps, K * n_bins)`` counts of precomputed :meth:`values`."""
        return _counts(values, which, n_maps, self.edges_).double().numpy()

    def transform(self, maps: Tensor, chunk_size: int = 512) -> np.ndarray:
        """``(B, K * n_bins)`` float64 counts."""
        out = []
        for i in range(0, maps.shape[0], chunk_size):
            chunk = maps[i : i + chunk_size]
            values, which = self._values(chunk)
            out.append(self.histogram(values, which, chunk.shape[0]))
        return np.concatenate(out)

    def get_state(self) -> dict:
        state = super().get_state()
        fn = state.pop("filter_fn")
        if fn is not None and fn is not roberts_cross:
            raise TypeError("only the Roberts-cross filter function can be saved")
        state["filter"] = None if fn is None else "roberts_cross"
        return state

    @classmethod
    def from_state(cls, state: dict) -> PeakFilterFeatures:
        state = dict(state)
        name = state.pop("filter")
        obj = super().from_state(state)
        obj.filter_fn = {None: None, "roberts_cross": roberts_cross}[name]
        return obj

    def names(self) -> list[str]:
        tags = (
            ["LL", "LH", "HL", "HH"]
            if self.n_filters == 4
            else [f"f{k}" for k in range(self.n_filters)]
        )
        return [f"{t}_bin{b}" for t in tags for b in range(self.n_bins)]


def band_names(levels: int) -> list[str]:
    """Names of the bands of a ``levels``-level 2D transform, in pywt order.

    Examples
    --------
    >>> band_names(2)
    ['cA2', 'cH2', 'cV2', 'cD2', 'cH1', 'cV1', 'cD1']
    """
    return _band_names(levels, ndim=2)


def _bands(coeffs) -> list[tuple[str, Tensor]]:
    return list(zip(band_names(len(coeffs) - 1), flatten_coeffs(coeffs), strict=True))


class MultiscalePeakFeatures(Savable):
    """Peak-height histograms of every level and band of the 2D wavelet coefficients.

    For each band (``A4, H4, V4, D4, ..., D1``) the strict local maxima of the band and of
    its negative (the minima) are histogrammed over the central ``coverage`` of their
    training values: ``(J * 3 + 1) * 2 * n_bins`` features, named by band, so a
    predictor's importances map back to scales.

    Examples
    --------
    >>> from shared import DWT2d
    >>> f = MultiscalePeakFeatures(DWT2d("db2", levels=2), n_bins=4).fit(torch.randn(4, 32, 32))
    >>> f.transform(torch.randn(3, 32, 32)).shape
    (3, 56)
    """

    def __init__(self, transform, n_bins: int = 10, coverage: float = 0.98) -> None:
        self.transform_ = transform
        self.n_bins = n_bins
        self.coverage = coverage

    def _values(self, maps: Tensor) -> list[tuple[str, Tensor, Tensor]]:
        with torch.no_grad():
            coeffs = self.transform_(maps[:, None].to(maps.dtype))
        out = []
        for name, band in _bands(coeffs):
            b = band[:, 0]
            for sign, tag in ((1.0, "max"), (-1.0, "min")):
                x = sign * b
                mask = find_peaks(x, "interior")
                which, r, c = mask.nonzero(as_tuple=True)
                out.append((f"{name}_{tag}", x[which, r, c], which))
        return out

    def fit(self, maps: Tensor) -> MultiscalePeakFeatures:
        self.edges_ = [
            _edges(v.double().numpy(), self.coverage, self.n_bins) for _, v, _ in self._values(maps)
        ]
        return self

    def transform(self, maps: Tensor, chunk_size: int = 256) -> np.ndarray:
        out = []
        for i in range(0, maps.shape[0], chunk_size):
            chunk = maps[i : i + chunk_size]
            vals = self._values(chunk)
            hist = [
                _counts(v[:, None], w, chunk.shape[0], [e])
                for (_, v, w), e in zip(vals, self.edges_, strict=True)
            ]
            out.append(torch.cat(hist, dim=1).double().numpy())
        return np.concatenate(out)

    def names(self) -> list[str]:
        return [
            f"{b}_{t}_bin{k}"
            for b in band_names(self.transform_.levels)
            for t in ("max", "min")
            for k in range(self.n_bins)
        ]


class WaveletL1Features(Savable):
    """The wavelet l1-norm: per band, the sum of ``|coefficient|`` in bins of its value.

    For each band of the 2D transform (``A_J, H_J, V_J, D_J, ..., D_1``) the coefficient
    values are binned into ``n_bins`` uniform bins over the central ``coverage`` of their
    training values (values outside go to the end bins) and each bin holds the sum of the
    absolute values that fall in it, per map. Unlike peak counts it uses every
    coefficient, tails weighted by their amplitude (the "starlet l1-norm" statistic of
    weak-lensing cosmology, here on the learned wavelet): ``(3 J + 1) * n_bins`` features.

    Examples
    --------
    >>> from shared import DWT2d
    >>> f = WaveletL1Features(DWT2d("db2", levels=2), n_bins=4).fit(torch.randn(4, 32, 32))
    >>> f.transform(torch.randn(3, 32, 32)).shape
    (3, 28)
    """

    def __init__(self, transform, n_bins: int = 12, coverage: float = 0.998) -> None:
        if not 0 < coverage <= 1:
            raise ValueError(f"coverage must be in (0, 1], got {coverage}")
        self.transform_ = transform
        self.n_bins = n_bins
        self.coverage = coverage

    def _bands(self, maps: Tensor) -> list[tuple[str, Tensor]]:
        with torch.no_grad():
            coeffs = self.transform_(maps[:, None])
        return [(name, band[:, 0].reshape(maps.shape[0], -1)) for name, band in _bands(coeffs)]

    def fit(self, maps: Tensor, sample: int = 1000) -> WaveletL1Features:
        bands = self._bands(maps[:sample])
        self.edges_ = [
            _edges(b.double().numpy().ravel(), self.coverage, self.n_bins) for _, b in bands
        ]
        return self

    def transform(self, maps: Tensor, chunk_size: int = 512) -> np.ndarray:
        out = []
        for i in range(0, maps.shape[0], chunk_size):
            parts = [
                _binned_l1(b, e)
                for (_, b), e in zip(
                    self._bands(maps[i : i + chunk_size]), self.edges_, strict=True
                )
            ]
            out.append(torch.cat(parts, dim=1).numpy())
        return np.concatenate(out)

    def names(self) -> list[str]:
        return [
            f"{b}_l1_bin{k}" for b in band_names(self.transform_.levels) for k in range(self.n_bins)
        ]


class PowerSpectrumFeatures(Savable):
    """log10 of the binned power spectrum (log-spaced multipoles from the fundamental).

    Examples
    --------
    >>> f = PowerSpectrumFeatures(3.5, n_bins=5).fit(torch.randn(2, 32, 32))
    >>> f.transform(torch.randn(2, 32, 32)).shape
    (2, 5)
    """

    def __init__(self, side_angle_deg: float, n_bins: int = 15) -> None:
        self.side_angle_deg = side_angle_deg
        self.n_bins = n_bins

    def fit(self, maps: Tensor) -> PowerSpectrumFeatures:
        n = maps.shape[-1]
        l_min = 360.0 / self.side_angle_deg
        self.l_edges_ = np.geomspace(1.5 * l_min, l_min * n / 2, self.n_bins + 1)
        return self

    def transform(self, maps: Tensor) -> np.ndarray:
        _, power = power_spectrum(maps, self.side_angle_deg, self.l_edges_, chunk_size=256)
        return np.log10(np.maximum(power.double().numpy(), 1e-30))


class PixelQuantileFeatures(Savable):
    """Per-map pixel quantiles (the shortcut of noiseless lognormal maps).

    Examples
    --------
    >>> PixelQuantileFeatures((0.1, 0.5)).fit(None).transform(torch.randn(3, 8, 8)).shape
    (3, 2)
    """

    def __init__(self, quantiles: Sequence[float]) -> None:
        self.quantiles = tuple(quantiles)

    def fit(self, maps) -> PixelQuantileFeatures:
        return self

    def transform(self, maps: Tensor) -> np.ndarray:
        q = torch.tensor(self.quantiles, dtype=torch.float64)
        x = maps.reshape(maps.shape[0], -1).double()
        return torch.quantile(x, q, dim=1).T.numpy()


class MinkowskiFeatures(Savable):
    """Minkowski functionals V0, V1, V2 (lenstools) on thresholds from training quantiles."""

    def __init__(self, side_angle_deg: float, n_bins: int = 10, coverage: float = 0.98) -> None:
        self.side_angle_deg = side_angle_deg
        self.n_bins = n_bins
        self.coverage = coverage

    def fit(self, maps: Tensor) -> MinkowskiFeatures:
        sample = maps[: min(len(maps), 200)].double().numpy().ravel()
        self.thresholds_ = _edges(sample, self.coverage, self.n_bins)
        return self

    def transform(self, maps: Tensor) -> np.ndarray:
        mf = minkowski_functionals(maps, self.thresholds_, self.side_angle_deg)
        return mf.reshape(mf.shape[0], -1)


def _plane_names(n_scales: int) -> list[str]:
    return [f"w{j + 1}" for j in range(n_scales - 1)] + [f"c{n_scales - 1}"]


class StarletL1Features(Savable):
    """The starlet l1-norm (Ajani et al. 2021): per starlet plane, the sum of ``|w|`` in
    bins of its value.

    The map is decomposed by :func:`~cosmology.statistics.starlet` into ``n_scales - 1``
    wavelet scales and the coarse residual; every plane's pixel values are binned into
    ``n_bins`` uniform bins over the central ``coverage`` of their training values (values
    outside go to the end bins) and each bin holds the sum of the absolute values in it.
    Ajani et al. bin the signal-to-noise ratio ``w / sigma_j``; with one noise level per
    scale that is the same statistic up to each scale's bin range, which here comes from
    the training maps. ``n_scales * n_bins`` features.

    Examples
    --------
    >>> f = StarletL1Features(n_scales=3, n_bins=4).fit(torch.randn(4, 32, 32))
    >>> f.transform(torch.randn(2, 32, 32)).shape, f.n_parameters()
    ((2, 12), 15)
    """

    def __init__(self, n_scales: int = 5, n_bins: int = 20, coverage: float = 0.998) -> None:
        if not 0 < coverage <= 1:
            raise ValueError(f"coverage must be in (0, 1], got {coverage}")
        self.n_scales = n_scales
        self.n_bins = n_bins
        self.coverage = coverage

    def _planes(self, maps: Tensor) -> Tensor:
        return starlet(maps, self.n_scales).reshape(maps.shape[0], self.n_scales, -1)

    def fit(self, maps: Tensor, sample: int = 1000) -> StarletL1Features:
        planes = self._planes(maps[:sample])
        self.edges_ = [
            _edges(planes[:, j].double().numpy().ravel(), self.coverage, self.n_bins)
            for j in range(self.n_scales)
        ]
        return self

    def transform(self, maps: Tensor, chunk_size: int = 256) -> np.ndarray:
        out = []
        for i in range(0, maps.shape[0], chunk_size):
            planes = self._planes(maps[i : i + chunk_size])
            parts = [_binned_l1(planes[:, j], e) for j, e in enumerate(self.edges_)]
            out.append(torch.cat(parts, dim=1).numpy())
        return np.concatenate(out)

    def names(self) -> list[str]:
        return [f"{p}_l1_bin{k}" for p in _plane_names(self.n_scales) for k in range(self.n_bins)]

    def n_parameters(self) -> int:
        """Numbers fitted on the training maps: the bin edges."""
        return sum(len(e) for e in self.edges_)


class StarletPeakFeatures(Savable):
    """Starlet peak counts (Ajani et al. 2020): per starlet plane, the heights of its
    peaks histogrammed.

    Peaks are strict 8-neighbour maxima of each plane of
    :func:`~cosmology.statistics.starlet` away from the edges; their heights are counted
    in ``n_bins`` uniform bins over the central ``coverage`` of the training heights of that
    plane (heights outside are not counted). ``n_scales * n_bins`` features.

    Examples
    --------
    >>> f = StarletPeakFeatures(n_scales=3, n_bins=4).fit(torch.randn(4, 32, 32))
    >>> f.transform(torch.randn(2, 32, 32)).shape
    (2, 12)
    """

    def __init__(self, n_scales: int = 5, n_bins: int = 20, coverage: float = 0.998) -> None:
        if not 0 < coverage <= 1:
            raise ValueError(f"coverage must be in (0, 1], got {coverage}")
        self.n_scales = n_scales
        self.n_bins = n_bins
        self.coverage = coverage

    def _values(self, maps: Tensor) -> list[tuple[Tensor, Tensor]]:
        planes = starlet(maps, self.n_scales)
        out = []
        for j in range(self.n_scales):
            x = planes[:, j]
            which, r, c = find_peaks(x, "interior").nonzero(as_tuple=True)
            out.append((x[which, r, c], which))
        return out

    def fit(self, maps: Tensor) -> StarletPeakFeatures:
        self.edges_ = [
            _edges(v.double().numpy(), self.coverage, self.n_bins) for v, _ in self._values(maps)
        ]
        return self

    def transform(self, maps: Tensor, chunk_size: int = 256) -> np.ndarray:
        out = []
        for i in range(0, maps.shape[0], chunk_size):
            chunk = maps[i : i + chunk_size]
            hist = [
                _counts(v[:, None], w, chunk.shape[0], [e])
                for (v, w), e in zip(self._values(chunk), self.edges_, strict=True)
            ]
            out.append(torch.cat(hist, dim=1).double().numpy())
        return np.concatenate(out)

    def names(self) -> list[str]:
        return [
            f"{p}_peaks_bin{k}" for p in _plane_names(self.n_scales) for k in range(self.n_bins)
        ]

    def n_parameters(self) -> int:
        """Numbers fitted on the training maps: the bin edges."""
        return sum(len(e) for e in self.edges_)


#: How the scattering coefficients of several orientations are combined.
ORIENTATIONS = ("all", "relative", "mean")


def scattering_paths(J: int, L: int) -> list[tuple[int, ...]]:
    """The paths of kymatio's 2D scattering coefficients, in its output order.

    ``()`` for the low-pass (order 0), ``(j1, theta1)`` for order 1 and
    ``(j1, theta1, j2, theta2)`` (``j2 > j1``) for order 2: ``1 + J L + L^2 J (J - 1) / 2``.

    Examples
    --------
    >>> p = scattering_paths(2, 2)
    >>> len(p), p[:3], p[-1]
    (9, [(), (0, 0), (0, 1)], (0, 1, 1, 1))
    """
    first = [(j, t) for j in range(J) for t in range(L)]
    second = [(j1, t1, j2, t2) for j1, t1 in first for j2, t2 in first if j2 > j1]
    return [(), *first, *second]


def _path_name(path: tuple[int, ...], orientations: str, L: int) -> str:
    """The name of the reduced path a kymatio path belongs to."""
    if not path:
        return "S0"
    if len(path) == 2:
        return f"S1_j{path[0]}" + ("" if orientations != "all" else f"_t{path[1]}")
    j1, t1, j2, t2 = path
    if orientations == "mean":
        return f"S2_j{j1}_j{j2}"
    if orientations == "relative":
        return f"S2_j{j1}_j{j2}_dt{(t2 - t1) % L}"
    return f"S2_j{j1}_t{t1}_j{j2}_t{t2}"


def _orientation_groups(J: int, L: int, orientations: str) -> tuple[list[str], list[int]]:
    """The names of the reduced paths and, for every kymatio path, its reduced path."""
    keys = [_path_name(p, orientations, L) for p in scattering_paths(J, L)]
    groups = list(dict.fromkeys(keys))
    index = {k: i for i, k in enumerate(groups)}
    return groups, [index[k] for k in keys]


class ScatteringFeatures(Savable):
    """kymatio's 2D scattering transform (Morlet wavelets), averaged over each map.

    ``kymatio.torch.Scattering2D(J, L)`` gives the low-pass ``S0``, the first-order
    ``S1(j, theta) = |x * psi_{j,theta}| * phi_J`` and the second-order
    ``S2(j1, theta1, j2, theta2) = ||x * psi_{j1,theta1}| * psi_{j2,theta2}| * phi_J``
    (``j2 > j1``); every channel is averaged over the map (Cheng et al. 2020). Then
    ``orientations`` combines the angles: ``"all"`` keeps them
    (``1 + J L + L^2 J (J-1) / 2`` features), ``"relative"`` averages the pairs with the same
    ``theta2 - theta1`` (``1 + J + L J (J-1) / 2``) and ``"mean"`` every angle
    (``1 + J + J (J-1) / 2``, the isotropic reduction). With ``log`` the orders 1 and 2
    are replaced by their logarithm (``S0``, which may be negative, is not).

    Nothing is fitted; ``J`` must satisfy ``2**J <= N`` (kymatio's limit).

    Examples
    --------
    >>> f = ScatteringFeatures(J=2, L=4, orientations="mean").fit(torch.randn(2, 16, 16))
    >>> f.transform(torch.randn(3, 16, 16)).shape, f.names()[:3]
    ((3, 4), ['S0', 'S1_j0', 'S1_j1'])
    """

    _state_exclude = ("_scattering",)

    def __init__(self, J: int = 4, L: int = 8, log: bool = True, orientations: str = "all"):
        if orientations not in ORIENTATIONS:
            raise ValueError(f"orientations must be one of {ORIENTATIONS}, got {orientations!r}")
        if J < 1 or L < 1:
            raise ValueError(f"J and L must be >= 1, got J={J}, L={L}")
        self.J = J
        self.L = L
        self.log = log
        self.orientations = orientations
        self._scattering = None

    def _transform_for(self, n: int):
        if 2**self.J > n:
            raise ValueError(
                f"the scattering transform needs 2**J <= N: J={self.J} is too large for "
                f"{n}x{n} maps (at most {int(np.log2(n))})"
            )
        if self._scattering is None or tuple(self._scattering.shape) != (n, n):
            from cosmology._kymatio import Scattering2D

            self._scattering = Scattering2D(J=self.J, shape=(n, n), L=self.L)
        return self._scattering

    def fit(self, maps: Tensor) -> ScatteringFeatures:
        """Check the maps' size against ``J`` (nothing is learned)."""
        self._transform_for(maps.shape[-1])
        return self

    def coefficients(self, maps: Tensor, chunk_size: int = 64) -> Tensor:
        """``(B, n_paths)`` float64 map averages of every scattering path (no log)."""
        scattering = self._transform_for(maps.shape[-1])
        out = []
        with torch.no_grad():
            for i in range(0, maps.shape[0], chunk_size):
                s = scattering(maps[i : i + chunk_size].contiguous())
                out.append(s.mean(dim=(-2, -1)).double())
        return torch.cat(out)

    def reduce(self, coefficients: Tensor) -> np.ndarray:
        """The features from :meth:`coefficients`: orientations combined, then the log."""
        groups, index = _orientation_groups(self.J, self.L, self.orientations)
        member = torch.zeros(len(index), len(groups), dtype=torch.float64)
        member[torch.arange(len(index)), torch.tensor(index)] = 1.0
        x = coefficients.double() @ (member / member.sum(0))
        if self.log:
            x[:, 1:] = torch.log(x[:, 1:].clamp(min=1e-30))
        return x.numpy()

    def transform(self, maps: Tensor) -> np.ndarray:
        """``(B, F)`` float64 features."""
        return self.reduce(self.coefficients(maps))

    def names(self) -> list[str]:
        return _orientation_groups(self.J, self.L, self.orientations)[0]

    def n_parameters(self) -> int:
        """Numbers fitted on the training maps: none (the Morlet filters are fixed)."""
        return 0


class WaveletScatteringFeatures(Savable):
    """A scattering transform through a 2D DWT (the learned wavelet) instead of Morlets.

    With ``W`` the ``J``-level transform and its detail bands ``w_{j,o}`` (``o`` in H, V, D):
    the mean of the approximation ``cA_J`` (order 0); the first order
    ``mean |w_{j,o}|`` of every detail band; the second order ``mean |v_{j2,o2}|`` where
    ``v`` are the detail bands of the ``(J - j1)``-level transform (same wavelet, same
    boundary mode) of ``|w_{j1,o1}|``, i.e. the scales ``j2 = j1 + 1 .. J``. So
    ``1 + 3 J + 9 J (J - 1) / 2`` features; with ``log`` orders 1 and 2 are replaced by
    their logarithm. Nothing but the wavelet's taps (counted by the student) is learned.

    Examples
    --------
    >>> from shared import DWT2d
    >>> f = WaveletScatteringFeatures(DWT2d("db2", levels=2)).fit(torch.randn(2, 32, 32))
    >>> f.transform(torch.randn(3, 32, 32)).shape, f.names()[:2], f.names()[-1]
    ((3, 16), ['A2', 'H2'], 'D1_D2')
    """

    def __init__(self, transform, log: bool = True) -> None:
        self.transform_ = transform
        self.log = log

    def fit(self, maps: Tensor) -> WaveletScatteringFeatures:
        """Nothing is learned from the maps."""
        return self

    def _paths(self, maps: Tensor) -> list[Tensor]:
        """The ``(B,)`` map averages of every path, in the order of :meth:`names`."""
        t = self.transform_
        with torch.no_grad():
            coeffs = t(maps[:, None])
            first, second = [coeffs[0][:, 0].mean(dim=(-2, -1))], []
            for i, detail in enumerate(coeffs[1:]):
                u = torch.cat(detail, dim=1).abs()  # (B, 3, n, n): H, V, D of level J - i
                first += list(u.mean(dim=(-2, -1)).unbind(1))
                if i == 0:
                    continue
                # Levels J - i + 1 .. J of |w|, coarse first: its details at every j2 > j1.
                for sub_detail in DWT2d(t.wavelet, levels=i, mode=t.mode)(u)[1:]:
                    for band in sub_detail:
                        second += list(band.abs().mean(dim=(-2, -1)).unbind(1))
        return first + second

    def transform(self, maps: Tensor, chunk_size: int = 256) -> np.ndarray:
        """``(B, F)`` float64 features."""
        out = []
        for i in range(0, maps.shape[0], chunk_size):
            x = torch.stack(self._paths(maps[i : i + chunk_size]), 1).double()
            if self.log:
                x[:, 1:] = torch.log(x[:, 1:].clamp(min=1e-30))
            out.append(x.numpy())
        return np.concatenate(out)

    def names(self) -> list[str]:
        J = self.transform_.levels
        first = [f"A{J}"] + [f"{o}{j}" for j in range(J, 0, -1) for o in "HVD"]
        second = [
            f"{o1}{j1}_{o2}{j2}"
            for j1 in range(J - 1, 0, -1)
            for j2 in range(J, j1, -1)
            for o2 in "HVD"
            for o1 in "HVD"
        ]
        return first + second

    def n_parameters(self) -> int:
        """Numbers fitted on the training maps: none (the wavelet's taps count apart)."""
        return 0


class ConcatFeatures(Savable):
    """Several feature objects side by side (power spectrum + peaks).

    Examples
    --------
    >>> f = ConcatFeatures([PixelQuantileFeatures((0.5,)), StarletL1Features(3, 2)])
    >>> f.fit(torch.randn(4, 16, 16)).transform(torch.randn(2, 16, 16)).shape
    (2, 7)
    """

    def __init__(self, parts: Sequence) -> None:
        self.parts = list(parts)

    def fit(self, maps: Tensor) -> ConcatFeatures:
        for p in self.parts:
            p.fit(maps)
        return self

    def transform(self, maps: Tensor) -> np.ndarray:
        return np.concatenate([p.transform(maps) for p in self.parts], axis=1)

    def n_parameters(self) -> int:
        """The fitted numbers its parts count (:func:`feature_parameters`)."""
        return sum(feature_parameters(p) for p in self.parts)


def feature_parameters(features) -> int:
    """Numbers a feature object fitted on the training maps, where it counts them.

    Feature sets added with the scattering and starlet statistics count their bin edges
    (:meth:`StarletL1Features.n_parameters`); the older ones count none, as before.

    Examples
    --------
    >>> feature_parameters(StarletL1Features(3, 4).fit(torch.randn(2, 16, 16)))
    15
    >>> feature_parameters(PixelQuantileFeatures((0.5,)))
    0
    """
    count = getattr(features, "n_parameters", None)
    return int(count()) if callable(count) else 0


# --------------------------------------------------------------------------- predictors


def check_predictions(pred: np.ndarray, what: str) -> np.ndarray:
    """Raise a ``ValueError`` naming ``what`` if predictions are not all finite."""
    pred = np.asarray(pred, dtype=np.float64)
    if not np.all(np.isfinite(pred)):
        bad = (
            int(np.sum(~np.isfinite(pred).all(axis=-1)))
            if pred.ndim > 1
            else int(np.sum(~np.isfinite(pred)))
        )
        raise ValueError(f"{what}: {bad} predictions are NaN or infinite")
    return pred


class TemplateChi2(Savable):
    """The paper's chi-square template classifier over the training cosmologies.

    ``fit`` keeps, for every distinct parameter vector, the mean feature vector and the
    pseudo-inverse of a covariance: each cosmology's own (``"per_class"``, the
    reference's) or the within-cosmology covariance pooled over all of them
    (``"pooled"``, stable when bins are many and maps per cosmology few). ``predict``
    returns the parameters of the cosmology with the smallest chi-square (no log-det
    term, as in the reference), so predictions are quantised to the training cosmologies.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([[0.3, 0.8], [0.25, 0.9]], 20, axis=0)
    >>> X = rng.normal(size=(40, 3)) + 5 * y[:, :1]
    >>> TemplateChi2("pooled").fit(X, y).predict(X[:2])
    array([[0.3, 0.8],
           [0.3, 0.8]])
    """

    def __init__(self, covariance: str = "per_class") -> None:
        if covariance not in ("per_class", "pooled"):
            raise ValueError(f"covariance must be 'per_class' or 'pooled', got {covariance!r}")
        self.covariance = covariance

    def fit(self, X: np.ndarray, y: np.ndarray) -> TemplateChi2:
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        classes, label = np.unique(np.round(y, 10), axis=0, return_inverse=True)
        label = label.ravel()
        if len(classes) < 2:
            raise ValueError(
                "the template student needs at least two cosmologies in the training data; "
                f"found {len(classes)} (use a continuous regressor for such data)"
            )
        counts = np.bincount(label)
        if counts.min() < 2:
            raise ValueError("the template student needs at least two maps per cosmology")
        self.params_ = classes
        self.means_ = np.stack([X[label == k].mean(0) for k in range(len(classes))])
        covs = [
            np.cov(X[label == k], rowvar=False).reshape(X.shape[1], X.shape[1])
            for k in range(len(classes))
        ]
        if self.covariance == "pooled":
            pooled = sum((c - 1) * cov for c, cov in zip(counts, covs, strict=True)) / (
                counts.sum() - len(classes)
            )
            self.precisions_ = np.repeat(
                np.linalg.pinv(pooled, hermitian=True)[None], len(classes), 0
            )
        else:
            self.precisions_ = np.stack([np.linalg.pinv(c, hermitian=True) for c in covs])
        return self

    def chi2(self, X: np.ndarray) -> np.ndarray:
        """``(n, n_classes)`` chi-square of every map against every template."""
        d = np.asarray(X, dtype=np.float64)[:, None, :] - self.means_[None]
        return np.einsum("nki,kij,nkj->nk", d, self.precisions_, d)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.params_[np.argmin(self.chi2(X), axis=1)]

    def n_parameters(self) -> int:
        """Numbers stored: template means and precision matrices (symmetric halves)."""
        k, d = self.means_.shape
        n_prec = 1 if self.covariance == "pooled" else k
        return k * d + n_prec * d * (d + 1) // 2


class _MultiOutput(Savable):
    """One regressor per output column, behind fit/predict (for xgboost)."""

    _state_exclude = ("factory",)

    def __init__(self, factory: Callable[[], object]) -> None:
        self.factory = factory

    def fit(self, X: np.ndarray, y: np.ndarray) -> _MultiOutput:
        self.models_ = [self.factory().fit(X, y[:, j]) for j in range(y.shape[1])]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.stack([m.predict(X) for m in self.models_], axis=1)

    def n_parameters(self) -> int:
        total = 0
        for m in self.models_:
            trees = m.get_booster().trees_to_dataframe()
            total += len(trees)  # one threshold or leaf value per node
        return total


class _Ridge(Savable):
    """log1p of counts is not needed: features are standardised, then ridge."""

    def __init__(self, alpha: float) -> None:
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.model = make_pipeline(StandardScaler(), Ridge(alpha=alpha))

    def fit(self, X: np.ndarray, y: np.ndarray) -> _Ridge:
        self.model.fit(X, y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict(X)

    def n_parameters(self) -> int:
        ridge = self.model[-1]
        return int(ridge.coef_.size + np.size(ridge.intercept_) + 2 * ridge.coef_.shape[-1])


def make_regressor(
    kind: str,
    *,
    alpha: float = 1.0,
    n_estimators: int = 300,
    max_depth: int = 4,
    learning_rate: float = 0.05,
    seed: int = 0,
    n_jobs: int = 2,
):
    """A continuous regressor of all outputs: ``ridge`` or ``xgboost``.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(50, 3)); y = X[:, :2] * 2
    >>> make_regressor("ridge", alpha=1e-6).fit(X, y).predict(X[:1]).shape
    (1, 2)
    """
    if kind == "ridge":
        return _Ridge(alpha)
    if kind == "xgboost":
        from xgboost import XGBRegressor

        return _MultiOutput(
            lambda: XGBRegressor(
                n_estimators=n_estimators,
                max_depth=max_depth,
                learning_rate=learning_rate,
                subsample=0.8,
                colsample_bytree=0.8,
                random_state=seed,
                n_jobs=n_jobs,
                tree_method="hist",
            )
        )
    raise ValueError(f"unknown regressor {kind!r}; accepted: ridge, xgboost")


class ConstantPredictor(Savable):
    """The trivial student: the training mean of every target, whatever the map.

    Examples
    --------
    >>> ConstantPredictor().fit(None, np.array([[0.2, 0.8], [0.4, 0.8]])).predict(np.zeros((2, 3)))
    array([[0.3, 0.8],
           [0.3, 0.8]])
    """

    def fit(self, X, y: np.ndarray) -> ConstantPredictor:
        self.mean_ = np.asarray(y, dtype=np.float64).mean(0, keepdims=True)
        return self

    def predict(self, X) -> np.ndarray:
        return np.repeat(self.mean_, len(X), 0)

    def n_parameters(self) -> int:
        return int(self.mean_.size)


class _NoFeatures(Savable):
    """Features of nothing, for the trivial student: one empty row per map."""

    def fit(self, maps: Tensor) -> _NoFeatures:
        return self

    def transform(self, maps: Tensor) -> np.ndarray:
        return np.zeros((maps.shape[0], 0))


class MapStudent(Savable):
    """A fitted student: map features and a predictor of the targets, applied end to end.

    Parameters
    ----------
    features : object
        A fitted feature object (``transform(maps) -> (B, F)``).
    model : object
        A fitted predictor (``predict(X) -> (B, n_targets)``).
    method : str
        The method's name in the run's ``metrics.csv``.
    n_pix, side_angle_deg : int, float
        The geometry of the maps it was fitted on; other maps are refused.
    targets : tuple of str
        What the columns of a prediction are.
    wavelet : str, optional
        The grid point of the learned wavelet it reads the maps through.
    n_taps : int
        Learned filter taps it depends on (counted as parameters; 0 for fixed filters).

    Examples
    --------
    >>> maps = torch.randn(6, 32, 32); y = np.random.default_rng(0).normal(size=(6, 2))
    >>> feats = PixelQuantileFeatures((0.1, 0.5, 0.9)).fit(maps)
    >>> model = make_regressor("ridge", alpha=1.0).fit(feats.transform(maps), y)
    >>> s = MapStudent(feats, model, "pixel_quantiles_ridge", 32, 3.5, ("omega_m", "sigma_8"))
    >>> s.predict(maps).shape
    (6, 2)
    """

    def __init__(
        self,
        features,
        model,
        method: str,
        n_pix: int,
        side_angle_deg: float,
        targets: Sequence[str],
        wavelet: str | None = None,
        n_taps: int = 0,
    ) -> None:
        self.features = features
        self.model = model
        self.method = method
        self.n_pix = int(n_pix)
        self.side_angle_deg = float(side_angle_deg)
        self.targets = tuple(targets)
        self.wavelet = wavelet
        self.n_taps = int(n_taps)

    @classmethod
    def trivial(cls, y: np.ndarray, n_pix: int, side_angle_deg: float, targets) -> MapStudent:
        """The training-mean student."""
        return cls(
            _NoFeatures(),
            ConstantPredictor().fit(None, y),
            "trivial",
            n_pix,
            side_angle_deg,
            targets,
        )

    def check_maps(self, maps: Tensor, source: str = "maps") -> None:
        """Refuse maps of another size than the student was fitted on."""
        if maps.ndim != 3 or tuple(maps.shape[-2:]) != (self.n_pix, self.n_pix):
            raise ValueError(
                f"{source}: maps of shape {tuple(maps.shape[-2:])}; the student "
                f"{self.method!r} was fitted on {self.n_pix}x{self.n_pix} maps"
            )

    def predict(self, maps: Tensor) -> np.ndarray:
        """Predictions ``(B, n_targets)`` for maps ``(B, N, N)``, checked to be finite."""
        self.check_maps(maps)
        return self.predict_features(self.features.transform(maps))

    def predict_features(self, X: np.ndarray) -> np.ndarray:
        """Predictions from ``self.features.transform(maps)`` computed already (students
        sharing their features), checked to be finite: the same as :meth:`predict`."""
        return check_predictions(self.model.predict(X), f"the student {self.method!r}")

    def n_parameters(self) -> int:
        """Numbers the student stores to predict: the predictor's, plus learned taps, plus
        what its features fitted where they count it (:func:`feature_parameters`)."""
        count = getattr(self.model, "n_parameters", None)
        head = int(count()) if callable(count) else 0
        return head + self.n_taps + feature_parameters(self.features)


#: The classes a saved cosmology student may contain (see :func:`shared.students.load_student`).
STUDENT_CLASSES = class_map(
    PeakFilterFeatures,
    MultiscalePeakFeatures,
    WaveletL1Features,
    PowerSpectrumFeatures,
    PixelQuantileFeatures,
    MinkowskiFeatures,
    ScatteringFeatures,
    StarletL1Features,
    StarletPeakFeatures,
    WaveletScatteringFeatures,
    ConcatFeatures,
    TemplateChi2,
    _MultiOutput,
    _Ridge,
    ConstantPredictor,
    _NoFeatures,
    MapStudent,
    TaylorNetPredictor,
)
