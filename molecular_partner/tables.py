"""The tracks table: one row per track, columns named as in cmeAnalysis.

Every source of tracks (our tracker, the ``ProcessedTracks.mat`` reader, the simulator's
ideal tracker) produces this layout, so cleaning and outcome code runs on any of them.

Scalar columns: ``cell`` (str), ``track_id``, ``catIdx`` (1-8), ``lifetime_s``, ``start`` and
``end`` (1-based frame numbers, as in cmeAnalysis), ``visibility``.
Per-frame array columns (one value per track frame, gap frames included): ``t`` (s), ``f``
(1-based frame), ``x``, ``y`` (pixels), ``gapVect`` (1 in a gap frame), and per channel the
fit results with the channel's letter: ``X`` / ``Y`` (amplitude ``A`` of clathrin, auxilin),
``c_X``, ``c_Y``, ``A_pstd_X``, ``A_pstd_Y``, ``pval_Ar_X``, ``pval_Ar_Y``, ``sigma_r_X``,
``sigma_r_Y``. Buffers: ``X_startBuffer``, ``X_endBuffer``, ``Y_startBuffer``,
``Y_endBuffer``, ``pval_Ar_Y_startBuffer``, ``pval_Ar_Y_endBuffer`` (up to 5 frames each).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from shared.runs import atomic_write

__all__ = [
    "ARRAY_COLUMNS",
    "REQUIRED_COLUMNS",
    "SCALAR_COLUMNS",
    "read_tracks_table",
    "track_row",
    "track_visibility",
    "write_tracks_table",
]

SCALAR_COLUMNS = ("cell", "track_id", "catIdx", "lifetime_s", "start", "end", "visibility")
ARRAY_COLUMNS = (
    "t",
    "f",
    "x",
    "y",
    "gapVect",
    "X",
    "Y",
    "c_X",
    "c_Y",
    "A_pstd_X",
    "A_pstd_Y",
    "pval_Ar_X",
    "pval_Ar_Y",
    "sigma_r_X",
    "sigma_r_Y",
)
BUFFER_COLUMNS = (
    "X_startBuffer",
    "X_endBuffer",
    "Y_startBuffer",
    "Y_endBuffer",
    "pval_Ar_Y_startBuffer",
    "pval_Ar_Y_endBuffer",
)
REQUIRED_COLUMNS = ("cell", "lifetime_s", "catIdx", "X", "Y", "pval_Ar_Y")
FIT_FIELDS = ("A", "c", "A_pstd", "pval_Ar", "sigma_r")


def track_visibility(first: int, last: int, n_frames: int) -> int:
    """cmeAnalysis ``visibility`` of a track: 1 complete, 2 cut, 3 persistent.

    ``first`` and ``last`` are the track's 0-based first and last frames in a movie of
    ``n_frames``; a track present in the first or last frame is cut, one present in both
    persists through the whole movie.

    Examples
    --------
    >>> track_visibility(3, 7, 10), track_visibility(0, 7, 10), track_visibility(0, 9, 10)
    (1, 2, 3)
    """
    at_start, at_end = first == 0, last == n_frames - 1
    if at_start and at_end:
        return 3
    return 2 if at_start or at_end else 1


def track_row(
    *,
    cell: str,
    track_id: int,
    catIdx: int,
    frames: np.ndarray,
    n_frames: int,
    frame_interval_s: float,
    x: np.ndarray,
    y: np.ndarray,
    gap: np.ndarray,
    fits: tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]],
    track,
    start_buffer,
    end_buffer,
    **extra,
) -> dict:
    """One row of a tracks table, in the column order of this module.

    The one place where a track's frames and fitted amplitudes become table columns (the
    simulator's ideal tracker and the movie tracker both build their rows here).

    Parameters
    ----------
    cell : str
    track_id : int
    catIdx : int
        cmeAnalysis category, decided by the caller.
    frames : ndarray of int
        The track's 0-based frames, gap frames included.
    n_frames : int
        Frames in the movie (for ``visibility``).
    frame_interval_s : float
        Seconds per frame (``t`` and ``lifetime_s``).
    x, y, gap : ndarray
        Position (pixels) and gap flag per track frame.
    fits : (mapping, mapping)
        Clathrin and auxilin fit results: arrays ``A``, ``c``, ``A_pstd``, ``pval_Ar``,
        ``sigma_r`` over the track frames and the buffer frames.
    track, start_buffer, end_buffer : slice or boolean mask
        Where the track frames and the two buffers lie in the arrays of ``fits``.
    **extra
        Further columns, appended last (e.g. the simulator's ``pit_id``).

    Returns
    -------
    dict
        Column name -> value.

    Examples
    --------
    >>> fit = {k: np.arange(7.0) for k in FIT_FIELDS}
    >>> row = track_row(cell="c1", track_id=1, catIdx=1, frames=np.arange(10, 15),
    ...                 n_frames=100, frame_interval_s=1.0, x=np.zeros(5), y=np.zeros(5),
    ...                 gap=np.zeros(5, bool), fits=(fit, fit), track=slice(1, 6),
    ...                 start_buffer=slice(0, 1), end_buffer=slice(6, 7))
    >>> row["lifetime_s"], row["start"], row["X"].tolist(), row["X_endBuffer"].tolist()
    (5.0, 11, [1.0, 2.0, 3.0, 4.0, 5.0], [6.0])
    """
    fx, fy = fits
    first, last = int(frames[0]), int(frames[-1])
    row = {
        "cell": cell,
        "track_id": track_id,
        "catIdx": catIdx,
        "lifetime_s": (last - first + 1) * frame_interval_s,
        "start": first + 1,
        "end": last + 1,
        "visibility": track_visibility(first, last, n_frames),
        "t": frames * frame_interval_s,
        "f": (frames + 1).astype(np.float64),
        "x": x,
        "y": y,
        "gapVect": np.asarray(gap, dtype=np.float64),
    }
    # The amplitude A is the bare channel letter; other fields carry it as a suffix.
    for fit_field in FIT_FIELDS:
        prefix = "" if fit_field == "A" else f"{fit_field}_"
        row[f"{prefix}X"] = fx[fit_field][track]
        row[f"{prefix}Y"] = fy[fit_field][track]
    for ch, fit in (("X", fx), ("Y", fy)):
        row[f"{ch}_startBuffer"] = fit["A"][start_buffer]
        row[f"{ch}_endBuffer"] = fit["A"][end_buffer]
    row["pval_Ar_Y_startBuffer"] = fy["pval_Ar"][start_buffer]
    row["pval_Ar_Y_endBuffer"] = fy["pval_Ar"][end_buffer]
    row.update(extra)
    return row


def write_tracks_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a tracks table to parquet atomically (temporary file, then rename).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> df = pd.DataFrame({"cell": ["a"], "X": [np.arange(3.0)]})
    >>> p = write_tracks_table(df, d / "t.parquet")
    >>> read_tracks_table(p)["X"].iloc[0].tolist()
    [0.0, 1.0, 2.0]
    """
    path = Path(path)
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object and len(out) and isinstance(out[col].iloc[0], np.ndarray):
            out[col] = [np.asarray(v).tolist() for v in out[col]]
    atomic_write(path, lambda tmp: out.to_parquet(tmp, index=False))
    return path


def read_tracks_table(path: str | Path) -> pd.DataFrame:
    """Read a tracks table written by :func:`write_tracks_table`; arrays come back as ndarrays.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = write_tracks_table(pd.DataFrame({"cell": ["a"], "Y": [np.ones(2)]}),
    ...                        pathlib.Path(tempfile.mkdtemp()) / "t.parquet")
    >>> type(read_tracks_table(p)["Y"].iloc[0]).__name__
    'ndarray'
    """
    path = Path(path)
    try:
        df = pd.read_parquet(path)
    except Exception as err:
        raise ValueError(f"{path}: not a readable parquet tracks table ({err})") from err
    for col in df.columns:
        if df[col].dtype == object and len(df) and hasattr(df[col].iloc[0], "__len__"):
            if not isinstance(df[col].iloc[0], str):
                df[col] = [np.asarray(v, dtype=np.float64) for v in df[col]]
    return df
