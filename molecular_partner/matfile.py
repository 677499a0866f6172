"""Read (and write) cmeAnalysis ``ProcessedTracks.mat`` files as a tracks table.

cmeAnalysis saves a 1 x n struct array ``tracks`` with plain ``save`` (MATLAB v5/v7,
read here through ``scipy.io``); a v7.3 save is an HDF5 file (read through ``h5py``).
Per-frame fields are ``nCh x L`` arrays whose row 0 is the master channel (clathrin) and
row 1 the auxilin channel read at the clathrin positions; ``startBuffer`` and
``endBuffer`` are nested structs with the same fields over 5 frames.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from shared.runs import atomic_write

__all__ = ["cell_folder", "cell_name", "read_processed_tracks", "write_processed_tracks"]

logger = logging.getLogger(__name__)

REQUIRED_FIELDS = ("A", "pval_Ar", "lifetime_s", "catIdx")
_PER_CHANNEL = {"A": ("X", "Y"), "c": "c", "A_pstd": "A_pstd", "pval_Ar": "pval_Ar"}
_PER_CHANNEL.update(sigma_r="sigma_r")


def cell_folder(path: str | Path) -> Path:
    """The folder that names the cell of a ``ProcessedTracks.mat``.

    The cmeAnalysis layout is ``<cell>/<channel>/Tracking/ProcessedTracks.mat``; any other
    file is named by its own folder.

    Examples
    --------
    >>> cell_folder("exp/cell3/ch1/Tracking/ProcessedTracks.mat").as_posix()
    'exp/cell3'
    >>> cell_folder("exp/cell3/tracks.mat").as_posix()
    'exp/cell3'
    """
    path = Path(path)
    if path.parent.name == "Tracking" and len(path.parents) >= 3:
        return path.parents[2]
    return path.parent


def cell_name(path: str | Path, depth: int = 1) -> str:
    """The cell name of a ``ProcessedTracks.mat``: its cell folder, with ``depth - 1`` parents.

    A longer name tells apart cells of different experiments that share a folder name
    (``expA/cell1``, ``expB/cell1``); see :func:`molecular_partner.data.load_tracks`.

    Examples
    --------
    >>> p = "data/expA/cell1/ch1/Tracking/ProcessedTracks.mat"
    >>> cell_name(p), cell_name(p, 2)
    ('cell1', 'expA/cell1')
    """
    folder = cell_folder(path)
    if not folder.name:
        return Path(path).stem
    parts = [p.name for p in (folder, *folder.parents)[:depth] if p.name]
    return "/".join(reversed(parts))


# --------------------------------------------------------------------------- v5 / v7


def _from_record(rec) -> dict:
    """One element of a scipy struct array (struct_as_record=True, squeeze_me=False)."""
    out = {}
    for name in rec.dtype.names:
        val = rec[name]
        if isinstance(val, np.ndarray) and val.dtype.names is not None:
            out[name] = _from_record(val.ravel()[0]) if val.size else {}
        elif isinstance(val, np.ndarray) and val.dtype == object:
            out[name] = val
        else:
            out[name] = np.asarray(val)
    return out


def _read_v5(path: Path) -> list[dict]:
    from scipy.io import loadmat

    mat = loadmat(str(path), squeeze_me=False, struct_as_record=True)
    if "tracks" not in mat:
        raise ValueError(
            f"{path}: no variable 'tracks' "
            f"(found {sorted(k for k in mat if not k.startswith('__'))})"
        )
    tracks = mat["tracks"]
    if tracks.dtype.names is None:
        raise ValueError(f"{path}: 'tracks' is not a struct array")
    return [_from_record(r) for r in tracks.ravel()]


# --------------------------------------------------------------------------- v7.3


def _h5_read(f, obj):
    import h5py

    if isinstance(obj, h5py.Group):
        return {k: _h5_read(f, obj[k]) for k in obj}
    data = obj[()]
    if obj.dtype == h5py.ref_dtype or (isinstance(data, np.ndarray) and data.dtype == object):
        refs = np.ravel(data)
        out = np.empty(refs.size, dtype=object)
        for i, r in enumerate(refs):
            out[i] = _h5_read(f, f[r])
        return out
    if obj.attrs.get("MATLAB_empty", 0):
        return np.zeros((0, 0))
    # MATLAB is column-major: h5py sees the transpose.
    return np.asarray(data).T


def _read_v73(path: Path) -> list[dict]:
    import h5py

    with h5py.File(path, "r") as f:
        if "tracks" not in f:
            raise ValueError(f"{path}: no variable 'tracks' (found {sorted(f.keys())})")
        grp = f["tracks"]
        if not isinstance(grp, h5py.Group):
            raise ValueError(f"{path}: 'tracks' is not a struct array")
        fields = {k: _h5_read(f, grp[k]) for k in grp}
    lengths = {
        k: (v.size if isinstance(v, np.ndarray) and v.dtype == object else None)
        for k, v in fields.items()
    }
    counts = {n for n in lengths.values() if n is not None}
    if not counts:
        return [fields]  # a 1x1 struct stores its fields directly
    n = max(counts)
    return [{k: (v.ravel()[i] if lengths[k] else v) for k, v in fields.items()} for i in range(n)]


# --------------------------------------------------------------------------- to table


def _numbers(val, name: str, path: Path, i: int) -> np.ndarray:
    try:
        return np.asarray(val, dtype=np.float64)
    except (TypeError, ValueError) as err:
        shown = val.tolist() if isinstance(val, np.ndarray) else val
        raise ValueError(
            f"{path}: track {i + 1}, field {name!r} must hold numbers, got {shown!r}"
        ) from err


def _rows2d(val, name: str, path: Path, i: int) -> np.ndarray:
    arr = _numbers(val, name, path, i)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{path}: track {i + 1}, field {name!r} has shape {arr.shape}")
    return arr


def _scalar(val, name: str, path: Path, i: int, default=np.nan) -> float:
    arr = _numbers(val, name, path, i).ravel()
    return float(arr[0]) if arr.size else default


def _track_row(tr: dict, path: Path, i: int, cell: str) -> dict:  # noqa: C901
    missing = [k for k in REQUIRED_FIELDS if k not in tr]
    if missing:
        raise ValueError(f"{path}: tracks lack required field(s) {missing}")
    a = _rows2d(tr["A"], "A", path, i)
    if a.shape[0] < 2:
        raise ValueError(
            f"{path}: track {i + 1} has {a.shape[0]} channel(s) in 'A'; need clathrin and auxilin"
        )
    category = _scalar(tr["catIdx"], "catIdx", path, i, 0)
    row: dict = {
        "cell": cell,
        "track_id": i + 1,
        "catIdx": int(category) if np.isfinite(category) else 0,
        "lifetime_s": _scalar(tr["lifetime_s"], "lifetime_s", path, i),
        "start": _scalar(tr.get("start", np.nan), "start", path, i),
        "end": _scalar(tr.get("end", np.nan), "end", path, i),
        "visibility": _scalar(tr.get("visibility", np.nan), "visibility", path, i),
        "X": a[0],
        "Y": a[1],
    }
    for field in ("c", "A_pstd", "pval_Ar", "sigma_r"):
        if field in tr:
            v = _rows2d(tr[field], field, path, i)
            if v.shape[0] >= 2:
                row[f"{field}_X"], row[f"{field}_Y"] = v[0], v[1]
    for field in ("t", "f", "gapVect"):
        if field in tr:
            row[field] = _numbers(tr[field], field, path, i).ravel()
    for field in ("x", "y"):
        if field in tr:
            row[field] = _rows2d(tr[field], field, path, i)[0]
    if "pval_Ar_Y" not in row:
        raise ValueError(f"{path}: track {i + 1}: 'pval_Ar' has no auxilin row")
    # Arrays of different lengths spoil one track, not the file: the track is kept here
    # and dropped, with its reason, by the cleaning rules (molecular_partner.data).
    for buf in ("startBuffer", "endBuffer"):
        b = tr.get(buf)
        if isinstance(b, dict) and "A" in b and np.size(b["A"]):
            ba = _rows2d(b["A"], f"{buf}.A", path, i)
            row[f"X_{buf}"] = ba[0]
            if ba.shape[0] >= 2:
                row[f"Y_{buf}"] = ba[1]
            if "pval_Ar" in b and np.size(b["pval_Ar"]):
                bp = _rows2d(b["pval_Ar"], f"{buf}.pval_Ar", path, i)
                if bp.shape[0] >= 2:
                    row[f"pval_Ar_Y_{buf}"] = bp[1]
    return row


def read_processed_tracks(path: str | Path, cell: str | None = None) -> pd.DataFrame:
    """Read a cmeAnalysis ``ProcessedTracks.mat`` (v5/v7 or v7.3) into a tracks table.

    Parameters
    ----------
    path : path
        The ``.mat`` file.
    cell : str, optional
        Value of the ``cell`` column; by default the cell folder of the cmeAnalysis layout
        ``<cell>/<channel>/Tracking/ProcessedTracks.mat`` (else the parent folder name).

    Returns
    -------
    DataFrame
        One row per track with ``lifetime_s``, ``catIdx``, ``X`` (clathrin amplitudes),
        ``Y`` (auxilin amplitudes), ``pval_Ar_Y``, ``cell`` and the other fields present
        (see :mod:`molecular_partner.tables`).

    Raises
    ------
    ValueError
        If the file is not a MAT file, has no ``tracks`` struct array, lacks a required
        field (``A``, ``pval_Ar``, ``lifetime_s``, ``catIdx``) or has fewer than 2 channels.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from scipy.io import savemat
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "ProcessedTracks.mat"
    >>> tr = np.zeros((1, 1), dtype=[("A", object), ("pval_Ar", object),
    ...                              ("lifetime_s", object), ("catIdx", object)])
    >>> tr[0, 0] = (np.ones((2, 3)), np.full((2, 3), 0.01), 3.0, 1.0)
    >>> savemat(p, {"tracks": tr})
    >>> read_processed_tracks(p, cell="c1")[["cell", "lifetime_s", "catIdx"]].values.tolist()
    [['c1', 3.0, 1]]
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    import h5py

    with open(path, "rb") as fh:
        head = fh.read(128)
    try:
        if h5py.is_hdf5(path):
            records = _read_v73(path)
        elif head[:6] == b"MATLAB":
            records = _read_v5(path)
        else:
            raise ValueError(f"{path}: not a MATLAB v5 or v7.3 file")
    except ValueError as err:
        if str(err).startswith(f"{path}:"):
            raise
        raise ValueError(f"{path}: unreadable MAT file ({err})") from err
    except Exception as err:  # scipy and h5py raise many kinds on a corrupt file
        raise ValueError(f"{path}: unreadable MAT file ({err})") from err
    if not records:
        raise ValueError(f"{path}: 'tracks' is empty")
    name = cell if cell is not None else cell_name(path)
    rows = [_track_row(r, path, i, name) for i, r in enumerate(records)]
    df = pd.DataFrame(rows)
    logger.info("%s: %d tracks read", path, len(df))
    return df


def write_processed_tracks(tracks: pd.DataFrame, path: str | Path) -> Path:
    """Write a tracks table as a cmeAnalysis-style ``ProcessedTracks.mat`` (v5, scipy).

    Only the fields the table holds are written: per-frame ``A``, ``c``, ``A_pstd``,
    ``pval_Ar``, ``sigma_r`` as 2 x L arrays, ``t``, ``f``, ``x``, ``y``, ``gapVect``,
    the scalars and ``startBuffer`` / ``endBuffer`` (``A`` and ``pval_Ar``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> df = pd.DataFrame({"cell": ["c"], "catIdx": [1], "lifetime_s": [3.0],
    ...                    "X": [np.ones(3)], "Y": [np.zeros(3)], "pval_Ar_Y": [np.ones(3)],
    ...                    "pval_Ar_X": [np.zeros(3)]})
    >>> p = write_processed_tracks(df, pathlib.Path(tempfile.mkdtemp()) / "P.mat")
    >>> read_processed_tracks(p)["X"].iloc[0].tolist()
    [1.0, 1.0, 1.0]
    """
    from scipy.io import savemat

    path = Path(path)
    scalars = [c for c in ("catIdx", "lifetime_s", "start", "end", "visibility") if c in tracks]
    per_ch = [
        f
        for f in ("c", "A_pstd", "pval_Ar", "sigma_r")
        if f"{f}_X" in tracks and f"{f}_Y" in tracks
    ]
    plain = [c for c in ("t", "f", "gapVect") if c in tracks]
    names = ["A", *per_ch, *plain, *scalars]
    names += [c for c in ("x", "y") if c in tracks]
    has_buf = "X_startBuffer" in tracks and "Y_startBuffer" in tracks
    if has_buf:
        names += ["startBuffer", "endBuffer"]
    arr = np.zeros((1, len(tracks)), dtype=[(n, object) for n in names])
    for i, r in enumerate(tracks.itertuples(index=False)):
        r = r._asdict()
        vals = {"A": np.vstack([r["X"], r["Y"]])}
        for f in per_ch:
            vals[f] = np.vstack([r[f"{f}_X"], r[f"{f}_Y"]])
        for c in plain:
            vals[c] = np.asarray(r[c], dtype=np.float64)[None, :]
        for c in scalars:
            vals[c] = float(r[c])
        for c in ("x", "y"):
            if c in names:
                vals[c] = np.asarray(r[c], dtype=np.float64)[None, :]
        if has_buf:
            for buf in ("startBuffer", "endBuffer"):
                b = np.zeros((1, 1), dtype=[("A", object), ("pval_Ar", object)])
                a = np.vstack([r[f"X_{buf}"], r[f"Y_{buf}"]])
                p = r.get(f"pval_Ar_Y_{buf}", np.full(a.shape[1], np.nan))
                b[0, 0] = (a, np.vstack([np.full(a.shape[1], np.nan), p]))
                vals[buf] = b
        arr[0, i] = tuple(vals[n] for n in names)
    atomic_write(
        path, lambda tmp: savemat(tmp, {"tracks": arr}, do_compression=True, appendmat=False)
    )
    return path
