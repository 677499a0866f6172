"""Catalogs of convergence maps, a lazy torch Dataset and splits by realization.

Three sources give the same catalog table (one row per map):

- a MassiveNuS-style tree: ``<root>/…_mnv{M}_om{Om}_As{As}/Maps10/WLconv_z1.00_NNNNr.fits``
  (or the reference's ``model%03d/WLconv_z1.00_NNNNr.fits``) with
  ``<root>/cosmological_parameters.txt`` (columns: model, M_nu, Omega_m, 10^9 A_s, sigma_8);
- the AWD reference's npz file with ``imgs`` (n, N, N) and ``params`` (n, 3) holding
  (M_nu, Omega_m, 10^9 A_s), optionally a fourth column sigma_8;
- a folder of FITS files with a CSV (``file``, ``omega_m``, ``sigma_8`` and optionally
  ``A_s``, ``m_nu``, ``z_s``, ``cosmology``, ``realization``, ``side_angle_deg``).
"""

from __future__ import annotations

import logging
import math
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import pandas as pd
import torch
from astropy.io import fits
from torch.utils.data import Dataset

from cosmology.cosmologies import AWD_COSMOLOGIES, sigma8_from_as
from cosmology.io import (
    COSMOLOGY_DIR_PATTERN,
    MAP_FILE_PATTERN,
    MODEL_DIR_PATTERN,
    PARAMETERS_FILE,
    header_angle,
    read_map,
    read_parameters_file,
)
from cosmology.noise import ShapeNoise, add_shape_noise, smooth_map

__all__ = [
    "CATALOG_COLUMNS",
    "ConvergenceMapDataset",
    "block_average",
    "load_catalog",
    "split_by_realization",
]

logger = logging.getLogger(__name__)

CATALOG_COLUMNS = [
    "file",
    "index",
    "cosmology",
    "cosmology_name",
    "realization",
    "omega_m",
    "sigma_8",
    "A_s",
    "m_nu",
    "z_s",
    "side_angle_deg",
    "n_pix",
]

# The AWD pixel: 3.5 deg over 256 pixels (MassiveNuS 512^2 maps downsampled by 2).
_AWD_PIXEL_DEG = 3.5 / 256


# --------------------------------------------------------------------------- catalogs


def load_catalog(
    root: str | os.PathLike[str],
    *,
    side_angle_deg: float | None = None,
    z_s: float | None = None,
    params_file: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Catalog of the maps under ``root`` (MassiveNuS tree, npz file or FITS folder + CSV).

    Parameters
    ----------
    root
        A MassiveNuS-style folder, an ``.npz`` file, or a folder of FITS files with a CSV.
    side_angle_deg
        Side angle for maps whose files do not carry one (FITS without ``ANGLE``, npz
        without ``side_angle_deg``).
    z_s
        Keep only this source redshift (MassiveNuS trees hold several).
    params_file
        Parameter table to use instead of the default (``cosmological_parameters.txt``
        for trees; ``parameters.csv`` or the folder's only CSV otherwise).

    Returns
    -------
    pandas.DataFrame
        One row per map with the columns :data:`CATALOG_COLUMNS`: ``file``, ``index``
        (position inside the file), ``cosmology`` (integer id), ``cosmology_name``,
        ``realization``, ``omega_m``, ``sigma_8``, ``A_s`` (10^9 A_s), ``m_nu`` (eV),
        ``z_s``, ``side_angle_deg``, ``n_pix``.

    Raises
    ------
    ValueError
        With the offending file named: unreadable or mismatched parameter tables
        (non-numeric or missing values, empty or repeated file names, files outside
        ``root``), unreadable map headers, maps without a positive side angle, maps of
        different sizes or side angles.

    Notes
    -----
    The catalogue reads map headers only; the pixels (finite values, complete files) are
    checked when the maps are read, which :func:`cosmology.pipeline.load_splits` does for
    every split at the first step of a run. A catalogue of one cosmology is accepted with
    a warning: its targets are constant, so no score measured on it means anything. A
    parameters CSV may list only maps inside ``root`` (relative paths without ``..``, or
    absolute paths under ``root``): a run records the fingerprint of its data folder, which
    covers only the files inside it.

    Examples
    --------
    >>> import tempfile
    >>> from cosmology.cosmologies import design_ten
    >>> from cosmology.simulate import simulate_dataset
    >>> root = simulate_dataset(tempfile.mkdtemp(), design_ten(False).iloc[:2], n_maps=2, n_pix=16)
    >>> cat = load_catalog(root)
    >>> len(cat), sorted(cat.cosmology.unique().tolist())
    (4, [0, 1])
    """
    root = Path(root)
    if root.is_file() and root.suffix == ".npz":
        catalog = _catalog_npz(root, side_angle_deg)
    elif root.is_dir():
        subdirs = [d for d in root.iterdir() if d.is_dir()]
        is_tree = (root / PARAMETERS_FILE).exists() or any(
            COSMOLOGY_DIR_PATTERN.search(d.name) or MODEL_DIR_PATTERN.match(d.name) for d in subdirs
        )
        if params_file is not None and Path(params_file).suffix.lower() == ".csv":
            is_tree = False
        if is_tree:
            catalog = _catalog_tree(root, side_angle_deg, params_file)
        else:
            catalog = _catalog_folder(root, side_angle_deg, params_file)
    else:
        raise ValueError(f"{root}: neither a folder nor an .npz file")
    if z_s is not None:
        catalog = catalog[np.isclose(catalog["z_s"], z_s)].reset_index(drop=True)
    if catalog.empty:
        raise ValueError(f"{root}: no maps found")
    sizes = catalog.groupby("n_pix")["file"].first()
    if len(sizes) > 1:
        detail = ", ".join(f"{n}x{n} in {f}" for n, f in sizes.items())
        raise ValueError(f"{root}: maps of different sizes in one dataset ({detail})")
    angles = catalog.groupby("side_angle_deg")["file"].first()
    if len(angles) > 1:
        # Pixel scale, noise, smoothing and multipoles all follow from one side angle.
        detail = ", ".join(f"{a:g} deg in {f}" for a, f in angles.items())
        raise ValueError(f"{root}: maps of different side angles in one dataset ({detail})")
    if catalog["cosmology"].nunique() == 1:
        logger.warning(
            "%s: the maps hold one cosmology only: the targets are constant, so a teacher "
            "or student fitted on them can only return that constant and its scores mean "
            "nothing; use maps of at least two cosmologies",
            root,
        )
    catalog = catalog.sort_values(["cosmology", "realization", "index"], kind="stable")
    return catalog[CATALOG_COLUMNS].reset_index(drop=True)


def _fits_geometry(path: Path, side_angle_deg: float | None) -> tuple[float, int]:
    try:
        header = fits.getheader(path)
    except (OSError, ValueError, TypeError, IndexError) as err:
        raise ValueError(f"{path}: not a readable FITS file ({err})") from err
    if header.get("NAXIS") != 2 or header.get("NAXIS1") != header.get("NAXIS2"):
        raise ValueError(f"{path}: the primary HDU must hold a square 2D image")
    angle = header_angle(path, header, side_angle_deg)
    if angle is None:
        raise ValueError(
            f"{path}: no ANGLE (side angle in degrees) in the FITS header; pass side_angle_deg"
        )
    return angle, int(header["NAXIS1"])


def _catalog_tree(root: Path, side_angle_deg: float | None, params_file: Any) -> pd.DataFrame:
    params_path = Path(params_file) if params_file is not None else root / PARAMETERS_FILE
    table = read_parameters_file(params_path)  # m_nu, omega_m, A_s, sigma_8
    rows: list[dict[str, Any]] = []
    n_pix_seen: dict[int, Path] = {}
    for folder in sorted(d for d in root.iterdir() if d.is_dir()):
        match = COSMOLOGY_DIR_PATTERN.search(folder.name)
        model = MODEL_DIR_PATTERN.match(folder.name)
        if match:
            m_nu, om, a_s = (float(match[k]) for k in ("m_nu", "omega_m", "A_s"))
            # Match on (M_nu, A_s), which name a MassiveNuS model uniquely; Omega_m breaks
            # ties (its definition may differ between products by Omega_nu).
            close = np.flatnonzero(
                (np.abs(table[:, 0] - m_nu) < 1e-4) & (np.abs(table[:, 2] - a_s) < 1e-3)
            )
            if close.size == 0:
                raise ValueError(
                    f"{params_path}: no row matches the folder {folder.name} "
                    f"(M_nu={m_nu}, Omega_m={om}, 10^9A_s={a_s})"
                )
            cosmo = int(close[np.argmin(np.abs(table[close, 1] - om))])
        elif model:
            cosmo = int(model["row"])
            if cosmo >= len(table):
                raise ValueError(
                    f"{params_path}: {len(table)} rows, but the tree has folder {folder.name}"
                )
        else:
            continue
        files = sorted(
            f for f in folder.rglob("WLconv_z*") if MAP_FILE_PATTERN.match(f.name) and f.is_file()
        )
        geometry: dict[Path, tuple[float, int]] = {}
        for f in files:
            parsed = MAP_FILE_PATTERN.match(f.name)
            assert parsed is not None
            if f.parent not in geometry:
                geometry[f.parent] = _fits_geometry(f, side_angle_deg)
                n_pix_seen.setdefault(geometry[f.parent][1], f)
            angle, n_pix = geometry[f.parent]
            m_nu, om, a_s, s8 = table[cosmo]
            rows.append(
                {
                    "file": str(f),
                    "index": 0,
                    "cosmology": cosmo,
                    "cosmology_name": folder.name,
                    "realization": int(parsed["r"]),
                    "omega_m": om,
                    "sigma_8": s8,
                    "A_s": a_s,
                    "m_nu": m_nu,
                    "z_s": float(parsed["z"]),
                    "side_angle_deg": angle,
                    "n_pix": n_pix,
                }
            )
    if len(n_pix_seen) > 1:
        detail = ", ".join(f"{n}x{n} in {f}" for n, f in n_pix_seen.items())
        raise ValueError(f"{root}: maps of different sizes in one dataset ({detail})")
    return pd.DataFrame(rows, columns=CATALOG_COLUMNS)


def _lookup_sigma8(m_nu: float, omega_m: float, a_s: float) -> float:
    for row in AWD_COSMOLOGIES:
        if np.allclose(row[:3], (m_nu, omega_m, a_s), atol=1e-4):
            return row[3]
    return sigma8_from_as(omega_m, a_s, m_nu)


def _npz_member(path: Path, key: str) -> tuple[int, np.dtype, tuple[int, ...], bool] | None:
    """Offset, dtype, shape and order of an uncompressed array inside an npz (to memmap it)."""
    with zipfile.ZipFile(path) as archive:
        try:
            info = archive.getinfo(f"{key}.npy")
        except KeyError:
            return None
        if info.compress_type != zipfile.ZIP_STORED:
            return None
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        fh.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        return fh.tell(), dtype, shape, fortran


def npz_images(path: str | os.PathLike[str], key: str = "imgs") -> np.ndarray:
    """The image stack of an npz file, memory-mapped when stored uncompressed.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "a.npz"
    >>> np.savez(p, imgs=np.zeros((3, 4, 4), np.float32), params=np.zeros((3, 3)))
    >>> type(npz_images(p)).__name__, npz_images(p).shape
    ('memmap', (3, 4, 4))
    """
    path = Path(path)
    try:
        member = _npz_member(path, key)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable npz file ({err})") from err
    if member is None:
        with np.load(path) as data:
            if key not in data:
                raise ValueError(f"{path}: no array {key!r} (found {list(data.keys())})")
            logger.info("%s is compressed: loading %r into memory", path, key)
            try:
                return data[key]
            except ValueError as err:  # an object array: numpy refuses to unpickle it
                raise ValueError(f"{path}: {key!r} holds Python objects, not numbers") from err
    offset, dtype, shape, fortran = member
    if dtype.hasobject:
        raise ValueError(f"{path}: {key!r} holds Python objects, not numbers")
    return np.memmap(
        path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C"
    )


def _npz_array(path: Path, data: Any, key: str) -> np.ndarray:
    try:
        return np.asarray(data[key], dtype=float)
    except ValueError as err:
        # numpy's own message suggests unsafe loading; an array of Python objects is
        # never loaded (it would run code), so the file is simply refused.
        if "pickle" in str(err) or "Object arrays" in str(err):
            raise ValueError(f"{path}: {key!r} holds Python objects, not numbers") from err
        raise ValueError(f"{path}: {key!r} is not numeric ({err})") from err


def _read_npz_tables(path: Path) -> tuple[np.ndarray, float | None]:
    """``params`` and the stored side angle of an npz file, with its errors named."""
    try:
        with np.load(path) as data:
            keys = set(data.keys())
            if not {"imgs", "params"} <= keys:
                raise ValueError(f"{path}: expected arrays 'imgs' and 'params', found {keys}")
            params = _npz_array(path, data, "params")
            stored = _npz_array(path, data, "side_angle_deg") if "side_angle_deg" in keys else None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable npz file ({err})") from err
    except ValueError as err:
        if str(err).startswith(f"{path}:"):
            raise
        # Anything np.load cannot open (random bytes, a pickle) ends here.
        raise ValueError(f"{path}: not a readable npz file (not a zip of .npy arrays)") from err
    if stored is None:
        return params, None
    angle = float(stored.ravel()[0]) if stored.size == 1 else math.nan
    if not (math.isfinite(angle) and angle > 0):
        raise ValueError(
            f"{path}: 'side_angle_deg' must be one positive number (degrees), got {stored}"
        )
    return params, angle


def _catalog_npz(path: Path, side_angle_deg: float | None) -> pd.DataFrame:
    params, stored_angle = _read_npz_tables(path)
    imgs = npz_images(path)
    if imgs.ndim != 3 or imgs.shape[1] != imgs.shape[2]:
        raise ValueError(f"{path}: 'imgs' must be (n, N, N), got {imgs.shape}")
    if params.ndim != 2 or params.shape[0] != imgs.shape[0] or params.shape[1] not in (3, 4):
        raise ValueError(
            f"{path}: 'params' must be (n, 3) = (M_nu, Omega_m, 10^9 A_s) or (n, 4) with "
            f"sigma_8, with n = {imgs.shape[0]}; got {params.shape}"
        )
    if not np.all(np.isfinite(params)):
        row = int(np.flatnonzero(~np.isfinite(params).all(axis=1))[0])
        raise ValueError(f"{path}: 'params' has NaN or infinite values (first: row {row})")
    n, n_pix = imgs.shape[0], imgs.shape[1]
    angle = stored_angle if stored_angle is not None else side_angle_deg
    if angle is None:
        angle = _AWD_PIXEL_DEG * n_pix
        logger.info("%s: no side angle given; assuming AWD pixels (%.4f deg)", path, angle)
    key = np.round(params[:, :3], 6)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # ids in order of first appearance
    cosmo = order[inverse.ravel()]
    realization = np.zeros(n, dtype=int)
    counters: dict[int, int] = {}
    for i, c in enumerate(cosmo):
        realization[i] = counters.get(c, 0)
        counters[c] = realization[i] + 1
    sigma8 = {}
    for c in np.unique(cosmo):
        row = params[np.flatnonzero(cosmo == c)[0]]
        sigma8[c] = row[3] if params.shape[1] == 4 else _lookup_sigma8(*row[:3])
    return pd.DataFrame(
        {
            "file": str(path),
            "index": np.arange(n),
            "cosmology": cosmo,
            "cosmology_name": [f"cosmo{c:03d}" for c in cosmo],
            "realization": realization,
            "omega_m": params[:, 1],
            "sigma_8": [sigma8[c] for c in cosmo],
            "A_s": params[:, 2],
            "m_nu": params[:, 0],
            "z_s": 1.0,
            "side_angle_deg": float(angle),
            "n_pix": n_pix,
        }
    )


#: Numeric columns of a parameters CSV: (column, must be present in every row, integer).
_CSV_NUMBERS = (
    ("omega_m", True, False),
    ("sigma_8", True, False),
    ("A_s", False, False),
    ("m_nu", False, False),
    ("z_s", False, False),
    ("side_angle_deg", False, False),
    ("cosmology", True, True),
    ("realization", True, True),
)


def _csv_line(i: int) -> int:
    return i + 2  # line 1 holds the column names


def _check_csv_numbers(table: pd.DataFrame, csv: Path) -> None:
    """Every numeric column numeric and finite, required ones complete (lines named)."""
    for col, required, integer in _CSV_NUMBERS:
        if col not in table:
            continue
        values = pd.to_numeric(table[col], errors="coerce")
        bad = values.isna() & table[col].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(
                f"{csv}: column {col!r} must hold numbers; line {_csv_line(i)} has "
                f"{table[col].iloc[i]!r}"
            )
        missing = values.isna().to_numpy()
        if required and missing.any():
            i = int(np.flatnonzero(missing)[0])
            raise ValueError(f"{csv}: column {col!r} has a missing value on line {_csv_line(i)}")
        finite = values.isna() | np.isfinite(values)
        whole = values.isna() | (values % 1 == 0) if integer else finite
        wrong = ~(finite & whole).to_numpy()
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            kind = "whole numbers" if integer else "finite numbers"
            raise ValueError(
                f"{csv}: column {col!r} must hold {kind}; line {_csv_line(i)} has "
                f"{table[col].iloc[i]!r}"
            )


def _csv_files(table: pd.DataFrame, csv: Path, root: Path) -> list[Path]:
    """The listed maps: non-empty, inside ``root``, each once, existing."""
    inside = Path(os.path.abspath(root))
    files: list[Path] = []
    seen: dict[Path, int] = {}
    for i, name in enumerate(table["file"]):
        line = _csv_line(i)
        if pd.isna(name) or not str(name).strip():
            raise ValueError(f"{csv}: the 'file' cell on line {line} is empty")
        path = Path(str(name))
        path = path if path.is_absolute() else root / path
        # Lexical, not resolved: a symbolic link placed inside the folder is the user's choice.
        where = Path(os.path.abspath(path))
        if not where.is_relative_to(inside):
            raise ValueError(
                f"{csv}: line {line} lists {name}, outside the data folder {root}; list maps "
                "inside it, relative to it (a run records the fingerprint of that folder only)"
            )
        if where in seen:
            raise ValueError(
                f"{csv}: {name} is listed more than once (lines {seen[where]} and {line}); "
                "a map is one realization, and a copy could land in two splits"
            )
        seen[where] = line
        files.append(path)
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        raise ValueError(f"{csv}: {len(absent)} listed files do not exist, e.g. {absent[0]}")
    return files


def _parameters_csv(root: Path, params_file: Any) -> Path:
    if params_file is not None:
        return Path(params_file)
    if (root / "parameters.csv").exists():
        return root / "parameters.csv"
    candidates = sorted(root.glob("*.csv"))
    if len(candidates) != 1:
        raise ValueError(
            f"{root}: not a MassiveNuS tree, and no single parameters CSV "
            f"(found {[c.name for c in candidates]}); pass params_file"
        )
    return candidates[0]


def _catalog_folder(root: Path, side_angle_deg: float | None, params_file: Any) -> pd.DataFrame:
    csv = _parameters_csv(root, params_file)
    try:
        table = pd.read_csv(csv)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{csv}: cannot read the parameters CSV ({err})") from err
    table.columns = [c.strip() for c in table.columns]
    missing = {"file", "omega_m", "sigma_8"} - set(table.columns)
    if missing:
        raise ValueError(
            f"{csv}: missing columns {sorted(missing)} (need file, omega_m, sigma_8; "
            f"found {list(table.columns)})"
        )
    _check_csv_numbers(table, csv)
    for col, default in (("A_s", np.nan), ("m_nu", 0.0), ("z_s", 1.0)):
        if col not in table:
            table[col] = default
    files = _csv_files(table, csv, root)
    angles, sizes = [], []
    for i, f in enumerate(files):
        fallback = table["side_angle_deg"].iloc[i] if "side_angle_deg" in table else None
        fallback = side_angle_deg if fallback is None or pd.isna(fallback) else float(fallback)
        angle, n_pix = _fits_geometry(f, fallback)
        angles.append(angle)
        sizes.append(n_pix)
    if "cosmology" not in table:
        keys = table[["omega_m", "sigma_8", "m_nu"]].round(6).apply(tuple, axis=1)
        table["cosmology"] = pd.factorize(keys)[0]
    if "realization" not in table:
        table["realization"] = table.groupby("cosmology").cumcount()
    return pd.DataFrame(
        {
            "file": [str(f) for f in files],
            "index": 0,
            "cosmology": table["cosmology"].astype(int),
            "cosmology_name": table["cosmology"].astype(str),
            "realization": table["realization"].astype(int),
            "omega_m": table["omega_m"].astype(float),
            "sigma_8": table["sigma_8"].astype(float),
            "A_s": table["A_s"].astype(float),
            "m_nu": table["m_nu"].astype(float),
            "z_s": table["z_s"].astype(float),
            "side_angle_deg": angles,
            "n_pix": sizes,
        }
    )


# --------------------------------------------------------------------------- splits


def split_by_realization(
    catalog: pd.DataFrame,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    names: Sequence[str] = ("train", "val", "test"),
) -> pd.Series:
    """Assign each map to a split by realization, separately inside each cosmology.

    Every realization of a cosmology goes to exactly one split, so the splits are
    disjoint; the assignment depends only on ``seed`` and the catalog.

    Parameters
    ----------
    catalog
        From :func:`load_catalog`.
    fractions
        Split fractions (sum 1).
    seed
        Seed of the permutation.
    names
        Split names, one per fraction.

    Returns
    -------
    pandas.Series
        Split name per catalog row (same index).

    Examples
    --------
    >>> cat = pd.DataFrame({"cosmology": [0] * 10, "realization": range(10)})
    >>> split_by_realization(cat, (0.6, 0.2, 0.2)).value_counts().to_dict()
    {'train': 6, 'val': 2, 'test': 2}
    """
    fractions = np.asarray(fractions, dtype=float)
    if len(fractions) != len(names) or np.any(fractions < 0) or abs(fractions.sum() - 1) > 1e-6:
        raise ValueError(f"fractions {fractions.tolist()} must be >= 0, sum to 1, match {names}")
    labels = pd.Series(index=catalog.index, dtype=object)
    for cosmo, group in catalog.groupby("cosmology", sort=True):
        real = np.unique(group["realization"].to_numpy())
        rng = np.random.default_rng([seed, int(cosmo)])
        perm = rng.permutation(real)
        bounds = np.round(np.cumsum(fractions) * len(real)).astype(int)
        assign = {}
        start = 0
        for name, stop in zip(names, bounds, strict=True):
            for r in perm[start:stop]:
                assign[r] = name
            start = stop
        labels.loc[group.index] = group["realization"].map(assign).to_numpy()
    return labels


# --------------------------------------------------------------------------- dataset


def block_average(kappa: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor`` x ``factor`` pixel blocks (512^2 -> 256^2 with factor 2).

    Examples
    --------
    >>> block_average(np.arange(16.0).reshape(4, 4), 2)
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """
    if factor == 1:
        return kappa
    n0, n1 = kappa.shape[-2:]
    if n0 % factor or n1 % factor:
        raise ValueError(f"map of {n0}x{n1} pixels cannot be block-averaged by {factor}")
    shape = (*kappa.shape[:-2], n0 // factor, factor, n1 // factor, factor)
    return kappa.reshape(shape).mean(axis=(-3, -1))


def _arcmin(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, u.Quantity):
        return float(value.to_value(u.arcmin))
    return float(value)


class ConvergenceMapDataset(Dataset):
    """Lazy torch dataset over a catalog: one map and its targets per item.

    Parameters
    ----------
    catalog
        From :func:`load_catalog` (optionally a subset, e.g. one split).
    targets
        Catalog columns returned as the target vector.
    block
        Block-averaging factor (2 turns 512^2 MassiveNuS maps into the AWD 256^2 ones).
    noise
        Shape noise added after block averaging, fixed per item and ``seed``.
    smoothing
        Gaussian smoothing sigma after noise, as an astropy angle or a float in arcmin.
    seed
        Seed of the noise.
    dtype
        Dtype of the returned tensors.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "a.npz"
    >>> np.savez(p, imgs=np.zeros((2, 8, 8), np.float32),
    ...          params=np.array([[0.0, 0.3, 2.1], [0.0, 0.3, 2.1]]))
    >>> ds = ConvergenceMapDataset(load_catalog(p), block=2)
    >>> x, y = ds[0]
    >>> tuple(x.shape), [round(v, 3) for v in y.tolist()]
    ((1, 4, 4), [0.3, 0.85])
    """

    def __init__(
        self,
        catalog: pd.DataFrame,
        targets: Sequence[str] = ("omega_m", "sigma_8"),
        block: int = 1,
        noise: ShapeNoise | None = None,
        smoothing: u.Quantity | float | None = None,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        missing = set(targets) - set(catalog.columns)
        if missing:
            raise ValueError(f"targets {sorted(missing)} are not catalog columns")
        sizes = catalog["n_pix"].unique()
        if len(sizes) > 1:
            raise ValueError(f"maps of different sizes in one dataset: {sorted(sizes)} pixels")
        self.catalog = catalog.reset_index(drop=True)
        self.targets = list(targets)
        self.block = int(block)
        self.noise = noise
        self.smoothing_arcmin = _arcmin(smoothing, "smoothing")
        self.seed = seed
        self.dtype = dtype
        self.n_pix = int(sizes[0]) if len(sizes) else 0
        if self.n_pix % self.block:
            raise ValueError(f"{self.n_pix} pixels cannot be block-averaged by {self.block}")
        self._targets = torch.as_tensor(
            self.catalog[self.targets].to_numpy(dtype=np.float64, copy=True), dtype=dtype
        )
        self._stacks: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.catalog)

    def read_raw(self, i: int) -> np.ndarray:
        """The stored map of item ``i`` (float64, before block averaging and noise)."""
        row = self.catalog.iloc[i]
        path = row["file"]
        if path.endswith(".npz"):
            if path not in self._stacks:
                self._stacks[path] = npz_images(path)
            kappa = np.array(self._stacks[path][int(row["index"])], dtype=np.float64)
            if not np.all(np.isfinite(kappa)):
                raise ValueError(f"{path}: map {row['index']} has NaN or infinite pixels")
        else:
            angle = float(row["side_angle_deg"])
            kappa, read_angle, _ = read_map(path, side_angle_deg=angle)
            # The catalogue of a tree reads one header per folder; each map is checked here.
            if not np.isclose(read_angle, angle):
                raise ValueError(
                    f"{path}: side angle {read_angle:g} deg, but the catalogue's maps have "
                    f"{angle:g} deg"
                )
            kappa = kappa.astype(np.float64)
        if kappa.shape != (self.n_pix, self.n_pix):
            raise ValueError(
                f"{path}: map of shape {kappa.shape}, but the dataset holds "
                f"{self.n_pix}x{self.n_pix} maps"
            )
        return kappa

    def pixel_arcmin(self) -> float:
        """Pixel size after block averaging, in arcmin."""
        angle = float(self.catalog["side_angle_deg"].iloc[0])
        return (angle * u.deg).to_value(u.arcmin) * self.block / self.n_pix

    def map(self, i: int) -> np.ndarray:
        """Item ``i`` as a numpy map (block-averaged, noisy and smoothed as configured)."""
        kappa = block_average(self.read_raw(i), self.block)
        pixel = self.pixel_arcmin()
        if self.noise is not None:
            rng = np.random.default_rng([self.seed, i])
            kappa = add_shape_noise(kappa, self.noise, pixel, rng)
        if self.smoothing_arcmin:
            kappa = smooth_map(kappa, self.smoothing_arcmin, pixel)
        return kappa

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        kappa = torch.as_tensor(self.map(int(i)), dtype=self.dtype)
        return kappa.unsqueeze(0), self._targets[int(i)]

    def stack(self, indices: Sequence[int] | None = None) -> torch.Tensor:
        """Items as one (n, N, N) tensor (for batched statistics).

        Examples
        --------
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "a.npz"
        >>> np.savez(p, imgs=np.ones((3, 4, 4)), params=np.zeros((3, 4)) + 0.3)
        >>> tuple(ConvergenceMapDataset(load_catalog(p)).stack().shape)
        (3, 4, 4)
        """
        indices = range(len(self)) if indices is None else indices
        return torch.stack([torch.as_tensor(self.map(int(i)), dtype=self.dtype) for i in indices])
