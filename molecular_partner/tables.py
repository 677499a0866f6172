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

from pathlib import Path

import numpy as np
import pandas as pd

from shared.runs import atomic_write

__all__ = [
    "ARRAY_COLUMNS",
    "REQUIRED_COLUMNS",
    "SCALAR_COLUMNS",
    "read_tracks_table",
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
