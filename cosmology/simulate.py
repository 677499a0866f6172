"""Shifted-lognormal weak-lensing convergence maps with pyccl halofit spectra.

The recipe, per cosmology (Omega_m, sigma_8 [, M_nu]) and source redshift z_s:

1. C_ell^kappa from pyccl (Eisenstein-Hu transfer, halofit, Limber) for a source plane
   at z_s, with h = 0.7, Omega_b = 0.046, n_s = 0.97 as in MassiveNuS.
2. A Gaussian field G on a grid ``pad`` times larger than the map (so that the cropped
   map is not periodic, like a ray-traced one), with the power spectrum C_G chosen so
   that kappa = kappa_0 (exp(G - sigma_G^2 / 2) - 1) has exactly the correlation function
   of C_ell^kappa: xi_G = ln(1 + xi_kappa / kappa_0^2).
3. The shift kappa_0 follows Hilbert, Hartlap & Schneider (2011) at their calibration
   cosmology (Omega_m = 0.25) and scales with the empty-beam convergence |kappa_empty|,
   which is proportional to Omega_m: lower Omega_m at fixed sigma_kappa gives a more
   skewed field, the non-Gaussian information that peaks and CNNs use beyond C_ell.
4. Optional shape noise per pixel (sigma_e / sqrt(n_gal A_pix)) and Gaussian smoothing.

Files are written in the MassiveNuS layout (``convergence_gal_mnv{M}_om{Om}_As{As}/
Maps10/WLconv_z1.00_NNNNr.fits`` plus ``cosmological_parameters.txt``) so that
:func:`cosmology.data.load_catalog` reads simulated and real data alike.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.fft
from scipy import ndimage
from scipy.integrate import quad
from tqdm.auto import tqdm

from cosmology.io import read_map, write_map
from shared.runs import atomic_write

__all__ = [
    "AWD_COSMOLOGIES",
    "FIXED",
    "LognormalField",
    "ShapeNoise",
    "add_shape_noise",
    "as_from_sigma8",
    "ccl_cosmology",
    "convergence_cl",
    "cosmology_dirname",
    "design_csv",
    "design_lhs",
    "design_ten",
    "kappa_empty",
    "lognormal_shift",
    "map_filename",
    "maps_dirname",
    "prepare_field",
    "sigma8_from_as",
    "simulate_dataset",
    "smooth_map",
    "write_parameters_file",
]

logger = logging.getLogger(__name__)

#: Parameters fixed in MassiveNuS.
FIXED = {"h": 0.7, "omega_b": 0.046, "n_s": 0.97}

#: The ten AWD/TRIM cosmologies: (M_nu [eV], Omega_m, 10^9 A_s, sigma_8), the first ten
#: rows of the MassiveNuS parameter table; sigma_8 from CAMB at the fixed parameters.
AWD_COSMOLOGIES: tuple[tuple[float, float, float, float], ...] = (
    (0.0, 0.3, 2.1, 0.850),
    (0.06271, 0.3815, 2.2004, 1.012),
    (0.06522, 0.2821, 1.8826, 0.755),
    (0.06773, 0.4159, 1.6231, 0.916),
    (0.07024, 0.2023, 2.3075, 0.621),
    (0.07275, 0.3283, 2.2883, 0.931),
    (0.07526, 0.3355, 1.5659, 0.781),
    (0.07778, 0.2597, 2.4333, 0.799),
    (0.0803, 0.2783, 2.3824, 0.836),
    (0.08282, 0.2758, 1.8292, 0.726),
)

_DESIGN_COLUMNS = ["m_nu", "omega_m", "A_s", "sigma_8"]
# Eisenstein-Hu has no neutrino suppression; sigma_8 drops by about 3.7 f_nu at fixed A_s
# (CAMB: 0.850 -> 0.827 for M_nu = 0.1 eV), and the massless fiducial is 0.9% high.
_NU_SUPPRESSION = 3.7
_EH_CALIBRATION = 0.850 / 0.8575
_K_PIVOT = 0.05  # 1/Mpc
_C_KM_S = 299792.458


# --------------------------------------------------------------------------- theory


def ccl_cosmology(omega_m: float, sigma_8: float, m_nu: float = 0.0) -> Any:
    """Build a pyccl cosmology (Eisenstein-Hu transfer, halofit) at MassiveNuS' fixed h, n_s.

    Omega_m includes massive neutrinos, as in the MassiveNuS parameter table.

    Examples
    --------
    >>> c = ccl_cosmology(0.3, 0.8)
    >>> round(c["Omega_m"], 6)
    0.3
    """
    import pyccl

    h = FIXED["h"]
    omega_nu = m_nu / (93.14 * h * h)
    omega_c = omega_m - FIXED["omega_b"] - omega_nu
    if omega_c <= 0:
        raise ValueError(f"Omega_m = {omega_m} is too small for Omega_b and M_nu = {m_nu} eV")
    return pyccl.Cosmology(
        Omega_c=omega_c,
        Omega_b=FIXED["omega_b"],
        h=h,
        n_s=FIXED["n_s"],
        sigma8=sigma_8,
        m_nu=m_nu,
        transfer_function="eisenstein_hu",
        matter_power_spectrum="halofit",
    )


def _growth_md(omega_m: float) -> float:
    # Linear growth at a = 1 normalised to D = a in matter domination (flat LCDM).
    def e(a: float) -> float:
        return math.sqrt(omega_m / a**3 + 1.0 - omega_m)

    return 2.5 * omega_m * e(1.0) * quad(lambda a: 1.0 / (a * e(a)) ** 3, 0.0, 1.0)[0]


def _as_at_sigma8(omega_m: float, sigma_8: float, m_nu: float) -> float:
    """10^9 A_s giving ``sigma_8`` in our Eisenstein-Hu approximation."""
    import pyccl

    cosmo = ccl_cosmology(omega_m, sigma_8, m_nu)
    k = 1e-4  # 1/Mpc, where the transfer function is 1
    h0 = FIXED["h"] * 100.0 / _C_KM_S
    delta2 = k**3 * pyccl.linear_matter_power(cosmo, k, 1.0) / (2 * np.pi**2)
    shape = (4 / 25) * (k**4 / (omega_m**2 * h0**4)) * _growth_md(omega_m) ** 2
    a_s = delta2 / (shape * (k / _K_PIVOT) ** (FIXED["n_s"] - 1.0))
    f_nu = m_nu / (93.14 * FIXED["h"] ** 2) / omega_m
    correction = _EH_CALIBRATION * (1.0 - _NU_SUPPRESSION * f_nu)
    # sigma_8 ~ sqrt(A_s): the corrected sigma_8 at this A_s is sigma_8 * correction.
    return float(1e9 * a_s / correction**2)


def sigma8_from_as(omega_m: float, A_s: float, m_nu: float = 0.0) -> float:
    """sigma_8 from 10^9 A_s (Eisenstein-Hu, ~1% from CAMB; neutrinos approximated).

    Exact values from a Boltzmann code should be preferred when known (the MassiveNuS
    table lists them); this fills in sigma_8 where only A_s is given.

    Examples
    --------
    >>> round(sigma8_from_as(0.3, 2.1), 2)
    0.85
    """
    ref = 0.8
    return ref * math.sqrt(A_s / _as_at_sigma8(omega_m, ref, m_nu))


def as_from_sigma8(omega_m: float, sigma_8: float, m_nu: float = 0.0) -> float:
    """10^9 A_s from sigma_8, the inverse of :func:`sigma8_from_as`.

    Examples
    --------
    >>> round(as_from_sigma8(0.3, 0.85), 1)
    2.1
    """
    return _as_at_sigma8(omega_m, sigma_8, m_nu)


def convergence_cl(
    ell: np.ndarray,
    omega_m: float,
    sigma_8: float,
    m_nu: float = 0.0,
    z_s: float = 1.0,
) -> np.ndarray:
    """C_ell^kappa for a single source plane at ``z_s`` (pyccl halofit, Limber).

    Parameters
    ----------
    ell
        Multipoles.
    omega_m, sigma_8, m_nu
        Cosmology (Omega_m includes neutrinos; M_nu in eV).
    z_s
        Source redshift.

    Returns
    -------
    numpy.ndarray
        C_ell^kappa at ``ell``.

    Examples
    --------
    >>> cl = convergence_cl(np.array([1000.0]), 0.3, 0.8)
    >>> bool(3.5e-10 < cl[0] < 4.5e-10)
    True
    """
    import pyccl

    cosmo = ccl_cosmology(omega_m, sigma_8, m_nu)
    # A narrow Gaussian stands in for the delta-function source plane.
    width = 0.003
    z = np.linspace(max(z_s - 10 * width, 1e-3), z_s + 10 * width, 401)
    nz = np.exp(-0.5 * ((z - z_s) / width) ** 2)
    tracer = pyccl.WeakLensingTracer(cosmo, dndz=(z, nz))
    return np.asarray(pyccl.angular_cl(cosmo, tracer, tracer, np.asarray(ell, dtype=float)))


def kappa_empty(omega_m: float, z_s: float = 1.0) -> float:
    """Empty-beam convergence -int_0^chi_s W(chi) dchi (negative; flat LCDM, h = 0.7).

    Examples
    --------
    >>> round(kappa_empty(0.3, 1.0), 3)
    -0.064
    """

    def inv_e(z: float) -> float:
        return 1.0 / math.sqrt(omega_m * (1 + z) ** 3 + 1.0 - omega_m)

    hubble = _C_KM_S / (100.0 * FIXED["h"])  # c / H0 in Mpc
    chi_s = hubble * quad(inv_e, 0.0, z_s)[0]

    def integrand(z: float) -> float:
        chi = hubble * quad(inv_e, 0.0, z)[0]
        # W dchi with dchi = (c/H0) dz / E(z)
        return chi * (chi_s - chi) / chi_s * (1 + z) * hubble * inv_e(z)

    return float(-1.5 * omega_m / hubble**2 * quad(integrand, 0.0, z_s)[0])


def lognormal_shift(omega_m: float, z_s: float = 1.0) -> float:
    """Shift kappa_0 of the lognormal convergence field.

    Hilbert, Hartlap & Schneider (2011) fit at their calibration cosmology
    (Omega_m = 0.25), scaled by |kappa_empty(Omega_m)| / |kappa_empty(0.25)|.

    Examples
    --------
    >>> round(lognormal_shift(0.25, 1.0), 3)
    0.03
    """
    hilbert = z_s * (0.008 + z_s * (0.029 + z_s * (-0.0079 + 0.00065 * z_s)))
    return hilbert * kappa_empty(omega_m, z_s) / kappa_empty(0.25, z_s)


# --------------------------------------------------------------------------- fields


@dataclass
class LognormalField:
    """A prepared random-field generator for one cosmology and one map geometry.

    Attributes
    ----------
    amplitude : numpy.ndarray
        sqrt of the Gaussian power on the padded rfft grid, normalised so that
        ``irfft2(amplitude * Z)`` has that power for unit complex normal Z.
    n_pix, pad
        Map size in pixels and the padding factor of the generation grid.
    side_angle_deg
        Side angle of the (cropped) map.
    kappa_0
        Lognormal shift; ``None`` for a Gaussian field.
    sigma_g2
        Variance of the Gaussian field (used to make the lognormal mean zero).
    """

    amplitude: np.ndarray
    n_pix: int
    pad: int
    side_angle_deg: float
    kappa_0: float | None
    sigma_g2: float

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """Draw one map (float64, ``n_pix`` x ``n_pix``).

        Examples
        --------
        >>> f = prepare_field(lambda l: 1e-9 * np.ones_like(l), 16, 1.0, kappa_0=None)
        >>> f.sample(np.random.default_rng(0)).shape
        (16, 16)
        """
        m = self.n_pix * self.pad
        half = m // 2 + 1
        noise = rng.standard_normal((2, m, half), dtype=np.float32)
        z = noise[0] + 1j * noise[1]
        # Columns 0 and m/2 of an rfft are their own mirror images; make them Hermitian so
        # no power is lost when the inverse transform keeps only the real part.
        rows = (-np.arange(m)) % m
        for col in (0, m // 2):
            z[:, col] = (z[:, col] + np.conj(z[rows, col])) / np.sqrt(2.0)
        g = scipy.fft.irfft2(z * self.amplitude, s=(m, m), workers=1)[: self.n_pix, : self.n_pix]
        g = g.astype(np.float64)
        if self.kappa_0 is None:
            return g
        return self.kappa_0 * np.expm1(g - 0.5 * self.sigma_g2)


def prepare_field(
    cl: Any,
    n_pix: int,
    side_angle_deg: float,
    kappa_0: float | None,
    pad: int = 2,
) -> LognormalField:
    """Prepare the generator of maps with convergence power spectrum ``cl``.

    Parameters
    ----------
    cl
        Callable ell -> C_ell^kappa (vectorised).
    n_pix
        Map size in pixels.
    side_angle_deg
        Map side angle in degrees.
    kappa_0
        Lognormal shift (see :func:`lognormal_shift`); ``None`` for a Gaussian field.
    pad
        The field is generated on a grid ``pad`` times larger and cropped (non-periodic
        maps, as ray-traced ones are). ``pad=1`` gives periodic maps.

    Returns
    -------
    LognormalField

    Examples
    --------
    >>> f = prepare_field(lambda l: 1e-9 / (1 + l / 1e3), 32, 3.5, kappa_0=0.03)
    >>> f.amplitude.shape
    (64, 33)
    """
    if n_pix < 2 or pad < 1:
        raise ValueError(f"need n_pix >= 2 and pad >= 1, got n_pix={n_pix}, pad={pad}")
    m = n_pix * pad
    pixel = np.deg2rad(side_angle_deg) / n_pix
    lx = 2 * np.pi * np.fft.fftfreq(m, d=pixel)
    ell = np.hypot(lx[:, None], lx[None, :])
    c_kappa = np.zeros_like(ell)
    c_kappa[ell > 0] = cl(ell[ell > 0])
    if kappa_0 is None:
        c_g = c_kappa
    else:
        # Correlation function of the periodic padded field, mapped to the Gaussian one.
        xi_kappa = np.fft.ifft2(c_kappa).real / pixel**2
        if np.any(xi_kappa <= -(kappa_0**2)):
            raise ValueError("kappa_0 is too small for this power spectrum (1 + xi/kappa_0^2 <= 0)")
        xi_g = np.log1p(xi_kappa / kappa_0**2)
        c_g = np.fft.fft2(xi_g).real * pixel**2
        c_g[0, 0] = 0.0
        np.clip(c_g, 0.0, None, out=c_g)
    sigma_g2 = float(c_g.sum()) / (m * m * pixel**2)
    # irfft2 divides by m^2, and E|Z|^2 = 2 for the complex normals drawn in sample().
    amplitude = (np.sqrt(c_g[:, : m // 2 + 1]) / pixel * m / np.sqrt(2.0)).astype(np.float32)
    return LognormalField(
        amplitude=amplitude,
        n_pix=n_pix,
        pad=pad,
        side_angle_deg=float(side_angle_deg),
        kappa_0=kappa_0,
        sigma_g2=sigma_g2,
    )


# --------------------------------------------------------------------------- noise


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


# --------------------------------------------------------------------------- designs


def design_ten(include_neutrinos: bool = True) -> pd.DataFrame:
    """The ten AWD/TRIM cosmologies (MassiveNuS rows 0-9) as a design table.

    Examples
    --------
    >>> d = design_ten()
    >>> len(d), list(d.columns)
    (10, ['m_nu', 'omega_m', 'A_s', 'sigma_8'])
    """
    design = pd.DataFrame(AWD_COSMOLOGIES, columns=_DESIGN_COLUMNS)
    if not include_neutrinos:
        design["m_nu"] = 0.0
    return design


def design_lhs(
    n: int,
    seed: int = 0,
    omega_m: tuple[float, float] = (0.18, 0.42),
    sigma_8: tuple[float, float] = (0.6, 1.0),
    m_nu: float = 0.0,
) -> pd.DataFrame:
    """A Latin hypercube over (Omega_m, sigma_8); A_s follows from sigma_8.

    Examples
    --------
    >>> d = design_lhs(5, seed=1)
    >>> len(d), bool(d.omega_m.between(0.18, 0.42).all())
    (5, True)
    """
    from scipy.stats import qmc

    if n < 1:
        raise ValueError(f"a Latin hypercube needs n >= 1, got {n}")
    unit = qmc.LatinHypercube(d=2, rng=np.random.default_rng(seed)).random(n)
    lo = np.array([omega_m[0], sigma_8[0]])
    hi = np.array([omega_m[1], sigma_8[1]])
    points = qmc.scale(unit, lo, hi)
    rows = [(m_nu, om, as_from_sigma8(om, s8, m_nu), s8) for om, s8 in np.round(points, 5).tolist()]
    return pd.DataFrame(rows, columns=_DESIGN_COLUMNS)


def design_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a design from a CSV with ``omega_m`` and ``sigma_8`` and/or ``A_s`` (10^9 A_s).

    ``m_nu`` (eV) is optional (default 0). A missing sigma_8 or A_s is computed from the
    other (see :func:`sigma8_from_as`).

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "d.csv"
    >>> _ = p.write_text("omega_m,sigma_8\\n0.3,0.8\\n")
    >>> design_csv(p).columns.tolist()
    ['m_nu', 'omega_m', 'A_s', 'sigma_8']
    """
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path}: cannot read the design CSV ({err})") from err
    table.columns = [c.strip() for c in table.columns]
    if "omega_m" not in table or not ({"sigma_8", "A_s"} & set(table.columns)):
        raise ValueError(
            f"{path}: a design needs the column omega_m and sigma_8 and/or A_s "
            f"(10^9 A_s); found {list(table.columns)}"
        )
    if "m_nu" not in table:
        table["m_nu"] = 0.0
    for col in ("sigma_8", "A_s"):
        if col not in table:
            table[col] = np.nan
    values = table[["m_nu", "omega_m", "A_s", "sigma_8"]]
    if values[["m_nu", "omega_m"]].isna().any().any() or (
        values[["A_s", "sigma_8"]].isna().all(axis=1).any()
    ):
        raise ValueError(f"{path}: the design has missing values")
    rows = []
    for m, om, a_s, s8 in values.astype(float).itertuples(index=False):
        if not 0.05 < om < 1.0:
            raise ValueError(f"{path}: omega_m = {om} is outside (0.05, 1)")
        if np.isnan(s8):
            s8 = sigma8_from_as(om, a_s, m)
        if np.isnan(a_s):
            a_s = as_from_sigma8(om, s8, m)
        rows.append((m, om, a_s, s8))
    return pd.DataFrame(rows, columns=_DESIGN_COLUMNS)


# --------------------------------------------------------------------------- layout


def cosmology_dirname(m_nu: float, omega_m: float, A_s: float) -> str:
    """MassiveNuS folder name of a cosmology.

    Examples
    --------
    >>> cosmology_dirname(0.0, 0.3, 2.1)
    'convergence_gal_mnv0.00000_om0.30000_As2.1000'
    """
    return f"convergence_gal_mnv{m_nu:.5f}_om{omega_m:.5f}_As{A_s:.4f}"


def maps_dirname(z_s: float) -> str:
    """MassiveNuS sub-folder of a source redshift (``Maps10`` for z_s = 1).

    Examples
    --------
    >>> maps_dirname(1.0), maps_dirname(2.5)
    ('Maps10', 'Maps25')
    """
    return f"Maps{round(z_s * 10):02d}"


def map_filename(z_s: float, realization: int) -> str:
    """MassiveNuS file name of one realization (numbered from 1).

    Examples
    --------
    >>> map_filename(1.0, 7)
    'WLconv_z1.00_0007r.fits'
    """
    return f"WLconv_z{z_s:.2f}_{realization:04d}r.fits"


def write_parameters_file(path: str | os.PathLike[str], design: pd.DataFrame) -> Path:
    """Write ``cosmological_parameters.txt`` (model, M_nu, Omega_m, 10^9 A_s, sigma_8).

    Examples
    --------
    >>> import tempfile
    >>> p = write_parameters_file(Path(tempfile.mkdtemp()) / "c.txt", design_ten())
    >>> np.loadtxt(p).shape
    (10, 5)
    """
    lines = ["# model M_nu(eV) Omega_m 10^9A_s sigma_8"]
    for i, row in enumerate(design[_DESIGN_COLUMNS].itertuples(index=False)):
        lines.append(f"{i:d} {row.m_nu:.5f} {row.omega_m:.5f} {row.A_s:.5f} {row.sigma_8:.5f}")
    text = "\n".join(lines) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


# --------------------------------------------------------------------------- driver


@dataclass(frozen=True)
class _Settings:
    n_maps: int
    n_pix: int
    side_angle_deg: float
    z_s: float
    pad: int
    seed: int
    noise: dict[str, float] | None
    smoothing_arcmin: float | None
    gaussian: bool


def _prepare_one(row: dict[str, float], settings: _Settings) -> LognormalField:
    pixel = np.deg2rad(settings.side_angle_deg) / settings.n_pix
    # From below the padded grid's fundamental to beyond its corner multipole.
    ell = np.geomspace(2.0, max(2.0e5, 2.0 * np.pi / pixel), 256)
    cl = convergence_cl(ell, row["omega_m"], row["sigma_8"], row["m_nu"], settings.z_s)
    log_ell, log_cl = np.log(ell), np.log(cl)

    def cl_fn(x: np.ndarray) -> np.ndarray:
        return np.exp(np.interp(np.log(x), log_ell, log_cl))

    kappa_0 = None if settings.gaussian else lognormal_shift(row["omega_m"], settings.z_s)
    return prepare_field(cl_fn, settings.n_pix, settings.side_angle_deg, kappa_0, settings.pad)


def _is_valid(path: Path, settings: _Settings) -> bool:
    if not path.exists():
        return False
    try:
        data, angle, _ = read_map(path)
    except ValueError:
        return False
    return data.shape == (settings.n_pix, settings.n_pix) and math.isclose(
        angle, settings.side_angle_deg, rel_tol=1e-9
    )


def _simulate_chunk(
    field: LognormalField,
    folder: str,
    row: dict[str, float],
    cosmo_index: int,
    realizations: Sequence[int],
    settings: _Settings,
) -> tuple[int, int]:
    """Write the maps of ``realizations``; return (written, skipped)."""
    written = skipped = 0
    pixel_arcmin = settings.side_angle_deg * 60.0 / settings.n_pix
    for r in realizations:
        path = Path(folder) / map_filename(settings.z_s, r)
        if _is_valid(path, settings):
            skipped += 1
            continue
        # One stream per (seed, cosmology, realization): independent of scheduling and resume.
        rng = np.random.default_rng([settings.seed, cosmo_index, r])
        kappa = field.sample(rng)
        if settings.noise is not None:
            kappa = add_shape_noise(kappa, ShapeNoise(**settings.noise), pixel_arcmin, rng)
        if settings.smoothing_arcmin:
            kappa = smooth_map(kappa, settings.smoothing_arcmin, pixel_arcmin)
        params = {
            "omega_m": row["omega_m"],
            "sigma_8": row["sigma_8"],
            "A_s": row["A_s"],
            "m_nu": row["m_nu"],
            "z_s": settings.z_s,
            "h": FIXED["h"],
            "omega_b": FIXED["omega_b"],
            "n_s": FIXED["n_s"],
            "seed": settings.seed,
            "realization": r,
        }
        if field.kappa_0 is not None:
            params["kappa_0"] = field.kappa_0
        write_map(path, kappa, settings.side_angle_deg, params)
        written += 1
    return written, skipped


_TMP = re.compile(r"^\..*\.tmp")


def _check_or_write_settings(root: Path, settings: _Settings, design: pd.DataFrame) -> None:
    meta_path = root / "simulation.json"
    meta = asdict(settings)
    meta.pop("n_maps")  # more maps may be added to an existing tree
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{meta_path}: unreadable simulation settings ({err})") from err
        if old != json.loads(json.dumps(meta)):
            raise ValueError(
                f"{meta_path}: the tree was simulated with other settings {old}; "
                f"refusing to mix them with {meta}"
            )
    params_path = root / "cosmological_parameters.txt"
    if params_path.exists():
        old_design = np.atleast_2d(np.loadtxt(params_path))
        new = design[_DESIGN_COLUMNS].to_numpy()
        if old_design.shape[0] != new.shape[0] or not np.allclose(
            old_design[:, 1:], new, atol=1e-5
        ):
            raise ValueError(
                f"{params_path}: the tree holds another design; use a new output folder"
            )
    write_parameters_file(params_path, design)
    atomic_write(meta_path, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))


def simulate_dataset(
    root: str | os.PathLike[str],
    design: pd.DataFrame,
    n_maps: int,
    n_pix: int = 256,
    side_angle_deg: float = 3.5,
    z_s: float = 1.0,
    noise: ShapeNoise | None = None,
    smoothing_arcmin: float | None = None,
    seed: int = 0,
    workers: int = 1,
    pad: int = 2,
    gaussian: bool = False,
    chunk_size: int = 32,
) -> pd.DataFrame:
    """Simulate ``n_maps`` maps per cosmology into a MassiveNuS-style tree (resumable).

    Existing valid maps are kept; every file is written atomically, so an interrupted
    run leaves only complete maps and can be restarted with the same arguments.

    Parameters
    ----------
    root
        Output folder.
    design
        Table with ``m_nu``, ``omega_m``, ``A_s`` (10^9 A_s) and ``sigma_8`` (see
        :func:`design_ten`, :func:`design_lhs`, :func:`design_csv`). sigma_8 sets the
        normalisation.
    n_maps
        Realizations per cosmology (numbered 1..n_maps).
    n_pix, side_angle_deg, z_s
        Map geometry and source redshift.
    noise, smoothing_arcmin
        Optional shape noise and Gaussian smoothing (sigma in arcmin), applied in that order.
    seed
        Base seed; map r of cosmology i uses the stream ``(seed, i, r)``.
    workers
        Processes.
    pad
        Generation-grid padding factor (2: non-periodic maps).
    gaussian
        Gaussian instead of lognormal fields (a control without non-Gaussianity).
    chunk_size
        Maps per task.

    Returns
    -------
    pandas.DataFrame
        The catalog of the tree (see :func:`cosmology.data.load_catalog`).

    Examples
    --------
    >>> import tempfile
    >>> d = pd.DataFrame(
    ...     [(0.0, 0.3, 2.1, 0.85)], columns=["m_nu", "omega_m", "A_s", "sigma_8"])
    >>> cat = simulate_dataset(tempfile.mkdtemp(), d, n_maps=2, n_pix=32)
    >>> len(cat)
    2
    """
    from cosmology.data import load_catalog

    root = Path(root)
    if n_maps < 1 or n_pix < 8:
        raise ValueError(f"need n_maps >= 1 and n_pix >= 8, got {n_maps}, {n_pix}")
    missing = set(_DESIGN_COLUMNS) - set(design.columns)
    if missing:
        raise ValueError(f"the design lacks the columns {sorted(missing)}")
    design = design[_DESIGN_COLUMNS].reset_index(drop=True).astype(float)
    settings = _Settings(
        n_maps=n_maps,
        n_pix=n_pix,
        side_angle_deg=float(side_angle_deg),
        z_s=float(z_s),
        pad=pad,
        seed=seed,
        noise=None if noise is None else asdict(noise),
        smoothing_arcmin=smoothing_arcmin or None,
        gaussian=gaussian,
    )
    root.mkdir(parents=True, exist_ok=True)
    _check_or_write_settings(root, settings, design)
    rows = design.to_dict("records")
    folders = []
    for row in rows:
        folder = root / cosmology_dirname(row["m_nu"], row["omega_m"], row["A_s"])
        folder = folder / maps_dirname(z_s)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.iterdir():
            if _TMP.match(stale.name):
                stale.unlink(missing_ok=True)
        folders.append(folder)
    if len(set(folders)) != len(folders):
        raise ValueError("two cosmologies of the design share a folder name; make them distinct")

    tasks = [
        (i, list(range(start, min(start + chunk_size, n_maps + 1))))
        for i in range(len(rows))
        for start in range(1, n_maps + 1, chunk_size)
    ]
    total = len(rows) * n_maps
    written = skipped = 0
    with tqdm(total=total, desc="maps", unit="map", disable=None) as bar:
        if workers <= 1:
            for i, row in enumerate(rows):
                field = _prepare_one(row, settings)
                for j, chunk in tasks:
                    if j != i:
                        continue
                    w, s = _simulate_chunk(field, str(folders[i]), row, i, chunk, settings)
                    written, skipped = written + w, skipped + s
                    bar.update(len(chunk))
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                fields = list(pool.map(_prepare_one, rows, [settings] * len(rows)))
                futures = {
                    pool.submit(
                        _simulate_chunk, fields[i], str(folders[i]), rows[i], i, chunk, settings
                    ): len(chunk)
                    for i, chunk in tasks
                }
                for future in as_completed(futures):
                    w, s = future.result()
                    written, skipped = written + w, skipped + s
                    bar.update(futures[future])
    logger.info("simulated %d maps, kept %d existing ones, under %s", written, skipped, root)
    return load_catalog(root)
