"""Batched statistics against lenstools (the oracle) on the same maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from cosmology._lenstools import convergence_map
from cosmology.statistics import (
    binned_theory,
    ell_grid,
    filter_maps,
    find_peaks,
    minkowski_functionals,
    moments,
    peak_counts,
    power_spectrum,
)


def _smooth_maps(n_maps: int, n: int, seed: int, dtype=np.float32) -> np.ndarray:
    """Correlated maps (smoothed noise), where peaks are few and meaningful."""
    rng = np.random.default_rng(seed)
    white = rng.normal(size=(n_maps, n, n))
    return ndimage.gaussian_filter(white, (0, 1.5, 1.5), mode="wrap").astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_peak_counts_equal_lenstools(dtype):
    maps = _smooth_maps(12, 64, seed=1, dtype=dtype)
    maps[3, 10:12, 10:12] = 5.0  # a plateau: ties are not peaks
    maps[4, 0, 0] = 3.0  # a corner peak, found only through the wrap-around
    thresholds = np.concatenate([[-1.0], np.linspace(-0.3, 0.4, 15), [10.0]])
    ours = peak_counts(torch.from_numpy(maps), thresholds).numpy()
    assert ours.sum() > 100
    for i in range(len(maps)):
        _, density = convergence_map(maps[i], 3.5).peakCount(thresholds)
        counts = density * np.diff(thresholds)
        np.testing.assert_allclose(counts, np.rint(counts), atol=1e-9)
        np.testing.assert_array_equal(ours[i], np.rint(counts).astype(int))
    assert ours[4].sum() == peak_counts(maps[4], thresholds).sum()


def test_peaks_are_strict_local_maxima():
    m = torch.zeros(6, 6)
    m[2, 2] = 1.0
    m[4, 4] = m[4, 5] = 2.0  # tie
    m[0, 0] = 3.0
    mask = find_peaks(m)
    assert mask.sum() == 2 and mask[2, 2] and mask[0, 0]
    interior = find_peaks(m, "interior")
    assert interior.sum() == 1 and interior[2, 2]
    brute = np.zeros((6, 6), bool)
    x = m.numpy()
    for i in range(1, 5):
        for j in range(1, 5):
            nb = np.delete(x[i - 1 : i + 2, j - 1 : j + 2].ravel(), 4)
            brute[i, j] = (x[i, j] > nb).all()
    np.testing.assert_array_equal(interior.numpy(), brute)
    with pytest.raises(ValueError, match="boundary"):
        find_peaks(m, "reflect")


def test_peak_counts_chunking_and_bins():
    maps = torch.from_numpy(_smooth_maps(10, 32, seed=2))
    t = np.linspace(-0.5, 0.5, 9)
    np.testing.assert_array_equal(peak_counts(maps, t, chunk_size=3), peak_counts(maps, t))
    total = find_peaks(maps).flatten(1).sum(1)
    wide = peak_counts(maps, [-100.0, 100.0])[:, 0]
    np.testing.assert_array_equal(total, wide)
    with pytest.raises(ValueError, match="increasing"):
        peak_counts(maps, [0.0, 0.0, 1.0])


def test_filtered_peaks_equal_lenstools_on_filtered_maps():
    maps = _smooth_maps(4, 48, seed=3, dtype=np.float64)
    rng = np.random.default_rng(0)
    kernels = rng.normal(size=(3, 3, 3))
    kernels[0] = [[0, 1, 0], [1, -4, 1], [0, 1, 0]]  # Laplacian
    t = np.linspace(-1.0, 1.0, 11)
    ours = peak_counts(maps, t, kernels=kernels).numpy()
    assert ours.shape == (4, 3, 10)
    for i in range(4):
        for k in range(3):
            filtered = ndimage.correlate(maps[i], kernels[k], mode="wrap")
            np.testing.assert_allclose(filter_maps(maps[i], kernels[k])[0, 0], filtered, atol=1e-12)
            _, density = convergence_map(filtered, 3.5).peakCount(t)
            np.testing.assert_array_equal(ours[i, k], np.rint(density * np.diff(t)))


def test_power_spectrum_matches_lenstools():
    maps = _smooth_maps(5, 128, seed=4, dtype=np.float64) * 0.02
    edges = np.concatenate([[50.0], np.geomspace(103.0, 1.5e4, 20)])
    ell, ours = power_spectrum(torch.from_numpy(maps), 3.5, edges)
    for i in range(len(maps)):
        ell_lt, ps_lt = convergence_map(maps[i], 3.5).powerSpectrum(edges)
        np.testing.assert_allclose(ell, ell_lt)
        np.testing.assert_allclose(ours[i].numpy(), ps_lt, rtol=0.01, atol=0)
        # Beyond the 1% the issue asks: same binning, same normalisation.
        np.testing.assert_allclose(ours[i].numpy(), ps_lt, rtol=1e-6, atol=0)
    _, ours32 = power_spectrum(torch.from_numpy(maps.astype(np.float32)), 3.5, edges)
    # float32 rounding sets a floor far below the signal (these maps are smoothed).
    floor = 1e-6 * float(ours.max())
    np.testing.assert_allclose(ours32.numpy(), ours.numpy(), rtol=1e-3, atol=floor)


def test_power_spectrum_of_white_noise_and_theory_binning():
    n, side, sigma = 64, 2.0, 0.1
    x = torch.randn(200, n, n, dtype=torch.float64) * sigma
    edges = np.linspace(200.0, 9000.0, 6)
    _, p = power_spectrum(x, side, edges)
    pixel = np.deg2rad(side) / n
    expected = binned_theory(lambda l: np.full_like(l, sigma**2 * pixel**2), edges, n, side)
    np.testing.assert_allclose(p.mean(0).numpy(), expected, rtol=0.05)
    g = ell_grid(n, side)
    assert g[0, 1] == pytest.approx(360.0 / side)


def test_minkowski_and_moments():
    maps = _smooth_maps(2, 32, seed=5, dtype=np.float64)
    t = np.linspace(-0.3, 0.3, 7)
    mf = minkowski_functionals(torch.from_numpy(maps), t, 3.5)
    _, v0, v1, v2 = convergence_map(maps[1], 3.5).minkowskiFunctionals(t)
    np.testing.assert_allclose(mf[1], np.stack([v0, v1, v2]))
    assert np.all(np.diff(mf[0, 0]) <= 0)  # V0 (area fraction) falls with the threshold
    m = moments(torch.from_numpy(maps))
    from scipy.stats import kurtosis, skew

    np.testing.assert_allclose(m["skewness"], skew(maps.reshape(2, -1), axis=1), rtol=1e-10)
    np.testing.assert_allclose(m["kurtosis"], kurtosis(maps.reshape(2, -1), axis=1), rtol=1e-10)
