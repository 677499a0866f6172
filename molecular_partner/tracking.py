"""TIRF movie -> clathrin spot detection -> laptrack linking -> cmeAnalysis-style tracks.

The pipeline mirrors cmeAnalysis on the master (clathrin) channel:

1. detection: Laplacian-of-Gaussian local maxima above a noise-scaled threshold, refined to
   sub-pixel position, kept when the fixed-sigma Gaussian amplitude passes the cmeAnalysis
   test (``pval_Ar < 0.05``);
2. linking: laptrack's LAP tracker (u-track), Brownian model, gap closing up to 2 frames,
   merging and splitting on;
3. per track and frame, gap frames and 5-frame start/end buffers included, the amplitude
   ``A``, background ``c``, ``A_pstd``, ``pval_Ar`` are fitted in both channels at the
   clathrin position (auxilin read out at the clathrin positions);
4. cmeAnalysis categories ``catIdx``: 1 single track with valid gaps, 2 invalid gaps or a
   failed buffer test, 3 cut by the movie's start or end, 4 persistent (whole movie);
   5-8 the same for compound tracks (merges or splits).

The gap and buffer tests are simplified forms of the cmeAnalysis ones: a gap is invalid
when the clathrin amplitude inside it falls below half of the amplitude on both sides
(the signal really vanished); the buffer test fails when two or more buffer frames hold a
significant clathrin spot at least half as bright as the track's median.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from molecular_partner.fitting import extract_windows, fit_amplitudes, window_half_width
from molecular_partner.simulate import BUFFER_FRAMES
from molecular_partner.tables import track_row, track_visibility

__all__ = [
    "TrackingConfig",
    "detect_spots",
    "link_spots",
    "read_movie",
    "track_array",
    "track_movie",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackingConfig:
    """Detection and linking settings (cmeAnalysis defaults where it has them).

    Attributes
    ----------
    psf_sigma_px : (float, float)
        PSF standard deviation of the clathrin and auxilin channels in pixels.
    threshold : float
        Detection threshold on the LoG response, in robust noise units (MAD).
    alpha : float
        Level of the amplitude test (``pval_Ar < alpha`` keeps a detection).
    link_radius_px : float
        Largest frame-to-frame displacement.
    gap_radius_px : float
        Largest displacement across a gap.
    max_gap : int
        Gap closing reach in frames (cmeAnalysis: 2).
    merge_split : bool
        Allow merging and splitting (compound tracks, catIdx 5-8).
    frame_interval_s : float, optional
        Overrides the movie's metadata (a positive number of seconds).
    """

    psf_sigma_px: tuple[float, float] = (1.0, 0.9)
    threshold: float = 5.0
    alpha: float = 0.05
    link_radius_px: float = 2.5
    gap_radius_px: float = 2.5
    max_gap: int = 2
    merge_split: bool = True
    frame_interval_s: float | None = None


# --------------------------------------------------------------------------- reading


#: What the tracker assumes without a frame interval (with a warning naming the movie).
DEFAULT_FRAME_INTERVAL_S = 1.0


class _Collect(logging.Handler):
    """Keeps tifffile's log records: its note of a corrupt file is the real cause."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _read_series(path: Path) -> tuple[np.ndarray, str, dict, float | None, int, list[str]]:
    import tifffile

    log = logging.getLogger("tifffile")
    collect, propagate = _Collect(), log.propagate
    log.addHandler(collect)
    log.propagate = False
    try:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            axes = series.axes
            data = series.asarray()
            meta = tf.imagej_metadata or {}
            res = None
            tag = tf.pages[0].tags.get("XResolution")
            if tag is not None:
                num, den = tag.value
                res = num / den if den else None
            n_pages = len(tf.pages)
            expected = int(np.prod(series.shape))
    except Exception as err:
        raise ValueError(f"{path}: unreadable or truncated TIFF ({err})") from err
    finally:
        log.removeHandler(collect)
        log.propagate = propagate
    if data.size != expected:
        raise ValueError(f"{path}: truncated TIFF ({data.size} of {expected} values)")
    return data, axes, meta, res, n_pages, collect.messages


def _read_tiff(path: Path) -> tuple[np.ndarray, str, dict]:
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    data, axes, meta, res, n_pages, notes = _read_series(path)
    images = meta.get("images")
    if isinstance(images, int) and n_pages < images:
        raise ValueError(
            f"{path}: truncated TIFF (the ImageJ metadata announce {images} images, the file "
            f"holds {n_pages})"
        )
    corrupt = [
        n for n in notes if any(k in n for k in ("page offset", "corrupted file", "truncat"))
    ]
    if corrupt:
        raise ValueError(f"{path}: truncated or corrupted TIFF ({corrupt[0]})")
    info: dict = {}
    finterval = meta.get("finterval")
    # ImageJ writes 0 for "not set".
    if finterval is not None and finterval != 0:
        try:
            info["frame_interval_s"] = float(finterval)
        except (TypeError, ValueError):
            info["frame_interval_s"] = math.nan
    if res and meta.get("unit") in ("um", "micron", "\\u00B5m", "µm"):
        info["pixel_size_nm"] = 1000.0 / res
    return data, axes, info


def _as_tcyx(data: np.ndarray, axes: str, path: Path) -> np.ndarray:
    named = axes.upper()
    axes = named.replace("I", "T").replace("Q", "T")
    if len(set(axes)) < len(axes):
        # tifffile names dimensions it knows nothing about Q (or I): more than one of them
        # means the file does not say which is time and which is channel.
        raise ValueError(
            f"{path}: the TIFF does not say its axes ({named}, shape {data.shape}); save it "
            "with axes metadata, e.g. as an ImageJ hyperstack: tifffile.imwrite(path, movie, "
            "imagej=True, metadata={'axes': 'TCYX'})"
        )
    if "Z" in axes:
        z = data.shape[axes.index("Z")]
        if z != 1:
            raise ValueError(
                f"{path}: 3-D movie (axes {axes}, Z={z}); only 2-D TIRF time series are tracked"
            )
        data = np.take(data, 0, axis=axes.index("Z"))
        axes = axes.replace("Z", "")
    if axes == "TYX":
        return data[:, None]
    if axes in ("TCYX", "CTYX"):
        out = data if axes == "TCYX" else np.moveaxis(data, 0, 1)
        return out
    if axes in ("YX", "CYX"):
        # A series of one time point has no T axis: the movie is a single frame.
        raise ValueError(
            f"{path}: one frame only (axes {axes}); tracking needs a time series (TCYX, "
            "CTYX or TYX) of at least 3 frames"
        )
    raise ValueError(f"{path}: unsupported axes {axes!r}; expected TYX, TCYX or CTYX")


def _check_finite(movie: np.ndarray, name: object) -> None:
    """Refuse non-finite pixels, naming the frames (1-based) and channels that hold them."""
    if not np.issubdtype(movie.dtype, np.floating):
        return
    bad = ~np.isfinite(movie)
    if not bad.any():
        return
    channels = ("clathrin", "auxilin")
    per_channel = bad.any(axis=(2, 3))  # (T, C)
    whole = bad.all(axis=(0, 2, 3))
    if whole.any():
        which = " and ".join(channels[c] for c in np.flatnonzero(whole))
        raise ValueError(f"{name}: the {which} channel is NaN or infinite in every frame")
    frames = np.flatnonzero(per_channel.any(axis=1)) + 1
    hit = np.flatnonzero(per_channel.any(axis=0))
    which = " and ".join(channels[c] for c in hit) + (" channels" if hit.size > 1 else " channel")
    shown = _frame_list(frames)
    raise ValueError(
        f"{name}: {int(bad.sum())} NaN or infinite pixel(s) in the {which}, "
        f"{'frame' if len(frames) == 1 else 'frames'} {shown} (1-based); fill or drop them"
    )


def _frame_list(frames: np.ndarray) -> str:
    """``[3, 4, 5, 9]`` as ``3-5, 9`` (at most 10 runs)."""
    runs = np.split(frames, np.flatnonzero(np.diff(frames) > 1) + 1)
    parts = [f"{r[0]}" if r.size == 1 else f"{r[0]}-{r[-1]}" for r in runs]
    return ", ".join(parts[:10]) + (", ..." if len(parts) > 10 else "")


def read_movie(path: str | Path, aux_path: str | Path | None = None) -> tuple[np.ndarray, dict]:
    """Read a two-channel movie (one TCYX/CTYX file, or two TYX files) as float32 TCYX.

    Parameters
    ----------
    path : path
        The movie, or the clathrin channel when ``aux_path`` is given.
    aux_path : path, optional
        The auxilin channel (TYX) when channels are stored as separate files.

    Returns
    -------
    movie : ndarray, shape (T, 2, H, W), float32
    info : dict
        ``frame_interval_s`` and ``pixel_size_nm`` when the metadata hold them.

    Raises
    ------
    ValueError
        Naming the file: unreadable or truncated file, unsupported or unnamed axes, a
        single frame or fewer than 3 frames, a channel count other than 2, channels of
        different shapes, NaN or infinite pixels (with their frames).

    Examples
    --------
    >>> import tempfile, pathlib, tifffile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.tif"
    >>> tifffile.imwrite(p, np.zeros((5, 2, 8, 8), np.uint16), imagej=True,
    ...                  metadata={"axes": "TCYX", "finterval": 1.0})
    >>> movie, info = read_movie(p)
    >>> movie.shape, info["frame_interval_s"]
    ((5, 2, 8, 8), 1.0)
    """
    path = Path(path)
    data, axes, info = _read_tiff(path)
    movie = _as_tcyx(data, axes, path)
    if aux_path is not None:
        aux_path = Path(aux_path)
        if movie.shape[1] != 1:
            raise ValueError(
                f"{path}: has {movie.shape[1]} channels; "
                "with a separate auxilin file it must be TYX"
            )
        adata, aaxes, _ = _read_tiff(aux_path)
        aux = _as_tcyx(adata, aaxes, aux_path)
        if aux.shape[1] != 1 or aux.shape[0] != movie.shape[0] or aux.shape[2:] != movie.shape[2:]:
            raise ValueError(
                f"{aux_path}: shape {aux.shape} does not match the clathrin movie {movie.shape}"
            )
        movie = np.concatenate([movie, aux], axis=1)
    if movie.shape[1] != 2:
        raise ValueError(
            f"{path}: {movie.shape[1]} channel(s); need 2 (clathrin, auxilin)"
            + ("; pass the auxilin movie as a second file" if movie.shape[1] == 1 else "")
        )
    if movie.shape[0] < 3:
        raise ValueError(f"{path}: only {movie.shape[0]} frame(s); tracking needs at least 3")
    _check_finite(movie, path)
    return movie.astype(np.float32, copy=False), info


# --------------------------------------------------------------------------- detection


def detect_spots(stack: np.ndarray, config: TrackingConfig | None = None) -> pd.DataFrame:
    """Detect clathrin spots in every frame and fit their amplitudes.

    Parameters
    ----------
    stack : ndarray, shape (T, H, W)
        Clathrin channel.
    config : TrackingConfig, optional

    Returns
    -------
    DataFrame
        One row per spot: ``frame`` (0-based), ``y``, ``x`` and the fit fields.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> yy, xx = np.mgrid[:32, :32]
    >>> img = 100 + 400 * np.exp(-((yy - 16) ** 2 + (xx - 10) ** 2) / 2.0)
    >>> stack = rng.poisson(np.repeat(img[None], 3, 0)).astype(float)
    >>> spots = detect_spots(stack)
    >>> len(spots), round(float(spots["x"].iloc[0]))
    (3, 10)
    """
    cfg = config or TrackingConfig()
    sigma = cfg.psf_sigma_px[0]
    stack = np.asarray(stack, dtype=np.float32)
    # Laplacian of Gaussian in each frame only (never across time).
    sig3 = (0.0, sigma, sigma)
    resp = -(
        ndimage.gaussian_filter(stack, sig3, order=(0, 2, 0))
        + ndimage.gaussian_filter(stack, sig3, order=(0, 0, 2))
    )
    # Robust noise scale per frame from the median absolute deviation of the response.
    med = np.median(resp, axis=(1, 2), keepdims=True)
    mad = np.median(np.abs(resp - med), axis=(1, 2), keepdims=True) * 1.4826
    thr = med + cfg.threshold * np.maximum(mad, 1e-6)
    peaks = (resp == ndimage.maximum_filter(resp, size=(1, 3, 3))) & (resp > thr)
    t, r, c = np.nonzero(peaks)
    _, h, w = stack.shape
    inner = (r > 0) & (r < h - 1) & (c > 0) & (c < w - 1)
    t, r, c = t[inner], r[inner], c[inner]

    def _offset(lo, mid, hi):
        den = lo - 2.0 * mid + hi
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(den < 0, 0.5 * (lo - hi) / den, 0.0)
        return np.clip(d, -0.5, 0.5)

    dy = _offset(resp[t, r - 1, c], resp[t, r, c], resp[t, r + 1, c])
    dx = _offset(resp[t, r, c - 1], resp[t, r, c], resp[t, r, c + 1])
    y = r + dy
    x = c + dx
    hw = window_half_width(sigma)
    windows, oy, ox = extract_windows(stack, t, y, x, hw)
    fit = fit_amplitudes(windows, oy, ox, sigma, alpha=cfg.alpha)
    keep = (fit["pval_Ar"] < cfg.alpha) & (fit["A"] > 0)
    out = pd.DataFrame({"frame": t, "y": y, "x": x, **fit})
    return out[keep].reset_index(drop=True)


# --------------------------------------------------------------------------- linking


def link_spots(
    spots: pd.DataFrame, config: TrackingConfig | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Link detections with laptrack (LAP, gap closing, optional merge and split).

    Returns
    -------
    track_df, split_df, merge_df : DataFrame
        laptrack's outputs; ``track_df`` keeps the spot columns and adds ``track_id``
        (segment) and ``tree_id`` (compound track).

    Examples
    --------
    >>> spots = pd.DataFrame({"frame": [0, 1, 2], "y": [5.0, 5.1, 5.0], "x": [5.0, 5.0, 5.2],
    ...                       "A": [100.0, 120.0, 90.0]})
    >>> tracks, _, _ = link_spots(spots)
    >>> tracks["tree_id"].nunique()
    1
    """
    from laptrack import LapTrack

    cfg = config or TrackingConfig()
    ms = cfg.link_radius_px**2 if cfg.merge_split else False
    lt = LapTrack(
        metric="sqeuclidean",
        cutoff=cfg.link_radius_px**2,
        gap_closing_metric="sqeuclidean",
        gap_closing_cutoff=cfg.gap_radius_px**2 if cfg.max_gap > 0 else False,
        gap_closing_max_frame_count=max(cfg.max_gap, 1),
        splitting_cutoff=ms,
        merging_cutoff=ms,
    )
    spots = spots.reset_index(drop=True)
    if len(spots) == 0:
        empty = pd.DataFrame(columns=["parent_track_id", "child_track_id"])
        return spots.assign(track_id=[], tree_id=[]), empty, empty.copy()
    track_df, split_df, merge_df = lt.predict_dataframe(
        spots, coordinate_cols=["y", "x"], frame_col="frame", only_coordinate_cols=False
    )
    return track_df, split_df, merge_df


# --------------------------------------------------------------------------- tracks


def _track_frames(group: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # One position per frame: the brightest detection (compound tracks can hold several),
    # linear interpolation through gaps.
    g = group.sort_values(["frame", "A"], ascending=[True, False]).drop_duplicates("frame")
    f_det = g["frame"].to_numpy()
    frames = np.arange(f_det[0], f_det[-1] + 1)
    y = np.interp(frames, f_det, g["y"].to_numpy())
    x = np.interp(frames, f_det, g["x"].to_numpy())
    gap = ~np.isin(frames, f_det)
    return frames, y, x, gap


def _gap_invalid(amp: np.ndarray, gap: np.ndarray) -> bool:
    if not gap.any():
        return False
    idx = np.flatnonzero(gap)
    # Split gap frames into contiguous gaps.
    for run in np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1):
        lo, hi = run[0], run[-1]
        left = amp[max(0, lo - 2) : lo]
        right = amp[hi + 1 : hi + 3]
        if left.size == 0 or right.size == 0:
            continue
        inside = amp[lo : hi + 1].mean()
        if inside < 0.5 * left.mean() and inside < 0.5 * right.mean():
            return True
    return False


def _assemble(
    movie: np.ndarray,
    track_df: pd.DataFrame,
    split_df: pd.DataFrame,
    merge_df: pd.DataFrame,
    cfg: TrackingConfig,
    dt: float,
    cell: str,
) -> pd.DataFrame:
    t_max = movie.shape[0]
    compound_ids = set()
    for df in (split_df, merge_df):
        if len(df):
            compound_ids.update(df["parent_track_id"].tolist())
            compound_ids.update(df["child_track_id"].tolist())
    seg_tree = track_df.groupby("track_id")["tree_id"].first()
    compound_trees = {int(seg_tree[i]) for i in compound_ids if i in seg_tree.index}
    items = []
    for tree_id, group in track_df.groupby("tree_id", sort=True):
        frames, y, x, gap = _track_frames(group)
        before = np.arange(frames[0] - BUFFER_FRAMES, frames[0])
        after = np.arange(frames[-1] + 1, frames[-1] + 1 + BUFFER_FRAMES)
        before = before[before >= 0]
        after = after[after < t_max]
        items.append((int(tree_id), frames, y, x, gap, before, after))
    if not items:
        return pd.DataFrame()
    # One batched fit per channel over every track frame and buffer frame.
    all_f = np.concatenate([np.concatenate([it[1], it[5], it[6]]) for it in items])
    all_y = np.concatenate(
        [
            np.concatenate([it[2], np.full(it[5].size, it[2][0]), np.full(it[6].size, it[2][-1])])
            for it in items
        ]
    )
    all_x = np.concatenate(
        [
            np.concatenate([it[3], np.full(it[5].size, it[3][0]), np.full(it[6].size, it[3][-1])])
            for it in items
        ]
    )
    fits = []
    for ch, sigma in enumerate(cfg.psf_sigma_px):
        hw = window_half_width(sigma)
        windows, oy, ox = extract_windows(movie[:, ch], all_f, all_y, all_x, hw)
        fits.append(fit_amplitudes(windows, oy, ox, sigma, alpha=cfg.alpha))
    rows = []
    pos = 0
    for k, (tree_id, frames, y, x, gap, before, after) in enumerate(items):
        n, nb, na = frames.size, before.size, after.size
        tr = slice(pos, pos + n)
        bs = slice(pos + n, pos + n + nb)
        as_ = slice(pos + n + nb, pos + n + nb + na)
        pos += n + nb + na
        amp = fits[0]["A"][tr]
        med = float(np.median(amp))
        buf_fail = False
        for sl in (bs, as_):
            sig = (fits[0]["pval_Ar"][sl] < cfg.alpha) & (fits[0]["A"][sl] >= 0.5 * med)
            buf_fail |= int(sig.sum()) >= 2
        vis = track_visibility(int(frames[0]), int(frames[-1]), t_max)
        # Persistent (visibility 3) and cut (2) tracks are categories 4 and 3 whatever
        # their gaps and buffers.
        if vis == 3:
            cat = 4
        elif vis == 2:
            cat = 3
        elif buf_fail or _gap_invalid(amp, gap):
            cat = 2
        else:
            cat = 1
        if tree_id in compound_trees:
            cat += 4
        rows.append(
            track_row(
                cell=cell,
                track_id=k + 1,
                catIdx=cat,
                frames=frames,
                n_frames=t_max,
                frame_interval_s=dt,
                x=x,
                y=y,
                gap=gap,
                fits=(fits[0], fits[1]),
                track=tr,
                start_buffer=bs,
                end_buffer=as_,
            )
        )
    return pd.DataFrame(rows)


def track_array(
    movie: np.ndarray,
    config: TrackingConfig | None = None,
    frame_interval_s: float = 1.0,
    cell: str = "cell1",
) -> pd.DataFrame:
    """Track an in-memory TCYX movie (C: clathrin, auxilin) into a tracks table.

    Examples
    --------
    >>> from molecular_partner.simulate import SimulationConfig, simulate_pits, render_movie
    >>> gt = simulate_pits(SimulationConfig(n_frames=40, shape=(32, 32), n_pits=4), seed=0)
    >>> tracks = track_array(render_movie(gt))
    >>> {"X", "Y", "pval_Ar_Y", "catIdx"} <= set(tracks.columns)
    True
    """
    cfg = config or TrackingConfig()
    movie = np.asarray(movie, dtype=np.float32)
    if movie.ndim != 4 or movie.shape[1] != 2:
        raise ValueError(f"movie must be TCYX with 2 channels, got shape {movie.shape}")
    _check_finite(movie, cell)
    frame_interval_s = _positive(frame_interval_s, "frame_interval_s", cell)
    spots = detect_spots(movie[:, 0], cfg)
    logger.info("%s: %d detections in %d frames", cell, len(spots), movie.shape[0])
    track_df, split_df, merge_df = link_spots(spots, cfg)
    tracks = _assemble(movie, track_df, split_df, merge_df, cfg, frame_interval_s, cell)
    logger.info("%s: %d tracks", cell, len(tracks))
    return tracks


def _positive(value: object, what: str, name: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name}: {what} must be a positive number, got {value!r}")
    return number


def _frame_interval(path: Path, info: dict, explicit: float | None, cfg: TrackingConfig) -> float:
    """The seconds per frame: given, else from the metadata, else assumed with a warning."""
    if explicit is not None:
        return _positive(explicit, "frame_interval_s", path)
    if cfg.frame_interval_s is not None:
        return _positive(cfg.frame_interval_s, "the frame interval (frame_interval_s)", path)
    if "frame_interval_s" in info:
        return _positive(
            info["frame_interval_s"],
            "the frame interval of its metadata (ImageJ 'finterval', seconds)",
            path,
        )
    warnings.warn(
        f"{path}: no frame interval in the movie's metadata; assuming "
        f"{DEFAULT_FRAME_INTERVAL_S:g} s per frame (lifetimes depend on it; pass "
        "frame_interval_s)",
        stacklevel=3,
    )
    return DEFAULT_FRAME_INTERVAL_S


def track_movie(
    path: str | Path,
    aux_path: str | Path | None = None,
    *,
    config: TrackingConfig | None = None,
    cell: str | None = None,
    frame_interval_s: float | None = None,
    pixel_size_nm: float | None = None,
) -> pd.DataFrame:
    """Track a two-channel TIFF movie into a cmeAnalysis-style tracks table.

    Parameters
    ----------
    path : path
        TCYX or CTYX TIFF (or the clathrin TYX TIFF when ``aux_path`` is given).
    aux_path : path, optional
        Auxilin TYX TIFF.
    config : TrackingConfig, optional
    cell : str, optional
        Value of the ``cell`` column; defaults to the file's stem.
    frame_interval_s : float, optional
        Seconds per frame; wins over ``config.frame_interval_s``, which wins over the
        movie's metadata (ImageJ ``finterval``). Without any of them 1 s is assumed, with a
        warning naming the movie.
    pixel_size_nm : float, optional
        Pixel size; wins over the metadata. Positions stay in pixels and the detection
        settings of ``config`` are in pixels too: the size is checked and logged, so that a
        table's scale is on record.

    Returns
    -------
    DataFrame
        One row per track with ``lifetime_s``, ``catIdx``, ``X``, ``Y``, ``pval_Ar_Y``,
        ``cell`` and the other columns of :mod:`molecular_partner.tables`.

    Raises
    ------
    ValueError
        Naming the file: see :func:`read_movie`; a frame interval or pixel size that is
        not a positive number (given or from the metadata); no clathrin track found.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from molecular_partner.simulate import (SimulationConfig, simulate_pits,
    ...                                         render_movie, write_movie)
    >>> cfg = SimulationConfig(n_frames=40, shape=(32, 32), n_pits=4)
    >>> p = write_movie(pathlib.Path(tempfile.mkdtemp()) / "c1.tif",
    ...                 render_movie(simulate_pits(cfg)), cfg)
    >>> track_movie(p)["cell"].iloc[0]
    'c1'
    """
    cfg = config or TrackingConfig()
    path = Path(path)
    if pixel_size_nm is not None:
        _positive(pixel_size_nm, "pixel_size_nm", path)
    movie, info = read_movie(path, aux_path)
    dt = _frame_interval(path, info, frame_interval_s, cfg)
    pixel = pixel_size_nm if pixel_size_nm is not None else info.get("pixel_size_nm")
    if pixel is not None:
        pixel = _positive(pixel, "the pixel size (nm)", path)
    logger.info(
        "%s: %g s per frame, pixel %s", path, dt, "unknown" if pixel is None else f"{pixel:g} nm"
    )
    name = cell if cell is not None else path.stem
    tracks = track_array(movie, cfg, frame_interval_s=dt, cell=name)
    if len(tracks) == 0:
        raise ValueError(f"{path}: no clathrin tracks found")
    return tracks
