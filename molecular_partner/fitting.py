"""Fixed-sigma Gaussian amplitude fits, as cmeAnalysis does them for each spot and frame.

A spot of known position and PSF width is modelled in a square window as
``I = A * exp(-r**2 / (2 sigma**2)) + c``, which is linear in the amplitude ``A`` and the
local background ``c``; the fit is therefore a closed-form 2x2 least-squares solve, done
for many windows at once. The detection test follows cmeAnalysis ``fitGaussians2D``:
``pval_Ar`` is the p-value of ``A > kLevel * sigma_r`` (``kLevel`` the two-sided normal
quantile of ``alpha``) from a Welch-type t statistic combining ``A_pstd`` and the standard
error of ``sigma_r``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

__all__ = ["extract_windows", "fit_amplitudes", "window_half_width"]

FIT_FIELDS = ("A", "c", "A_pstd", "c_pstd", "sigma_r", "SE_sigma_r", "pval_Ar")


def window_half_width(sigma: float) -> int:
    """Half width of the fitting window for a PSF of width ``sigma`` (pixels).

    cmeAnalysis uses ``ceil(4 sigma)``, which holds the whole PSF and enough background.

    Examples
    --------
    >>> window_half_width(1.0)
    4
    """
    return max(2, math.ceil(4.0 * sigma))


def extract_windows(
    stack: np.ndarray, frames: np.ndarray, y: np.ndarray, x: np.ndarray, half_width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut square windows centred on the nearest pixel of each (frame, y, x) position.

    Windows that reach past the image border are filled by edge replication, so every
    position gets a full window.

    Parameters
    ----------
    stack : ndarray, shape (T, H, W)
        One channel of a movie.
    frames, y, x : ndarray, shape (n,)
        0-based frame index and sub-pixel position (row, column) of each spot.
    half_width : int
        Window half width ``w``; windows are ``(2w+1, 2w+1)``.

    Returns
    -------
    windows : ndarray, shape (n, 2w+1, 2w+1), float64
    dy, dx : ndarray, shape (n,)
        Offsets of the spot centre from the window's central pixel.

    Examples
    --------
    >>> s = np.zeros((2, 16, 16)); s[1, 8, 8] = 1.0
    >>> w, dy, dx = extract_windows(s, np.array([1]), np.array([8.2]), np.array([7.9]), 2)
    >>> w.shape, float(w[0, 2, 2])
    ((1, 5, 5), 1.0)
    """
    frames = np.asarray(frames, dtype=np.int64)
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    _, height, width = stack.shape
    iy = np.rint(y).astype(np.int64)
    ix = np.rint(x).astype(np.int64)
    offs = np.arange(-half_width, half_width + 1)
    rows = np.clip(iy[:, None] + offs[None, :], 0, height - 1)
    cols = np.clip(ix[:, None] + offs[None, :], 0, width - 1)
    windows = stack[frames[:, None, None], rows[:, :, None], cols[:, None, :]]
    return windows.astype(np.float64, copy=False), y - iy, x - ix


def fit_amplitudes(
    windows: np.ndarray,
    dy: np.ndarray,
    dx: np.ndarray,
    sigma: float,
    alpha: float = 0.05,
) -> dict[str, np.ndarray]:
    """Fit amplitude and background of a fixed-position, fixed-sigma Gaussian per window.

    Parameters
    ----------
    windows : ndarray, shape (n, k, k)
        Pixel values, ``k`` odd, spot near the central pixel.
    dy, dx : ndarray, shape (n,)
        Sub-pixel offset of the spot centre from the central pixel.
    sigma : float
        PSF standard deviation in pixels.
    alpha : float
        Level of the amplitude test; cmeAnalysis uses 0.05.

    Returns
    -------
    dict
        Arrays of shape (n,) named as in cmeAnalysis: ``A`` (peak amplitude above
        background), ``c`` (background), ``A_pstd``, ``c_pstd`` (their standard errors),
        ``sigma_r`` (residual standard deviation), ``SE_sigma_r`` and ``pval_Ar``.

    Examples
    --------
    >>> yy, xx = np.mgrid[-4:5, -4:5]
    >>> win = 500 * np.exp(-(yy**2 + xx**2) / 2.0) + 100
    >>> rng = np.random.default_rng(0)
    >>> out = fit_amplitudes(win[None] + rng.normal(0, 5, (1, 9, 9)), np.zeros(1), np.zeros(1), 1.0)
    >>> bool(abs(out["A"][0] - 500) < 20), bool(out["pval_Ar"][0] < 0.05)
    (True, True)
    """
    windows = np.asarray(windows, dtype=np.float64)
    _n, k, _ = windows.shape
    half = k // 2
    offs = np.arange(-half, half + 1, dtype=np.float64)
    gy = np.exp(-((offs[None, :] - dy[:, None]) ** 2) / (2.0 * sigma**2))
    gx = np.exp(-((offs[None, :] - dx[:, None]) ** 2) / (2.0 * sigma**2))
    g = gy[:, :, None] * gx[:, None, :]
    npx = k * k
    s_gg = np.einsum("nij,nij->n", g, g)
    s_g = g.sum(axis=(1, 2))
    s_gi = np.einsum("nij,nij->n", g, windows)
    s_i = windows.sum(axis=(1, 2))
    det = s_gg * npx - s_g**2
    amp = (npx * s_gi - s_g * s_i) / det
    bg = (s_gg * s_i - s_g * s_gi) / det
    resid = windows - amp[:, None, None] * g - bg[:, None, None]
    rss = np.einsum("nij,nij->n", resid, resid)
    sigma_r = np.sqrt(rss / (npx - 1))
    # Standard errors from the residual variance and the inverse normal matrix.
    a_pstd = sigma_r * np.sqrt(npx / det)
    c_pstd = sigma_r * np.sqrt(s_gg / det)
    se_sigma_r = sigma_r / np.sqrt(2.0 * (npx - 1))
    k_level = stats.norm.ppf(1.0 - alpha / 2.0)
    # Welch-Satterthwaite degrees of freedom, as in cmeAnalysis fitGaussians2D.
    num = (a_pstd**2 + se_sigma_r**2) ** 2
    den = a_pstd**4 + se_sigma_r**4
    with np.errstate(divide="ignore", invalid="ignore"):
        df2 = (npx - 1) * num / den
        scomb = np.sqrt((a_pstd**2 + se_sigma_r**2) / npx)
        t_stat = (amp - sigma_r * k_level) / scomb
    pval = stats.t.cdf(-t_stat, np.where(np.isfinite(df2), df2, npx - 1))
    # A flat window (no noise at all) has no defined test; call it not significant.
    pval = np.where(np.isfinite(t_stat), pval, 1.0)
    return {
        "A": amp,
        "c": bg,
        "A_pstd": a_pstd,
        "c_pstd": c_pstd,
        "sigma_r": sigma_r,
        "SE_sigma_r": se_sigma_r,
        "pval_Ar": pval,
    }
