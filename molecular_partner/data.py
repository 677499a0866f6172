"""From tracks to the AWD clathrin data set: the published cleaning and outcome rules.

The rules follow the reference pipeline (Yu-Group molecular-partner-prediction, used by
AWD) step by step:

1. keep ``catIdx`` in {1, 2}, then ``lifetime_s > 2``;
2. outcomes from the auxilin channel: ``y_consec_sig`` (auxilin ``pval_Ar < 0.05`` in two
   consecutive frames), ``y_conservative_thresh`` (``Y_max > 973``), their union
   ``y_consec_thresh``; ``Y_sig_mean`` (mean auxilin amplitude over significant frames,
   0 if none);
3. hotspots (repeated events at one site, the reference's rule, see
   :func:`hotspot_flags`); excluded;
4. lifetime gates with 95% purity fitted on training cells only (``thresh_short``: the
   largest lifetime whose shorter tracks are >= 95% aux-; ``thresh_long``: the smallest
   lifetime whose longer tracks are >= 95% aux+); gated tracks dropped (optional: the
   reference's own LSTM loader skips this step);
5. the "hard" set ``lifetime_s > 15``;
6. clathrin amplitude resampled to 40 points (index subsampling, or zero padding at the
   end) and z-scored per cell over all the cell's kept tracks (those left after steps
   1-5) and time points, padding included (``X_same_length_normalized``); ``Y_sig_mean``
   z-scored per cell over the same tracks (``Y_sig_mean_normalized``, the regression
   target of AWD).

Splits are by cell. :func:`build_dataset` splits the cells and fits the gates;
:func:`prepare_tracks` applies the same rules, through the same code, to the tracks of new
cells with the gates stored in the data set's ``meta.json`` (:func:`preparation_rules`),
and names the rule that dropped each track.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from molecular_partner.tables import (
    REQUIRED_COLUMNS,
    read_tracks_table,
    write_tracks_table,
)
from shared.runs import atomic_write

__all__ = [
    "AWD_COLUMNS",
    "DROP_RULES",
    "BuiltDataset",
    "PreparedTracks",
    "TraceDataset",
    "add_outcomes",
    "build_dataset",
    "check_awd_splits",
    "check_numeric_columns",
    "clean_tracks",
    "downsample",
    "hotspot_flags",
    "lifetime_gates",
    "load_awd_table",
    "load_tracks",
    "preparation_rules",
    "prepare_tracks",
    "split_cells",
    "validation_cells",
]

logger = logging.getLogger(__name__)

P_THRESH = 0.05
AUX_THRESH = 973.0
AUX_PEAK = 642.375
AWD_LENGTH = 40
AWD_COLUMNS = ("X_same_length_normalized", "Y_sig_mean_normalized", "y_consec_thresh")
KEPT_CATEGORIES = (1, 2)
MIN_LIFETIME_S = 2.0
# What prepare_tracks needs at least; the auxilin pair is optional there (no outcomes).
TRACE_COLUMNS = ("cell", "lifetime_s", "catIdx", "X")
AUXILIN_COLUMNS = ("Y", "pval_Ar_Y")
AMPLITUDE_COLUMNS = ("X", *AUXILIN_COLUMNS)
# The rules in the order they are applied (the ``rule`` column of a dropped table).
DROP_RULES = (
    "amplitudes",
    "catIdx",
    "min_lifetime",
    "hotspot",
    "short_gate",
    "long_gate",
    "lifetime_threshold",
)
# meta.json keys that prepare_tracks needs to re-apply a data set's rules to new cells.
PREPARATION_KEYS = ("apply_gates", "thresh_short", "thresh_long", "lifetime_threshold", "length")


# --------------------------------------------------------------------------- validation


def _amplitude_problem(values: dict[str, object]) -> str | None:
    """Why one track's per-frame arrays are unusable (``None`` when they are fine)."""
    arrs = {}
    for col, v in values.items():
        try:
            arrs[col] = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            return f"{col} is not numeric"
    empty = [c for c, a in arrs.items() if a.size == 0]
    if empty:
        return f"empty {', '.join(empty)}"
    nonfinite = [c for c, a in arrs.items() if not np.all(np.isfinite(a))]
    if nonfinite:
        return f"NaN/inf in {', '.join(nonfinite)}"
    sizes = {c: a.size for c, a in arrs.items()}
    if len(set(sizes.values())) > 1:
        return "lengths differ (" + ", ".join(f"{c} {n}" for c, n in sizes.items()) + ")"
    return None


def _drop_bad_amplitudes(
    df: pd.DataFrame, cols: tuple[str, ...], source: str, invalid: str = "drop"
) -> tuple[pd.DataFrame, list[tuple[int, str, str]]]:
    """Drop tracks with empty, non-finite or mismatched arrays, with a warning.

    Returns the kept rows (index unchanged) and ``(index, rule, reason)`` per dropped row.
    Raises ``ValueError`` naming ``source`` when every track is unusable, or at the first
    unusable one with ``invalid="raise"``.
    """
    columns = [df[c].to_numpy() for c in cols]
    problems = [
        _amplitude_problem(dict(zip(cols, vals, strict=True)))
        for vals in zip(*columns, strict=True)
    ]
    bad = np.array([p is not None for p in problems], dtype=bool)
    if bad.all():
        raise ValueError(f"{source}: every track has missing (NaN) or inconsistent amplitudes")
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        if invalid == "raise":
            ident = f"cell {df['cell'].iat[first]!r}"
            if "track_id" in df.columns:
                ident += f" track {df['track_id'].iat[first]}"
            raise ValueError(
                f"{source}: {int(bad.sum())} track(s) with NaN or inconsistent amplitudes "
                f"(first: {ident}: {problems[first]})"
            )
        by_cell = df.loc[bad, "cell"].value_counts().to_dict()
        warnings.warn(
            f"{source}: dropped {int(bad.sum())} track(s) with NaN or inconsistent "
            f"amplitudes (per cell: {by_cell})",
            stacklevel=3,
        )
    drops = [
        (int(i), "amplitudes", str(p))
        for i, p in zip(df.index, problems, strict=True)
        if p is not None
    ]
    return df.loc[~bad], drops


#: Scalar columns that must be numeric when present (cmeAnalysis stores them as doubles).
NUMERIC_COLUMNS = ("track_id", "catIdx", "lifetime_s", "start", "end", "visibility")


def check_numeric_columns(df: pd.DataFrame, source: str) -> None:
    """Refuse scalar columns of another type (e.g. lifetimes stored as text), naming them.

    Examples
    --------
    >>> check_numeric_columns(pd.DataFrame({"lifetime_s": ["20"]}), "t.parquet")
    Traceback (most recent call last):
    ...
    ValueError: t.parquet: column 'lifetime_s' must be numeric, found text values (e.g. '20')
    """
    for col in NUMERIC_COLUMNS:
        if col not in df.columns or pd.api.types.is_numeric_dtype(df[col]):
            continue
        values = df[col].dropna()
        if values.map(lambda v: isinstance(v, (int, float, np.number))).all():
            continue
        kind = "text" if values.map(lambda v: isinstance(v, str)).any() else "non-numeric"
        example = next(v for v in values if not isinstance(v, (int, float, np.number)))
        raise ValueError(
            f"{source}: column {col!r} must be numeric, found {kind} values (e.g. {example!r})"
        )


def check_tracks(df: pd.DataFrame, source: str = "tracks table") -> pd.DataFrame:
    """Check the required columns and drop tracks with missing amplitudes, with a warning.

    Raises ``ValueError`` naming ``source`` when columns are missing or no track is left.

    Examples
    --------
    >>> df = pd.DataFrame({"cell": ["a", "a"], "lifetime_s": [3.0, 4.0], "catIdx": [1, 1],
    ...                    "X": [np.ones(3), np.ones(4)], "Y": [np.ones(3), np.ones(4)],
    ...                    "pval_Ar_Y": [np.ones(3), np.ones(4)]})
    >>> len(check_tracks(df))
    2
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: missing required columns {missing}")
    if len(df) == 0:
        raise ValueError(f"{source}: no tracks")
    check_numeric_columns(df, source)
    kept, _ = _drop_bad_amplitudes(df.reset_index(drop=True), AMPLITUDE_COLUMNS, source)
    return kept.reset_index(drop=True)


# --------------------------------------------------------------------------- outcomes


def _consecutive(sig: np.ndarray) -> bool:
    idx = np.flatnonzero(sig)
    return idx.size > 1 and int(np.min(np.diff(idx))) == 1


def hotspot_flags(sig: np.ndarray) -> bool:
    """The reference's hotspot rule for one track's significance mask.

    At least 5 significant frames; among the gaps between successive significant
    frames, the consecutive pairs (gap 1) must lie more than 2 gaps apart. Literally,
    two runs of consecutive significant frames with isolated significant frames between
    them (repeated events at one site); two runs separated only by non-significant
    frames do not count, which is how the reference code behaves.

    Examples
    --------
    >>> hotspot_flags(np.array([1, 1, 0, 1, 0, 1, 0, 1, 1], bool))
    True
    >>> hotspot_flags(np.array([1, 1, 1, 0, 0, 0, 1, 1, 1], bool))
    False
    """
    idx = np.flatnonzero(sig)
    if idx.size < 5:
        return False
    consecs = np.flatnonzero(np.diff(idx) == 1)
    gaps = np.diff(consecs)
    return bool(gaps.size > 0 and gaps.max() > 2)


def add_outcomes(df: pd.DataFrame, p_thresh: float = P_THRESH) -> pd.DataFrame:
    """Add the auxilin outcomes and hotspot flags to a tracks table (returns a copy).

    Columns added: ``X_max``, ``Y_max``, ``y`` (``Y_max > 642.375``), ``y_num_sig``,
    ``y_consec_sig``, ``y_conservative_thresh``, ``y_consec_thresh``, ``hotspots``,
    ``Y_sig_mean``.

    Examples
    --------
    >>> df = pd.DataFrame({"Y": [np.array([10., 500., 700., 5.])],
    ...                    "X": [np.ones(4)],
    ...                    "pval_Ar_Y": [np.array([0.5, 0.01, 0.02, 0.9])]})
    >>> out = add_outcomes(df)
    >>> bool(out["y_consec_thresh"].iloc[0]), float(out["Y_sig_mean"].iloc[0])
    (True, 600.0)
    """
    out = df.copy()
    ys = [np.asarray(v, dtype=np.float64) for v in out["Y"]]
    ps = [np.asarray(v, dtype=np.float64) for v in out["pval_Ar_Y"]]
    sigs = [p < p_thresh for p in ps]
    out["X_max"] = [float(np.max(x)) for x in out["X"]]
    out["Y_max"] = [float(np.max(y)) for y in ys]
    out["y"] = out["Y_max"] > AUX_PEAK
    out["y_num_sig"] = [int(s.sum()) for s in sigs]
    out["y_consec_sig"] = [_consecutive(s) for s in sigs]
    out["y_conservative_thresh"] = out["Y_max"] > AUX_THRESH
    out["y_consec_thresh"] = out["y_consec_sig"] | out["y_conservative_thresh"]
    out["hotspots"] = [hotspot_flags(s) for s in sigs]
    out["Y_sig_mean"] = [
        float(y[s].mean()) if s.any() else 0.0 for y, s in zip(ys, sigs, strict=False)
    ]
    return out


def zscore_per_cell(values: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Z-score ``values`` within each cell (population SD, as numpy's default).

    Examples
    --------
    >>> zscore_per_cell(np.array([1., 3., 10., 10.]), np.array(["a", "a", "b", "b"]))
    array([-1.,  1.,  0.,  0.])
    """
    values = np.asarray(values, dtype=np.float64)
    out = np.empty_like(values)
    cells = np.asarray(cells)
    for cell in pd.unique(cells):
        m = cells == cell
        sd = values[m].std()
        # A constant cell has no spread; centring alone keeps it finite.
        out[m] = (values[m] - values[m].mean()) / (sd if sd > 0 else 1.0)
    return out


# --------------------------------------------------------------------------- cleaning


def _num(v) -> str:
    try:
        return f"{float(v):g}"
    except (TypeError, ValueError):
        return str(v)


@dataclass
class _Screened:
    """Steps 1-3 done: the valid tracks and why the others went."""

    table: pd.DataFrame  # valid tracks, indexed by their row in the input
    ids: pd.DataFrame  # cell and track_id of every input row
    drops: list[tuple[int, str, str]]  # (input row, rule, reason)
    auxilin: bool


def _screen(
    tracks: pd.DataFrame, source: str, *, need_auxilin: bool, invalid: str = "drop"
) -> _Screened:
    """Steps 1-3 for every track: usable arrays, catIdx, lifetime > 2 s, outcomes."""
    required = REQUIRED_COLUMNS if need_auxilin else TRACE_COLUMNS
    missing = [c for c in required if c not in tracks.columns]
    if missing:
        raise ValueError(f"{source}: missing required columns {missing}")
    aux = [c for c in AUXILIN_COLUMNS if c in tracks.columns]
    if len(aux) == 1:
        other = next(c for c in AUXILIN_COLUMNS if c not in aux)
        raise ValueError(f"{source}: auxilin column {aux[0]!r} without {other!r}")
    auxilin = len(aux) == len(AUXILIN_COLUMNS)
    if len(tracks) == 0:
        raise ValueError(f"{source}: no tracks")
    check_numeric_columns(tracks, source)
    df = tracks.reset_index(drop=True)
    if "track_id" not in df.columns:
        df = df.copy()
        # Numbered in input order within each cell, so the same input gives the same ids.
        ids = df.groupby("cell", sort=False, dropna=False).cumcount().to_numpy() + 1
        df.insert(df.columns.get_loc("cell") + 1, "track_id", ids)
    dup = df.duplicated(["cell", "track_id"], keep=False)
    if dup.any():
        first = df.loc[dup].iloc[0]
        raise ValueError(
            f"{source}: {int(dup.sum())} tracks share their (cell, track_id) with another "
            f"(e.g. cell {first['cell']!r} track {first['track_id']}); tracks of different "
            "movies or files need different cell names"
        )
    if not auxilin:
        warnings.warn(
            f"{source}: no auxilin channel (Y, pval_Ar_Y): outcomes are not computed and "
            "hotspots (an auxilin rule) cannot be excluded",
            stacklevel=3,
        )
    amplitudes = AMPLITUDE_COLUMNS if auxilin else ("X",)
    kept, drops = _drop_bad_amplitudes(df, amplitudes, source, invalid)
    cat_ok = kept["catIdx"].isin(KEPT_CATEGORIES)
    life = kept["lifetime_s"]
    life_ok = life > MIN_LIFETIME_S
    for i, cat in kept.loc[~cat_ok, "catIdx"].items():
        drops.append((int(i), "catIdx", f"catIdx {_num(cat)} (not 1 or 2)"))
    for i, v in life[cat_ok & ~life_ok].items():
        reason = (
            "lifetime missing"
            if pd.isna(v)
            else f"lifetime {_num(v)} s <= {_num(MIN_LIFETIME_S)} s"
        )
        drops.append((int(i), "min_lifetime", reason))
    valid = kept[cat_ok & life_ok]
    if auxilin:
        valid = add_outcomes(valid)
    else:
        valid = valid.copy()
        valid["X_max"] = [float(np.max(x)) for x in valid["X"]]
    return _Screened(valid, df[["cell", "track_id"]], drops, auxilin)


def _check_gates(gates, source: str) -> tuple[float, float]:
    try:
        short, long = (float(g) for g in gates)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{source}: gates must be two lifetimes (short, long), got {gates!r}"
        ) from err
    if not (np.isfinite(short) and np.isfinite(long)):
        raise ValueError(f"{source}: gates must be finite, got {gates!r}")
    return short, long


def _select(
    screened: _Screened,
    *,
    gates: tuple[float, float] | None,
    lifetime_threshold: float,
    length: int,
    source: str,
) -> PreparedTracks:
    """Steps 3-6: hotspots, gates, the hard set, then resampling and per-cell z-scores."""
    if int(length) < 2:
        raise ValueError(f"{source}: the resampled trace length must be >= 2, got {length}")
    valid = screened.table
    life = valid["lifetime_s"]
    unflagged = pd.Series(False, index=valid.index)
    hot = valid["hotspots"].astype(bool) if screened.auxilin else unflagged
    short = long = unflagged
    if gates is not None:
        g_short, g_long = _check_gates(gates, source)
        short, long = life <= g_short, life >= g_long
    keep = ~hot & (life > lifetime_threshold) & ~(short | long)
    drops = list(screened.drops)
    # The first rule a track fails, in the order of the rules, is its reason.
    for i in valid.index[~keep.to_numpy()]:
        v = _num(life[i])
        if hot[i]:
            rule, reason = "hotspot", "hotspot"
        elif short[i]:
            rule, reason = (
                "short_gate",
                f"lifetime {v} s at or below the short gate {_num(g_short)} s",
            )
        elif long[i]:
            rule, reason = "long_gate", f"lifetime {v} s at or above the long gate {_num(g_long)} s"
        else:
            threshold = _num(lifetime_threshold)
            rule, reason = (
                "lifetime_threshold",
                f"lifetime {v} s <= {threshold} s (not in the hard set)",
            )
        drops.append((int(i), rule, reason))
    hard = valid[keep.to_numpy()].reset_index(drop=True)
    hard_cells = hard["cell"].astype(str).to_numpy()
    xs = (
        np.stack([downsample(x, length) for x in hard["X"]]) if len(hard) else np.zeros((0, length))
    )
    hard["X_same_length"] = list(xs)
    # Per cell over all its kept tracks and time points, padding included, as the reference.
    norm = np.empty_like(xs)
    for cell in pd.unique(hard_cells):
        m = hard_cells == cell
        block = xs[m]
        sd = block.std()
        norm[m] = (block - block.mean()) / (sd if sd > 0 else 1.0)
    hard["X_same_length_normalized"] = list(norm)
    if screened.auxilin:
        hard["Y_sig_mean_normalized"] = zscore_per_cell(hard["Y_sig_mean"].to_numpy(), hard_cells)
    drops.sort()
    rows = [d[0] for d in drops]
    dropped = screened.ids.iloc[rows].reset_index(drop=True)
    dropped["rule"] = [d[1] for d in drops]
    dropped["reason"] = [d[2] for d in drops]
    return PreparedTracks(table=hard, dropped=dropped, auxilin=screened.auxilin)


def clean_tracks(df: pd.DataFrame, source: str = "tracks table") -> pd.DataFrame:
    """Steps 1-3: catIdx in {1, 2}, lifetime > 2 s, outcomes and hotspot flags.

    Examples
    --------
    >>> df = pd.DataFrame({"cell": ["a"] * 3, "lifetime_s": [2.0, 5.0, 5.0],
    ...                    "catIdx": [1, 1, 3], "X": [np.ones(5)] * 3,
    ...                    "Y": [np.ones(5)] * 3, "pval_Ar_Y": [np.ones(5)] * 3})
    >>> len(clean_tracks(df))
    1
    """
    return _screen(df, source, need_auxilin=True).table.reset_index(drop=True)


def lifetime_gates(
    lifetimes: np.ndarray, outcome: np.ndarray, acc_thresh: float = 0.95
) -> tuple[float, float]:
    """The reference's 95%-purity lifetime gates (fit them on training cells only).

    ``thresh_short`` is the largest lifetime ``l`` with at least ``acc_thresh`` of the
    tracks of lifetime ``<= l`` aux-; ``thresh_long`` the smallest ``l`` with at least
    ``acc_thresh`` of the tracks of lifetime ``>= l`` aux+. When no lifetime qualifies,
    the gates fall just outside the observed range (nothing is gated), as in the
    reference.

    Examples
    --------
    >>> lifetimes = np.array([3, 4, 5, 20, 30, 100, 200])
    >>> outcome = np.array([0, 0, 0, 1, 0, 1, 1])
    >>> lifetime_gates(lifetimes, outcome)
    (5.0, 100.0)
    """
    lifetimes = np.asarray(lifetimes, dtype=np.float64)
    outcome = np.asarray(outcome, dtype=np.float64)
    uniq = np.unique(lifetimes)
    acc_lower = np.array([1.0 - outcome[lifetimes <= v].mean() for v in uniq])
    acc_higher = np.array([outcome[lifetimes >= v].mean() for v in uniq])
    ok_low = np.flatnonzero(acc_lower >= acc_thresh)
    ok_high = np.flatnonzero(acc_higher >= acc_thresh)
    short = float(uniq[ok_low[-1]]) if ok_low.size else float(uniq[0] - 1)
    long = float(uniq[ok_high[0]]) if ok_high.size else float(uniq[-1] + 1)
    return short, long


def downsample(x: np.ndarray, length: int = AWD_LENGTH) -> np.ndarray:
    """Resample a trace to ``length`` points as the reference does.

    NaNs are dropped; then ``x[int((n - 1) * i / (length - 1))]`` when ``n >= length``,
    else the trace is zero-padded at the end.

    Examples
    --------
    >>> downsample(np.arange(3.0), 5)
    array([0., 1., 2., 0., 0.])
    >>> downsample(np.arange(9.0), 5)
    array([0., 2., 4., 6., 8.])
    """
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    n = x.size
    if n >= length:
        idx = [int((n - 1) * i / (length - 1)) for i in range(length)]
        return x[idx]
    return np.concatenate([x, np.zeros(length - n)])


def split_cells(
    cells: list[str] | np.ndarray,
    test_fraction: float = 0.25,
    seed: int = 0,
    test_cells: list[str] | None = None,
) -> dict[str, str]:
    """Assign each cell to ``train`` or ``test`` (splits are by cell, never by track).

    Parameters
    ----------
    cells : sequence of str
        Cell names (duplicates allowed).
    test_fraction : float
        Fraction of cells held out (at least one, at most all but one).
    seed : int
        Seed of the shuffle.
    test_cells : list of str, optional
        Explicit test cells; overrides ``test_fraction``.

    Returns
    -------
    dict
        cell -> ``"train"`` or ``"test"``.

    Examples
    --------
    >>> s = split_cells(["c1", "c2", "c3", "c4"], test_cells=["c4"])
    >>> s["c4"], s["c1"]
    ('test', 'train')
    """
    uniq = sorted(pd.unique(np.asarray(cells)).tolist())
    if len(uniq) < 2:
        raise ValueError(f"need at least 2 cells to split by cell, got {uniq}")
    if test_cells is not None:
        unknown = set(test_cells) - set(uniq)
        if unknown:
            raise ValueError(f"test cells {sorted(unknown)} are not in the data ({uniq})")
        test = set(test_cells)
    else:
        n_test = min(max(1, round(test_fraction * len(uniq))), len(uniq) - 1)
        rng = np.random.default_rng(seed)
        test = set(rng.permutation(uniq)[:n_test].tolist())
    if not test or test == set(uniq):
        raise ValueError("a split needs at least one training and one test cell")
    return {c: ("test" if c in test else "train") for c in uniq}


def validation_cells(table: pd.DataFrame, n: int, seed: int) -> list[str]:
    """Training cells held out for early stopping (never test cells).

    Examples
    --------
    >>> t = pd.DataFrame({"cell": ["a", "b", "c", "d"], "split": ["train"] * 3 + ["test"]})
    >>> len(validation_cells(t, 1, 0)), validation_cells(t, 0, 0)
    (1, [])
    """
    cells = sorted(table.loc[table["split"] == "train", "cell"].astype(str).unique())
    if n == 0 or len(cells) < 2:
        return []
    n = min(n, len(cells) - 1)
    return sorted(np.random.default_rng(seed).permutation(cells)[:n].tolist())


# --------------------------------------------------------------------------- building


def _empty_dropped() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype=object) for c in ("cell", "track_id", "rule", "reason")}
    )


@dataclass
class BuiltDataset:
    """The AWD-ready table plus what was decided while building it.

    Attributes
    ----------
    table : DataFrame
        One row per track: ``cell``, ``track_id``, ``split``, ``lifetime_s``, ``X`` (raw
        clathrin), ``X_same_length`` (40 points), ``X_same_length_normalized``,
        ``Y_sig_mean``, ``Y_sig_mean_normalized``, ``y_consec_thresh`` and the other
        outcome columns.
    meta : dict
        Gates, counts at each step, the cell split and the preparation rules (see
        :func:`preparation_rules`).
    dropped : DataFrame
        The tracks the rules dropped: ``cell``, ``track_id``, ``rule``, ``reason`` (see
        :func:`prepare_tracks`).
    """

    table: pd.DataFrame
    meta: dict = field(default_factory=dict)
    dropped: pd.DataFrame = field(default_factory=_empty_dropped)


@dataclass
class PreparedTracks:
    """Tracks of (new) cells prepared by the data set's rules, and the ones dropped.

    Attributes
    ----------
    table : DataFrame
        One row per kept track, in the AWD layout of :class:`BuiltDataset` (no ``split``):
        the input's columns (``cell``, ``track_id``, ``lifetime_s``, ``X``, ...), ``X_max``,
        ``X_same_length``, ``X_same_length_normalized`` and, when the auxilin channel is
        present, the outcomes (``Y_max``, ``y``, ``y_num_sig``, ``y_consec_sig``,
        ``y_conservative_thresh``, ``y_consec_thresh``, ``hotspots``, ``Y_sig_mean``,
        ``Y_sig_mean_normalized``).
    dropped : DataFrame
        One row per dropped track, in input order: ``cell``, ``track_id``, ``rule`` (one
        of :data:`DROP_RULES`) and ``reason`` (a short phrase with the track's values).
    auxilin : bool
        Whether the auxilin channel was there (outcomes computed, hotspots excluded).
    """

    table: pd.DataFrame
    dropped: pd.DataFrame
    auxilin: bool = True


def prepare_tracks(
    tracks: pd.DataFrame,
    *,
    gates: tuple[float, float] | None,
    lifetime_threshold: float,
    length: int = AWD_LENGTH,
    source: str = "tracks table",
    invalid: str = "drop",
) -> PreparedTracks:
    """Apply a data set's cleaning rules to tracks, e.g. of new cells, with the reasons.

    The same code as :func:`build_dataset` runs, rule by rule and in the same order; a
    track dropped by several rules gets the reason of the first:

    ========================  ==========================================================
    rule                      reason (example)
    ========================  ==========================================================
    ``amplitudes``            ``NaN/inf in X``, ``empty X``, ``lengths differ (X 12,
                              Y 12, pval_Ar_Y 11)``
    ``catIdx``                ``catIdx 4 (not 1 or 2)``
    ``min_lifetime``          ``lifetime 1.5 s <= 2 s`` (``lifetime missing`` if NaN)
    ``hotspot``               ``hotspot``
    ``short_gate``            ``lifetime 9 s at or below the short gate 14 s``
    ``long_gate``             ``lifetime 130 s at or above the long gate 124 s``
    ``lifetime_threshold``    ``lifetime 12 s <= 15 s (not in the hard set)``
    ========================  ==========================================================

    Kept traces are resampled to ``length`` points and z-scored per cell over all the
    cell's kept tracks (so the result for a cell depends on which of its tracks are
    given, as in the reference).

    Parameters
    ----------
    tracks : DataFrame
        A tracks table (:mod:`molecular_partner.tables`). Needs ``cell``, ``lifetime_s``,
        ``catIdx`` and ``X``; with ``Y`` and ``pval_Ar_Y`` the outcomes are computed and
        hotspots excluded, without them (a warning) neither. ``track_id`` is kept, or
        numbered 1, 2, ... in input order within each cell.
    gates : (float, float) or None
        ``(thresh_short, thresh_long)`` fitted on the training cells (the data set's
        ``meta.json``); ``None`` applies no gates.
    lifetime_threshold : float
        Keep ``lifetime_s > lifetime_threshold``.
    length : int
        Resampled trace length.
    source : str
        Name used in messages.
    invalid : {"drop", "raise"}
        Tracks with empty, NaN or mismatched arrays: dropped (rule ``amplitudes``, with a
        warning, as :func:`build_dataset` does) or a ``ValueError``.

    Returns
    -------
    PreparedTracks

    Raises
    ------
    ValueError
        Naming ``source``: a required column is missing, there are no tracks, every track
        has unusable arrays (or one has, with ``invalid="raise"``), or two tracks share a
        cell and ``track_id``.

    Examples
    --------
    >>> t = pd.DataFrame({"cell": ["c1"] * 3, "track_id": [1, 2, 3],
    ...                   "lifetime_s": [30.0, 12.0, 40.0], "catIdx": [1, 1, 4],
    ...                   "X": [np.arange(30.0), np.arange(12.0), np.arange(40.0)]})
    >>> import warnings
    >>> with warnings.catch_warnings():  # no auxilin channel here
    ...     warnings.simplefilter("ignore")
    ...     p = prepare_tracks(t, gates=None, lifetime_threshold=15, source="demo")
    >>> p.table["track_id"].tolist(), p.table["X_same_length_normalized"].iloc[0].shape
    ([1], (40,))
    >>> p.dropped["reason"].tolist()
    ['lifetime 12 s <= 15 s (not in the hard set)', 'catIdx 4 (not 1 or 2)']
    """
    if invalid not in ("drop", "raise"):
        raise ValueError(f"invalid must be 'drop' or 'raise', got {invalid!r}")
    screened = _screen(tracks, source, need_auxilin=False, invalid=invalid)
    return _select(
        screened, gates=gates, lifetime_threshold=lifetime_threshold, length=length, source=source
    )


def preparation_rules(meta: dict | str | Path) -> dict:
    """The :func:`prepare_tracks` settings a data set was built with.

    Parameters
    ----------
    meta : dict or path
        The data set's ``meta.json`` content, the file, or the data set's folder.

    Returns
    -------
    dict
        ``gates`` (``None`` when the data set applied none), ``lifetime_threshold`` and
        ``length``: keyword arguments of :func:`prepare_tracks`.

    Raises
    ------
    ValueError
        When ``meta.json`` cannot be read or predates these keys (rebuild the data set).

    Examples
    --------
    >>> preparation_rules({"apply_gates": True, "thresh_short": 14.0, "thresh_long": 124.0,
    ...                    "lifetime_threshold": 15.0, "length": 40})
    {'gates': (14.0, 124.0), 'lifetime_threshold': 15.0, 'length': 40}
    """
    source = "meta"
    if not isinstance(meta, dict):
        path = Path(meta)
        if path.is_dir():
            path = path / "meta.json"
        source = str(path)
        try:
            meta = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: cannot read the data set's meta.json ({err})") from err
    missing = [k for k in PREPARATION_KEYS if k not in meta]
    if missing:
        raise ValueError(
            f"{source}: no {missing}; the data set predates recording its preparation rules, "
            "rebuild it with `awd molecular-partner build-dataset`"
        )
    gates = (
        (float(meta["thresh_short"]), float(meta["thresh_long"])) if meta["apply_gates"] else None
    )
    return {
        "gates": gates,
        "lifetime_threshold": float(meta["lifetime_threshold"]),
        "length": int(meta["length"]),
    }


def _why_dropped(screened: _Screened, cell: str) -> str:
    """``all 150 dropped: min_lifetime 150 (e.g. lifetime missing)`` for one cell."""
    cells = screened.ids["cell"].astype(str).to_numpy()
    by_rule: dict[str, list[str]] = {}
    for i, rule, reason in screened.drops:
        if cells[i] == cell:
            by_rule.setdefault(rule, []).append(reason)
    n = sum(len(r) for r in by_rule.values())
    parts = [f"{rule} {len(r)} (e.g. {r[0]})" for rule, r in by_rule.items()]
    return f"all {n} dropped: " + ", ".join(parts)


def build_dataset(
    tracks: pd.DataFrame,
    *,
    test_cells: list[str] | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
    length: int = AWD_LENGTH,
    lifetime_threshold: float = 15.0,
    apply_gates: bool = True,
    acc_thresh: float = 0.95,
    source: str = "tracks table",
) -> BuiltDataset:
    """Apply the published cleaning and outcome rules and split by cell.

    The per-track rules are those of :func:`prepare_tracks` (the same code); what only
    a data set has is the split and the gates, fitted here on the training cells between
    steps 3 and 4.

    Parameters
    ----------
    tracks : DataFrame
        A tracks table (see :mod:`molecular_partner.tables`).
    test_cells, test_fraction, seed
        The cell split (see :func:`split_cells`).
    length : int
        Resampled trace length (40 in the reference).
    lifetime_threshold : float
        Keep ``lifetime_s > lifetime_threshold`` (the "hard" set).
    apply_gates : bool
        Drop tracks outside the 95%-purity lifetime gates fitted on training cells.
    acc_thresh : float
        Purity of the gates.
    source : str
        Name used in messages.

    Returns
    -------
    BuiltDataset

    Examples
    --------
    >>> from molecular_partner.simulate import SimulationConfig, simulate_cells
    >>> tr, _ = simulate_cells(3, SimulationConfig(n_frames=120, shape=(64, 64), n_pits=150))
    >>> ds = build_dataset(tr, test_cells=["cell3"])
    >>> sorted(ds.table["split"].unique())
    ['test', 'train']
    """
    screened = _screen(tracks, source, need_auxilin=True)
    clean = screened.table
    cells = clean["cell"].astype(str).to_numpy()
    all_cells = sorted(pd.unique(tracks["cell"].astype(str)).tolist())
    lost = sorted(set(all_cells) - set(cells))
    for cell in lost:
        warnings.warn(
            f"{source}: cell {cell!r} has no valid tracks ({_why_dropped(screened, cell)}); "
            "skipped",
            stacklevel=2,
        )
    try:
        split = split_cells(cells, test_fraction=test_fraction, seed=seed, test_cells=test_cells)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from err
    train_cells = sorted(c for c, part in split.items() if part == "train")
    if len(train_cells) < 2:
        warnings.warn(
            f"{source}: one training cell only ({train_cells[0]!r}); the students are chosen "
            "by cross-validation grouped by cell, which needs at least 2 training cells",
            stacklevel=2,
        )
    clean["split"] = [split[c] for c in cells]
    meta: dict = {
        "source": source,
        "n_valid": len(clean),
        "n_aux_pos_valid": int(clean["y_consec_thresh"].sum()),
        "n_hotspots_valid": int(clean["hotspots"].sum()),
        "split": split,
    }
    train = clean[(clean["split"] == "train") & ~clean["hotspots"]]
    if len(train) == 0:
        raise ValueError(f"{source}: no valid training tracks to fit the lifetime gates")
    short, long = lifetime_gates(
        train["lifetime_s"].to_numpy(), train["y_consec_thresh"].to_numpy(), acc_thresh
    )
    clean["short"] = clean["lifetime_s"] <= short
    clean["long"] = clean["lifetime_s"] >= long
    meta.update(thresh_short=short, thresh_long=long)
    meta.update(n_short=int(clean["short"].sum()), n_long=int(clean["long"].sum()))
    prepared = _select(
        screened,
        gates=(short, long) if apply_gates else None,
        lifetime_threshold=lifetime_threshold,
        length=length,
        source=source,
    )
    hard = prepared.table
    if len(hard) == 0:
        raise ValueError(f"{source}: no track survives the cleaning rules")
    for cell in sorted(set(all_cells) - set(lost) - set(hard["cell"].astype(str))):
        warnings.warn(f"{source}: cell {cell!r} has no track left after cleaning", stacklevel=2)
    meta.update(
        n_hard=len(hard),
        n_aux_pos_hard=int(hard["y_consec_thresh"].sum()),
        n_train=int((hard["split"] == "train").sum()),
        n_test=int((hard["split"] == "test").sum()),
    )
    counts = prepared.dropped["rule"].value_counts()
    # What prepare_tracks needs to apply these rules to new cells (preparation_rules).
    meta.update(
        apply_gates=bool(apply_gates),
        lifetime_threshold=float(lifetime_threshold),
        length=int(length),
        acc_thresh=float(acc_thresh),
        n_dropped={rule: int(counts.get(rule, 0)) for rule in DROP_RULES},
    )
    logger.info(
        "%s: %d valid tracks, %d hard (%d train / %d test), gates %.1f / %.1f s",
        source,
        meta["n_valid"],
        meta["n_hard"],
        meta["n_train"],
        meta["n_test"],
        short,
        long,
    )
    return BuiltDataset(table=hard, meta=meta, dropped=prepared.dropped)


def calibration_statistics(tracks: pd.DataFrame) -> dict[str, float]:
    """Statistics of cleaned tracks to compare with the published data set.

    Returns the aux+ and hotspot fractions of valid tracks (catIdx 1-2, lifetime > 2 s)
    and, among valid non-hotspot tracks, the aux+ fraction of those longer than 15 s and
    of the shorter ones and the fraction longer than 15 s.

    Examples
    --------
    >>> from molecular_partner.simulate import SimulationConfig, simulate_cells
    >>> tr, _ = simulate_cells(1, SimulationConfig(n_frames=100, shape=(64, 64), n_pits=50))
    >>> sorted(calibration_statistics(tr))[:2]
    ['aux_pos', 'aux_pos_long']
    """
    c = clean_tracks(tracks)
    y = c["y_consec_thresh"].astype(float)
    # As in the published summary, the per-lifetime fractions exclude hotspots.
    ok = ~c["hotspots"]
    long = c["lifetime_s"] > 15
    return {
        "n_valid": float(len(c)),
        "aux_pos": float(y.mean()),
        "hotspots": float(c["hotspots"].mean()),
        "aux_pos_long": float(y[ok & long].mean()),
        "aux_pos_short": float(y[ok & ~long].mean()),
        "long_fraction": float(long[ok].mean()),
    }


# --------------------------------------------------------------------------- I/O


def _check_awd_targets(table: pd.DataFrame, name: str) -> None:
    """The outcomes a teacher learns: finite numbers, and 0/1 for the binary one."""
    for col in AWD_COLUMNS[1:]:
        if col not in table.columns:
            continue
        values = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if col == "y_consec_thresh":
            bad |= ~np.isin(values, (0.0, 1.0))
        if bad.any():
            what = "0 or 1" if col == "y_consec_thresh" else "finite numbers (no NaN)"
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{name}: column {col!r} must hold {what}; {int(bad.sum())} row(s) do not "
                f"(first: row {first}, {table[col].iloc[first]!r})"
            )


def check_awd_splits(table: pd.DataFrame, name: str = "AWD table") -> None:
    """The split by cell a run needs: train and test rows, disjoint cells, 2+ training cells.

    Examples
    --------
    >>> t = pd.DataFrame({"cell": ["a", "b", "c"], "split": ["train", "train", "test"]})
    >>> check_awd_splits(t)
    >>> check_awd_splits(t.assign(split="train"))
    Traceback (most recent call last):
    ...
    ValueError: AWD table: needs 'train' and 'test' rows (splits are by cell), found ['train']
    """
    missing = [c for c in ("cell", "split") if c not in table.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing} (splits are by cell)")
    splits = sorted(map(str, pd.unique(table["split"])))
    if not {"train", "test"} <= set(splits):
        raise ValueError(
            f"{name}: needs 'train' and 'test' rows (splits are by cell), found {splits}"
        )
    cells = table["cell"].astype(str)
    train = set(cells[table["split"] == "train"])
    test = set(cells[table["split"] == "test"])
    both = sorted(train & test)
    if both:
        raise ValueError(
            f"{name}: cell(s) {both[:5]} have training and test rows; test cells must be "
            "held out whole"
        )
    if len(train) < 2:
        raise ValueError(
            f"{name}: needs at least 2 training cells (students are chosen by cross-"
            f"validation grouped by cell), found {sorted(train)}"
        )


def load_awd_table(table: pd.DataFrame | str | Path, length: int = AWD_LENGTH) -> pd.DataFrame:
    """Accept a table already in the reference's AWD layout and check it.

    The layout has ``X_same_length_normalized`` (arrays of ``length``) and at least one of
    the outcomes ``Y_sig_mean_normalized`` and ``y_consec_thresh``; ``cell`` and ``split``
    are optional. Parquet files are read; pickles are refused (they can run code).

    Examples
    --------
    >>> t = pd.DataFrame({"X_same_length_normalized": [np.zeros(40)],
    ...                   "Y_sig_mean_normalized": [0.5]})
    >>> len(load_awd_table(t))
    1
    """
    name = "AWD table"
    if not isinstance(table, pd.DataFrame):
        path = Path(table)
        name = str(path)
        if path.suffix in (".pkl", ".pickle"):
            raise ValueError(
                f"{path}: pickles are not read (they can execute code); convert the table "
                "to parquet first"
            )
        table = read_tracks_table(path)
    if "X_same_length_normalized" not in table.columns:
        raise ValueError(f"{name}: missing column 'X_same_length_normalized'")
    if not any(c in table.columns for c in AWD_COLUMNS[1:]):
        raise ValueError(f"{name}: needs 'Y_sig_mean_normalized' or 'y_consec_thresh'")
    xs = [np.asarray(v, dtype=np.float64) for v in table["X_same_length_normalized"]]
    bad = [i for i, x in enumerate(xs) if x.shape != (length,) or not np.all(np.isfinite(x))]
    if bad:
        raise ValueError(
            f"{name}: {len(bad)} row(s) of X_same_length_normalized are not finite arrays "
            f"of length {length} (first: row {bad[0]})"
        )
    _check_awd_targets(table, name)
    out = table.copy()
    out["X_same_length_normalized"] = xs
    return out


def write_dataset(ds: BuiltDataset, out_dir: str | Path) -> Path:
    """Write ``dataset.parquet`` (AWD layout and metadata columns) and ``meta.json``.

    Examples
    --------
    >>> import tempfile
    >>> from molecular_partner.simulate import SimulationConfig, simulate_cells
    >>> tr, _ = simulate_cells(2, SimulationConfig(n_frames=120, shape=(64, 64), n_pits=150))
    >>> p = write_dataset(build_dataset(tr, test_cells=["cell2"]), tempfile.mkdtemp())
    >>> p.name
    'dataset.parquet'
    """
    out = Path(out_dir)
    cols = [
        "cell",
        "split",
        "lifetime_s",
        "X",
        "Y",
        "X_same_length",
        *AWD_COLUMNS,
        "Y_sig_mean",
        "Y_max",
        "X_max",
    ]
    extra = [c for c in ("track_id", "pit_id", "catIdx") if c in ds.table.columns]
    path = write_tracks_table(ds.table[extra + cols], out / "dataset.parquet")

    def _default(o):
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(type(o))

    text = json.dumps(ds.meta, indent=2, default=_default)
    atomic_write(out / "meta.json", lambda tmp: Path(tmp).write_text(text))
    return path


class TraceDataset(Dataset):
    """A torch ``Dataset`` of (trace, target) pairs from an AWD-layout table.

    Items are ``(x, y)`` with ``x`` a float32 tensor of shape ``(1, 40)`` (channel first,
    as the reference's 1-D models take it) and ``y`` a float32 scalar tensor.

    Parameters
    ----------
    table : DataFrame
        AWD layout (see :func:`load_awd_table`).
    target : str
        ``"Y_sig_mean_normalized"`` (regression, the paper's) or ``"y_consec_thresh"``.
    split : str, optional
        Keep only rows of this split.

    Examples
    --------
    >>> t = pd.DataFrame({"X_same_length_normalized": [np.zeros(40)] * 2,
    ...                   "Y_sig_mean_normalized": [0.5, -0.5]})
    >>> x, y = TraceDataset(t)[1]
    >>> tuple(x.shape), float(y)
    ((1, 40), -0.5)
    """

    def __init__(
        self,
        table: pd.DataFrame,
        target: str = "Y_sig_mean_normalized",
        split: str | None = None,
    ) -> None:
        table = load_awd_table(table)
        if target not in table.columns:
            raise ValueError(f"AWD table: no target column {target!r}")
        if split is not None:
            if "split" not in table.columns:
                raise ValueError("AWD table: no 'split' column to select from")
            table = table[table["split"] == split]
        x = np.stack(table["X_same_length_normalized"].to_list()).astype(np.float32)
        self.x = torch.from_numpy(x)[:, None, :]
        self.y = torch.as_tensor(table[target].to_numpy(dtype=np.float32))
        self.cells = table["cell"].to_numpy() if "cell" in table.columns else None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]

    def tensors(self):
        """All inputs and targets as two tensors, ``(n, 1, 40)`` and ``(n,)``."""
        return self.x, self.y


def read_dataset(path: str | Path) -> pd.DataFrame:
    """Read ``dataset.parquet`` written by :func:`write_dataset` (or its folder).

    Examples
    --------
    >>> import tempfile
    >>> from molecular_partner.simulate import SimulationConfig, simulate_cells
    >>> tr, _ = simulate_cells(2, SimulationConfig(n_frames=120, shape=(64, 64), n_pits=150))
    >>> d = tempfile.mkdtemp(); _ = write_dataset(build_dataset(tr, test_cells=["cell2"]), d)
    >>> "X_same_length_normalized" in read_dataset(d).columns
    True
    """
    path = Path(path)
    if path.is_dir():
        path = path / "dataset.parquet"
    return load_awd_table(path)


def _input_files(paths: list[str | Path]) -> list[Path]:
    """The files behind ``paths`` (folders searched), each once."""
    files: list[Path] = []
    seen: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.rglob("ProcessedTracks.mat")) + sorted(p.glob("*.parquet"))
            if not found:
                warnings.warn(f"{p}: no ProcessedTracks.mat or parquet file inside", stacklevel=3)
        else:
            found = [p]
        for f in found:
            key = f.resolve()
            if key in seen:
                warnings.warn(f"{f}: given more than once; read once", stacklevel=3)
                continue
            seen.add(key)
            files.append(f)
    return files


def _mat_cell_names(files: list[Path]) -> dict[Path, str]:
    """Cell names of ``.mat`` files: their cell folder, longer where two would be equal."""
    from molecular_partner.matfile import cell_folder, cell_name

    mats = [f for f in files if f.suffix == ".mat"]
    folders: dict[Path, Path] = {}
    for f in mats:
        folder = cell_folder(f).resolve()
        if folder in folders:
            raise ValueError(
                f"{folders[folder]} and {f} belong to the same cell folder {cell_folder(f)}; "
                "pass one tracking result per cell"
            )
        folders[folder] = f
    names = {f: cell_name(f) for f in mats}
    depth = 1
    while True:
        by_name: dict[str, list[Path]] = {}
        for f, name in names.items():
            by_name.setdefault(name, []).append(f)
        clashes = [fs for fs in by_name.values() if len(fs) > 1]
        if not clashes:
            break
        depth += 1
        if depth > 64:
            raise ValueError(f"cannot tell apart the cells of {', '.join(map(str, clashes[0]))}")
        for fs in clashes:
            longer = {f: cell_name(f, depth) for f in fs}
            if len(set(longer.values())) == len(fs):
                # Cell folders of the same name in different experiments: the experiment
                # folder becomes part of the name rather than merging two cells into one.
                warnings.warn(
                    f"cells named by their folder would collide ({', '.join(map(str, fs))}); "
                    f"named {', '.join(repr(v) for v in longer.values())} instead",
                    stacklevel=3,
                )
            names.update(longer)
    return names


def _check_shared_cells(tables: list[tuple[Path, pd.DataFrame]]) -> None:
    """Refuse one cell name in two files: their tracks would be merged into one cell."""
    owner: dict[str, Path] = {}
    for f, df in tables:
        if "cell" not in df.columns:
            continue
        for cell in pd.unique(df["cell"].astype(str)):
            if cell in owner:
                raise ValueError(
                    f"cell {cell!r} is in both {owner[cell]} and {f}; the tracks of different "
                    "files would be merged into one cell: give the cells distinct names"
                )
            owner[cell] = f


def load_tracks(paths: list[str | Path]) -> pd.DataFrame:
    """Load tracks tables from parquet files, ``ProcessedTracks.mat`` files or folders.

    A folder is searched for ``ProcessedTracks.mat`` files (the cmeAnalysis layout). One
    unreadable input among several is skipped with a warning naming it; if none can be
    read, ``ValueError`` lists them all. A file given twice is read once.

    Cells are never merged across files. A ``.mat`` file's cell is named by its cell folder
    (``<cell>/<channel>/Tracking/ProcessedTracks.mat``); where two such folders of
    different experiments share a name, the names take in parent folders until they differ
    (``expA/cell1``, ``expB/cell1``), with a warning. Cell names stored in tables are data
    and are not rewritten: a name found in two files is refused (``ValueError`` naming
    both), as are two tracking results of one cell folder.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from molecular_partner.tables import write_tracks_table
    >>> p = write_tracks_table(pd.DataFrame({"cell": ["a"], "X": [np.ones(3)]}),
    ...                        pathlib.Path(tempfile.mkdtemp()) / "t.parquet")
    >>> len(load_tracks([p]))
    1
    """
    from molecular_partner.matfile import read_processed_tracks

    files = _input_files(paths)
    names = _mat_cell_names(files)
    tables, errors = [], []
    for f in files:
        try:
            if f.suffix == ".mat":
                df = read_processed_tracks(f, cell=names[f])
            else:
                df = read_tracks_table(f)
                check_numeric_columns(df, str(f))
        except ValueError as err:
            errors.append(str(err))
            continue
        tables.append((f, df))
    if not tables:
        raise ValueError("no readable tracks: " + ("; ".join(errors) or "no input files"))
    for e in errors:
        warnings.warn(f"skipped: {e}", stacklevel=2)
    _check_shared_cells(tables)
    return pd.concat([df for _, df in tables], ignore_index=True)
