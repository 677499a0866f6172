"""Observational effects on convergence maps: galaxy shape noise and Gaussian smoothing.

:class:`ShapeNoise` holds the survey's ellipticity rms and galaxy density;
:func:`add_shape_noise` adds the white pixel noise they imply and :func:`smooth_map`
smooths with a Gaussian (the lenstools convention). Both work on one map or a stack and
serve the simulator (:mod:`cosmology.simulate`) and the dataset (:mod:`cosmology.data`)
alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["ShapeNoise", "add_shape_noise", "smooth_map"]


@dataclass(frozen=True)
class ShapeNoise:
    """Galaxy shape noise: per-component ellipticity rms and galaxy density per arcmin^2.

    Examples
    --------
    >>> round(ShapeNoise(0.26, 30.0).pixel_sigma(0.82), 3)
    0.058
    """

    sigma_e: float = 0.26
    n_gal: float = 30.0

    def __post_init__(self) -> None:
        if not (self.sigma_e >= 0 and self.n_gal > 0):
            raise ValueError(f"need sigma_e >= 0 and n_gal > 0, got {self}")

    def pixel_sigma(self, pixel_arcmin: float) -> float:
        """Noise rms per pixel, sigma_e / sqrt(n_gal A_pix)."""
        return self.sigma_e / math.sqrt(self.n_gal * pixel_arcmin**2)


def add_shape_noise(
    kappa: np.ndarray, noise: ShapeNoise, pixel_arcmin: float, rng: np.random.Generator
) -> np.ndarray:
    """Add white Gaussian shape noise (sigma_e / sqrt(n_gal A_pix) per pixel).

    Works on one map or a stack (last two axes are pixels).

    Examples
    --------
    >>> k = add_shape_noise(np.zeros((64, 64)), ShapeNoise(0.26, 30), 0.82,
    ...                     np.random.default_rng(0))
    >>> bool(0.05 < k.std() < 0.065)
    True
    """
    sigma = noise.pixel_sigma(pixel_arcmin)
    return kappa + sigma * rng.standard_normal(np.shape(kappa))


def smooth_map(kappa: np.ndarray, scale_arcmin: float, pixel_arcmin: float) -> np.ndarray:
    """Gaussian smoothing with standard deviation ``scale_arcmin`` (edges reflected).

    Same convention as ``lenstools.ConvergenceMap.smooth(kind="gaussian")``. Works on
    one map or a stack (smoothing acts on the last two axes).

    Examples
    --------
    >>> s = smooth_map(np.eye(16), 1.0, 0.82)
    >>> s.shape, bool(abs(s.sum() - 16) < 1e-9)
    ((16, 16), True)
    """
    if scale_arcmin <= 0:
        return np.asarray(kappa)
    sigma_pix = scale_arcmin / pixel_arcmin
    kappa = np.asarray(kappa)
    sigma = (0.0,) * (kappa.ndim - 2) + (sigma_pix, sigma_pix)
    return ndimage.gaussian_filter(kappa, sigma, mode="reflect")
