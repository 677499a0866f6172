"""FITS convergence maps and the MassiveNuS file tree, read and written in one place.

A map is a 2D float32 primary image whose header carries the side angle in degrees under
``ANGLE`` (the key ``lenstools.ConvergenceMap.load`` requires) and, optionally, the
cosmological parameters. Keys follow lenstools where it has one (``OMEGA_M``, ``Z``, ``H0``,
``h``, ``W0``, ``WA``); the others are ours (``SIGMA_8``, ``A_S`` = 10^9 A_s, ``M_NU``...).

A MassiveNuS tree holds ``<root>/convergence_gal_mnv{M}_om{Om}_As{As}/Maps10/
WLconv_z1.00_NNNNr.fits`` (or the AWD reference's ``model%03d/...``) and the parameter table
``<root>/cosmological_parameters.txt`` (model, M_nu, Omega_m, 10^9 A_s, sigma_8). The name
builders (:func:`cosmology_dirname`, :func:`maps_dirname`, :func:`map_filename`), the
patterns that parse those names back, and the table's writer and reader live here, so
that the simulator and the catalog loader share one definition of the format.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.io import fits

from cosmology.cosmologies import DESIGN_COLUMNS
from shared.runs import atomic_write

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COSMOLOGY_DIR_PATTERN",
    "HEADER_KEYS",
    "MAP_FILE_PATTERN",
    "MODEL_DIR_PATTERN",
    "PARAMETERS_FILE",
    "cosmology_dirname",
    "header_angle",
    "header_params",
    "map_filename",
    "maps_dirname",
    "read_map",
    "read_parameters_file",
    "write_map",
    "write_parameters_file",
]

logger = logging.getLogger(__name__)

#: our parameter name -> (FITS key, comment)
HEADER_KEYS: dict[str, tuple[str, str]] = {
    "omega_m": ("OMEGA_M", "Total matter density Omega_m"),
    "sigma_8": ("SIGMA_8", "sigma_8"),
    "A_s": ("A_S", "10^9 A_s"),
    "m_nu": ("M_NU", "Sum of neutrino masses [eV]"),
    "z_s": ("Z", "Redshift of the background sources"),
    "h": ("h", "Dimensionless Hubble constant"),
    "H0": ("H0", "Hubble constant in km/s*Mpc"),
    "omega_b": ("OMEGA_B", "Baryon density Omega_b"),
    "omega_l": ("OMEGA_L", "Dark energy density"),
    "n_s": ("N_S", "Scalar spectral index"),
    "w0": ("W0", "Dark energy equation of state"),
    "wa": ("WA", "Dark energy running equation of state"),
    "seed": ("SEED", "Random seed of the realization"),
    "realization": ("REALIZ", "Realization number"),
    "kappa_0": ("KAPPA0", "Shift of the lognormal field"),
}
_KEY_TO_NAME = {key.upper(): name for name, (key, _) in HEADER_KEYS.items()}
_RESERVED = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "ANGLE", "ITYPE", "UNIT"}


def _header_key(name: str) -> tuple[str, str]:
    if name in HEADER_KEYS:
        return HEADER_KEYS[name]
    key = name.upper()
    if len(key) > 8 or not key.replace("_", "").replace("-", "").isalnum():
        raise ValueError(
            f"parameter name {name!r} cannot be a FITS header key (at most 8 letters, "
            f"digits, '_' or '-'); known names: {sorted(HEADER_KEYS)}"
        )
    if key in _RESERVED:
        raise ValueError(f"parameter name {name!r} clashes with the reserved FITS key {key}")
    return key, ""


def write_map(
    path: str | os.PathLike[str],
    kappa: np.ndarray,
    side_angle_deg: float,
    params: Mapping[str, float | int | str] | None = None,
) -> Path:
    """Write a convergence map as a lenstools-compatible FITS file, atomically.

    Parameters
    ----------
    path
        Destination ``.fits`` file; parent folders are created.
    kappa
        2D square array of convergence values, stored as float32.
    side_angle_deg
        Side angle of the map in degrees (header key ``ANGLE``).
    params
        Cosmological parameters and metadata for the header, by our names
        (``omega_m``, ``sigma_8``, ``A_s`` (10^9 A_s), ``m_nu``, ``z_s``, ...; see
        :data:`HEADER_KEYS`) or as FITS keys of at most 8 characters.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ValueError
        If ``kappa`` is not a finite square 2D array or the angle is not positive.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "m.fits"
    >>> _ = write_map(p, np.zeros((4, 4)), 3.5, {"omega_m": 0.3, "sigma_8": 0.8})
    >>> read_map(p)[1]
    3.5
    """
    path = Path(path)
    data = np.asarray(kappa)
    if data.ndim != 2 or data.shape[0] != data.shape[1]:
        raise ValueError(f"{path}: the map must be a square 2D array, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{path}: the map to write contains NaN or infinite pixels")
    if not (np.isfinite(side_angle_deg) and side_angle_deg > 0):
        raise ValueError(f"{path}: side angle must be a positive number, got {side_angle_deg}")
    hdu = fits.PrimaryHDU(data.astype(np.float32))
    for name, value in (params or {}).items():
        key, comment = _header_key(name)
        if isinstance(value, np.generic):
            value = value.item()
        hdu.header[key] = (value, comment)
    hdu.header["ANGLE"] = (float(side_angle_deg), "Side angle in degrees")
    hdu.header["ITYPE"] = ("ConvergenceMap", "Image type")
    return atomic_write(path, lambda tmp: hdu.writeto(tmp, overwrite=True), suffix=".fits")


def read_map(
    path: str | os.PathLike[str],
    side_angle_deg: float | None = None,
    *,
    check_finite: bool = True,
) -> tuple[np.ndarray, float, dict[str, Any]]:
    """Read a FITS convergence map (lenstools / MassiveNuS format).

    Parameters
    ----------
    path
        FITS file with the map as a 2D primary image.
    side_angle_deg
        Side angle in degrees to use when the header has no ``ANGLE`` key. When the header
        has one, it wins.
    check_finite
        Raise if any pixel is NaN or infinite.

    Returns
    -------
    kappa : numpy.ndarray
        The 2D map (native float dtype of the file, in native byte order).
    side_angle_deg : float
        Side angle in degrees.
    header : dict
        The primary header as a dict of FITS key -> value.

    Raises
    ------
    ValueError
        If the file is not a readable FITS file or is truncated, the primary HDU is not a
        2D image, the map has NaN pixels, the side angle is not a positive number, or
        there is no ``ANGLE`` in the header and no ``side_angle_deg`` was given. The
        message names the file.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "m.fits"
    >>> _ = write_map(p, np.ones((4, 4)), 3.5)
    >>> kappa, angle, header = read_map(p)
    >>> kappa.shape, angle, header["ITYPE"]
    ((4, 4), 3.5, 'ConvergenceMap')
    """
    path = Path(path)
    data, header = _read_primary(path)
    if data is None or data.ndim != 2:
        shape = None if data is None else data.shape
        raise ValueError(f"{path}: the primary HDU must hold a 2D image, found shape {shape}")
    if not np.issubdtype(data.dtype, np.floating):
        data = data.astype(np.float64)
    data = data.astype(data.dtype.newbyteorder("="), copy=False)
    if check_finite and not np.all(np.isfinite(data)):
        n_bad = int(np.count_nonzero(~np.isfinite(data)))
        raise ValueError(f"{path}: the map has {n_bad} NaN or infinite pixels")
    angle = header_angle(path, header, side_angle_deg)
    if angle is None:
        raise ValueError(
            f"{path}: no ANGLE (side angle in degrees) in the FITS header; "
            "pass the side angle explicitly"
        )
    return data, angle, header


def _read_primary(path: Path) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The primary HDU's data and header; every failure becomes a ``ValueError`` naming ``path``."""
    # astropy only warns about a file cut short, then fails on the reshape of its data:
    # the warning is the real cause, so it is caught and put into the message.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, memmap=False) as hdul:
                data = hdul[0].data
                header = dict(hdul[0].header)
        except (OSError, ValueError, TypeError, IndexError) as err:
            truncated = [str(w.message) for w in caught if "truncated" in str(w.message)]
            if truncated:
                detail = truncated[0].split(": ", 1)[-1]
                raise ValueError(f"{path}: truncated FITS file ({detail})") from err
            raise ValueError(f"{path}: not a readable FITS file ({err})") from err
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return data, header


def header_angle(
    path: str | os.PathLike[str], header: Mapping[str, Any], default: float | None = None
) -> float | None:
    """The side angle of a map: the header's ``ANGLE``, else ``default`` (``None`` if neither).

    Raises
    ------
    ValueError
        Naming ``path``, if the angle is not a positive finite number.

    Examples
    --------
    >>> header_angle("m.fits", {"ANGLE": 3.5}), header_angle("m.fits", {}, 2.0)
    (3.5, 2.0)
    >>> header_angle("m.fits", {"ANGLE": "abc"})
    Traceback (most recent call last):
    ...
    ValueError: m.fits: ANGLE (side angle in degrees) must be a positive number, got 'abc'
    """
    angle, source = header.get("ANGLE"), "ANGLE (side angle in degrees)"
    if angle is None:
        angle, source = default, "the side angle given for it"
    if angle is None:
        return None
    try:
        value = float(angle)
    except (TypeError, ValueError):
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{path}: {source} must be a positive number, got {angle!r}")
    return value


def header_params(header: Mapping[str, Any]) -> dict[str, Any]:
    """Translate known FITS header keys back to our parameter names.

    Examples
    --------
    >>> header_params({"OMEGA_M": 0.3, "Z": 1.0, "NAXIS": 2})
    {'omega_m': 0.3, 'z_s': 1.0}
    """
    return {_KEY_TO_NAME[k.upper()]: v for k, v in header.items() if k.upper() in _KEY_TO_NAME}


# --------------------------------------------------------------------------- MassiveNuS tree

#: Name of the parameter table at the root of a tree.
PARAMETERS_FILE = "cosmological_parameters.txt"
#: A cosmology folder (see :func:`cosmology_dirname`); groups ``m_nu``, ``omega_m``, ``A_s``.
COSMOLOGY_DIR_PATTERN = re.compile(
    r"_mnv(?P<m_nu>[0-9.]+)_om(?P<omega_m>[0-9.]+)_As(?P<A_s>[0-9.]+)$"
)
#: A folder of the AWD reference's layout, ``model%03d`` (group ``row``: the table row).
MODEL_DIR_PATTERN = re.compile(r"^model(?P<row>\d+)$")
#: A map file (see :func:`map_filename`); groups ``z`` (source redshift) and ``r``.
MAP_FILE_PATTERN = re.compile(r"^WLconv_z(?P<z>[0-9.]+)_(?P<r>\d+)r\.fits?$")


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
    >>> from cosmology.cosmologies import design_ten
    >>> p = write_parameters_file(Path(tempfile.mkdtemp()) / "c.txt", design_ten())
    >>> np.loadtxt(p).shape
    (10, 5)
    """
    lines = ["# model M_nu(eV) Omega_m 10^9A_s sigma_8"]
    for i, row in enumerate(design[DESIGN_COLUMNS].itertuples(index=False)):
        lines.append(f"{i:d} {row.m_nu:.5f} {row.omega_m:.5f} {row.A_s:.5f} {row.sigma_8:.5f}")
    text = "\n".join(lines) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def read_parameters_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read ``cosmological_parameters.txt``: columns (M_nu, Omega_m, 10^9 A_s, sigma_8).

    The model column is dropped; row ``i`` is model ``i``.

    Raises
    ------
    ValueError
        If the file is missing, unparsable or has fewer than 5 columns (named in the
        message).

    Examples
    --------
    >>> import tempfile
    >>> from cosmology.cosmologies import design_ten
    >>> p = write_parameters_file(Path(tempfile.mkdtemp()) / "c.txt", design_ten())
    >>> read_parameters_file(p)[0].tolist()
    [0.0, 0.3, 2.1, 0.85]
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: parameter file not found (needed to label the tree)")
    try:
        table = np.loadtxt(path, ndmin=2)
    except ValueError as err:
        raise ValueError(f"{path}: cannot parse the parameter table ({err})") from err
    if table.shape[1] < 5:
        raise ValueError(
            f"{path}: expected 5 columns (model, M_nu, Omega_m, 10^9 A_s, sigma_8), "
            f"found {table.shape[1]}"
        )
    return table[:, 1:5]
