"""The cosmologies of AWD and the theory behind them: parameters, designs and pyccl spectra.

- :data:`FIXED` (h, Omega_b, n_s fixed in MassiveNuS) and :data:`AWD_COSMOLOGIES`, the ten
  AWD/TRIM cosmologies (the first ten rows of the MassiveNuS parameter table);
- sigma_8 <-> 10^9 A_s (:func:`sigma8_from_as`, :func:`as_from_sigma8`; Eisenstein-Hu with
  a calibration to CAMB and an approximate neutrino suppression);
- pyccl helpers: :func:`ccl_cosmology`, the convergence spectrum :func:`convergence_cl`
  (halofit, Limber, one source plane), and the empty-beam convergence :func:`kappa_empty`;
- designs, tables of cosmologies with the columns :data:`DESIGN_COLUMNS`:
  :func:`design_ten`, :func:`design_lhs` (a Latin hypercube over Omega_m, sigma_8) and
  :func:`design_csv`.

Field generation lives in :mod:`cosmology.simulate`, observational effects in
:mod:`cosmology.noise`, the MassiveNuS file layout in :mod:`cosmology.io`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.integrate import quad

__all__ = [
    "AWD_COSMOLOGIES",
    "DESIGN_COLUMNS",
    "FIXED",
    "as_from_sigma8",
    "ccl_cosmology",
    "convergence_cl",
    "design_csv",
    "design_lhs",
    "design_ten",
    "kappa_empty",
    "sigma8_from_as",
]

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

#: Columns of a design table (10^9 A_s), in the order of the parameter file.
DESIGN_COLUMNS = ["m_nu", "omega_m", "A_s", "sigma_8"]

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


# --------------------------------------------------------------------------- designs


def design_ten(include_neutrinos: bool = True) -> pd.DataFrame:
    """The ten AWD/TRIM cosmologies (MassiveNuS rows 0-9) as a design table.

    Examples
    --------
    >>> d = design_ten()
    >>> len(d), list(d.columns)
    (10, ['m_nu', 'omega_m', 'A_s', 'sigma_8'])
    """
    design = pd.DataFrame(AWD_COSMOLOGIES, columns=DESIGN_COLUMNS)
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
    return pd.DataFrame(rows, columns=DESIGN_COLUMNS)


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
    return pd.DataFrame(rows, columns=DESIGN_COLUMNS)
