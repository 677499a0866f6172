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
Maps10/WLconv_z1.00_NNNNr.fits`` plus ``cosmological_parameters.txt``, see
:mod:`cosmology.io`) so that :func:`cosmology.data.load_catalog` reads simulated and real
data alike. This module holds the fields (steps 2-3: :func:`lognormal_shift`,
:func:`prepare_field`, :class:`LognormalField`) and the driver :func:`simulate_dataset`;
the cosmologies, designs and spectra (step 1) are in :mod:`cosmology.cosmologies`, the
observational effects (step 4) in :mod:`cosmology.noise`.
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
from tqdm.auto import tqdm

from cosmology.cosmologies import DESIGN_COLUMNS, FIXED, convergence_cl, kappa_empty
from cosmology.io import (
    PARAMETERS_FILE,
    cosmology_dirname,
    map_filename,
    maps_dirname,
    read_map,
    write_map,
    write_parameters_file,
)
from cosmology.noise import ShapeNoise, add_shape_noise, smooth_map
from shared.runs import atomic_write

__all__ = [
    "LognormalField",
    "lognormal_shift",
    "prepare_field",
    "simulate_dataset",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- fields


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
    params_path = root / PARAMETERS_FILE
    if params_path.exists():
        old_design = np.atleast_2d(np.loadtxt(params_path))
        new = design[DESIGN_COLUMNS].to_numpy()
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
) -> Path:
    """Simulate ``n_maps`` maps per cosmology into a MassiveNuS-style tree (resumable).

    Existing valid maps are kept; every file is written atomically, so an interrupted
    run leaves only complete maps and can be restarted with the same arguments.

    Parameters
    ----------
    root
        Output folder.
    design
        Table with ``m_nu``, ``omega_m``, ``A_s`` (10^9 A_s) and ``sigma_8`` (see
        :mod:`cosmology.cosmologies`: ``design_ten``, ``design_lhs``, ``design_csv``).
        sigma_8 sets the normalisation.
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
    pathlib.Path
        The root of the tree; :func:`cosmology.data.load_catalog` gives its catalog.

    Examples
    --------
    >>> import tempfile
    >>> d = pd.DataFrame(
    ...     [(0.0, 0.3, 2.1, 0.85)], columns=["m_nu", "omega_m", "A_s", "sigma_8"])
    >>> root = simulate_dataset(tempfile.mkdtemp(), d, n_maps=2, n_pix=32)
    >>> sorted(p.name for p in root.rglob("*.fits"))
    ['WLconv_z1.00_0001r.fits', 'WLconv_z1.00_0002r.fits']
    """
    root = Path(root)
    if n_maps < 1 or n_pix < 8:
        raise ValueError(f"need n_maps >= 1 and n_pix >= 8, got {n_maps}, {n_pix}")
    missing = set(DESIGN_COLUMNS) - set(design.columns)
    if missing:
        raise ValueError(f"the design lacks the columns {sorted(missing)}")
    design = design[DESIGN_COLUMNS].reset_index(drop=True).astype(float)
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
    return root
