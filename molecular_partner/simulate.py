"""Two-channel TIRF movies of clathrin-coated pits with auxilin recruitment, and ground truth.

The simulator stands in for data that cannot be downloaded, so it is built to be as hard
as the real problem rather than easy:

* abortive and productive pits overlap in lifetime (abortive lifetimes are log-normal with
  a long tail, productive ones Gamma-distributed from 15 s) and in peak clathrin
  amplitude (long-lived abortive pits grow larger);
* the shapes overlap too: some productive pits sag before scission, some abortive pits end
  abruptly;
* auxilin appears in productive pits as a burst at scission (optionally a second, GAK
  burst) but also, rarely, as a stray flash at any pit (a passing vesicle or a neighbour),
  so labels computed from the auxilin channel by the published rules are not the hidden
  class;
* the auxilin burst size correlates only weakly with the clathrin amplitude.

Defaults are calibrated against the original clathrin/auxilin data set (about 27% aux+
tracks after cleaning, about 50% aux+ among tracks longer than 15 s, about 5% hotspots,
productive median lifetime about 46 s).

Amplitudes are camera units above background, the scale of cmeAnalysis ``A``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from molecular_partner.fitting import fit_amplitudes, window_half_width
from molecular_partner.tables import track_row, track_visibility, write_tracks_table
from shared.runs import atomic_write

__all__ = [
    "GroundTruth",
    "SimulationConfig",
    "ideal_tracks",
    "render_movie",
    "score_tracking",
    "simulate_cells",
    "simulate_pits",
    "truth_aux_positive",
    "write_movie",
]

logger = logging.getLogger(__name__)

BUFFER_FRAMES = 5

#: The settings each physics gives the fields of :class:`SimulationConfig` left at ``None``.
PHYSICS: dict[str, dict[str, float]] = {
    # The physics of the first committed run.
    "v1": {
        "productive_lifetime_mean_s": 50.0,
        "stalled_lifetime_mean_s": 50.0,
        "stalled_peak_ratio": 0.7,
        "aux_coat_exponent": 0.6,
        "aux_burst_sigma": 0.7,
        "clathrin_frame_noise": 0.0,
    },
    # Calibrated on the baselines only (results/molecular_partner/calibration/README.md):
    # held-out LSTM R2 about 0.24 and db5 top-6 + OLS about 0.85 times the LSTM, as on the
    # real data. Each change follows a published observation:
    "v2": {
        # Unchanged: the data set's own CCP median lifetime (45.8 s, cmeAnalysis log).
        "productive_lifetime_mean_s": 50.0,
        # CCPs that recruit no dynamin (about half) live about 30 s against about 65 s
        # for those that do (Aguet et al. 2013, Dev Cell 26:279).
        "stalled_lifetime_mean_s": 30.0,
        # Abortive pits disassemble well before reaching vesicle size (Banerjee,
        # Berezhkovskii & Nossal 2012, Biophys J, PMC3379625, summing up the imaging data).
        "stalled_peak_ratio": 0.5,
        # Auxilin bursts hold very few molecules (4-6 suffice for uncoating; He et al.
        # 2020, J Cell Biol 219:e201908142): their size is mostly recruitment noise, tied
        # only weakly to the coat, and more spread than in v1.
        "aux_coat_exponent": 0.3,
        "aux_burst_sigma": 0.8,
        # Frame-to-frame fluctuation of the fitted clathrin amplitude, within the
        # 5-15 % per-frame amplitude uncertainty (A_pstd) assumed for cmeAnalysis
        # tracks (an estimate, not a published number).
        "clathrin_frame_noise": 0.1,
    },
}


@dataclass(frozen=True)
class SimulationConfig:
    """Parameters of one simulated cell (one movie).

    Attributes
    ----------
    n_frames, shape, frame_interval_s, pixel_size_nm
        Movie geometry: 300 frames at 1 s, 256x256 pixels of 80 nm by default.
    n_pits
        Number of pit sites in the cell over the whole movie (cut ones included).
    productive_fraction
        Fraction of sites that are productive (hidden class).
    hotspot_fraction
        Fraction of sites that re-initiate (2-3 productive events back to back).
    stalled_fraction
        Fraction of non-productive sites that are stalled pits: productive-like lifetimes
        and amplitudes, but no scission and no auxilin burst.
    abortive_lifetime_median_s, abortive_lifetime_sigma
        Log-normal abortive lifetimes (cmeAnalysis "dim CS" percentiles: median 7.7 s,
        95th percentile 37.5 s).
    physics
        Name of the trace-to-outcome physics (a key of :data:`PHYSICS`): it gives the
        fields below left at ``None`` their values. ``"v1"`` is the physics of the first
        committed run; ``"v2"`` is calibrated on the baselines against published relations
        (see the comments in :data:`PHYSICS`). An explicit value overrides the physics.
    productive_lifetime_mean_s, productive_lifetime_shape
        Gamma productive lifetimes, clipped to [15, 300] s (the mean from the physics).
    stalled_lifetime_mean_s, stalled_peak_ratio
        Mean Gamma lifetime of stalled pits (same shape as the productive ones) and their
        median peak as a fraction of ``productive_peak_median`` (from the physics).
    productive_peak_median, abortive_peak_median, peak_sigma
        Log-normal peak clathrin amplitudes (a.u. above background).
    aux_burst_median, aux_burst_sigma, gak_probability
        Log-normal auxilin burst amplitude at scission (sigma from the physics);
        probability of a second burst.
    aux_coat_exponent
        The burst grows as (coat at scission / productive_peak_median) ** exponent
        (from the physics).
    stray_aux_rate, stray_aux_median
        Stray auxilin flashes (a few frames) per pit-frame and their median amplitude.
    blip_aux_rate, blip_aux_median
        Single-frame auxilin blips per pit-frame and their median amplitude.
    psf_sigma_px
        PSF standard deviation (clathrin, auxilin) in pixels.
    background, gain, read_noise
        Camera: background per channel (a.u.), a.u. per photon (Poisson noise), read noise.
    jitter_px
        Per-frame random-walk step of a pit's position (pixels).
    min_separation_px
        Minimum distance between pits alive at the same time.
    clathrin_frame_noise
        Standard deviation of an independent multiplicative fluctuation of the clathrin
        amplitude in each frame (from the physics; 0 turns it off).
    """

    n_frames: int = 300
    shape: tuple[int, int] = (256, 256)
    frame_interval_s: float = 1.0
    pixel_size_nm: float = 80.0
    n_pits: int = 300
    physics: str = "v1"
    productive_fraction: float = 0.20
    hotspot_fraction: float = 0.08
    stalled_fraction: float = 0.14
    abortive_lifetime_median_s: float = 7.7
    abortive_lifetime_sigma: float = 1.0
    productive_lifetime_mean_s: float | None = None
    productive_lifetime_shape: float = 3.5
    stalled_lifetime_mean_s: float | None = None
    stalled_peak_ratio: float | None = None
    productive_peak_median: float = 700.0
    abortive_peak_median: float = 250.0
    peak_sigma: float = 0.45
    aux_burst_median: float = 500.0
    aux_burst_sigma: float | None = None
    aux_coat_exponent: float | None = None
    gak_probability: float = 0.3
    stray_aux_rate: float = 0.006
    stray_aux_median: float = 150.0
    blip_aux_rate: float = 0.03
    blip_aux_median: float = 60.0
    psf_sigma_px: tuple[float, float] = (1.0, 0.9)
    background: tuple[float, float] = (100.0, 100.0)
    gain: float = 2.0
    read_noise: float = 3.0
    jitter_px: float = 0.1
    min_separation_px: float = 6.0
    clathrin_frame_noise: float | None = None

    def __post_init__(self) -> None:
        if self.physics not in PHYSICS:
            raise ValueError(f"physics must be one of {sorted(PHYSICS)}, got {self.physics!r}")
        for name, value in PHYSICS[self.physics].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.n_frames < 10:
            raise ValueError(f"n_frames must be >= 10, got {self.n_frames}")
        if min(self.shape) < 16:
            raise ValueError(f"shape must be at least 16x16 pixels, got {self.shape}")
        if not 0.0 <= self.productive_fraction <= 1.0:
            raise ValueError(
                f"productive_fraction must be in [0, 1], got {self.productive_fraction}"
            )
        if not 0.0 <= self.hotspot_fraction <= 1.0:
            raise ValueError(f"hotspot_fraction must be in [0, 1], got {self.hotspot_fraction}")

    @property
    def pixel_noise(self) -> float:
        """Standard deviation of one background pixel (a.u.), clathrin channel."""
        return float(np.sqrt(self.gain * self.background[0] + self.read_noise**2))


@dataclass
class GroundTruth:
    """Ground truth of one simulated cell.

    Attributes
    ----------
    pits : DataFrame
        One row per pit site: ``pit_id``, ``x0``, ``y0``, ``start`` (0-based first frame of
        the clathrin signal; negative when the pit began before the movie), ``n_support``
        (frames with clathrin signal), ``lifetime_s``, the hidden ``productive`` class,
        ``hotspot``, ``n_events``, ``peak_A``, ``aux_burst_A`` (0 for abortive), ``n_stray``,
        and per-frame arrays over the support: ``clathrin``, ``auxilin`` (true amplitudes),
        ``x``, ``y`` (positions).
    config : SimulationConfig
    """

    pits: pd.DataFrame
    config: SimulationConfig

    def frames(self) -> pd.DataFrame:
        """Long table, one row per pit and movie frame: pit_id, frame, x, y, A_clathrin, A_auxilin.

        Examples
        --------
        >>> gt = simulate_pits(SimulationConfig(n_frames=50, shape=(32, 32), n_pits=5), seed=1)
        >>> set(gt.frames().columns) >= {"pit_id", "frame", "A_clathrin"}
        True
        """
        rows = []
        t_max = self.config.n_frames
        for p in self.pits.itertuples(index=False):
            f = p.start + np.arange(p.n_support)
            keep = (f >= 0) & (f < t_max)
            rows.append(
                pd.DataFrame(
                    {
                        "pit_id": p.pit_id,
                        "frame": f[keep],
                        "x": np.asarray(p.x)[keep],
                        "y": np.asarray(p.y)[keep],
                        "A_clathrin": np.asarray(p.clathrin)[keep],
                        "A_auxilin": np.asarray(p.auxilin)[keep],
                    }
                )
            )
        return pd.concat(rows, ignore_index=True)


# --------------------------------------------------------------------------- traces


def _fluctuation(n: int, rng: np.random.Generator, sd: float) -> np.ndarray:
    # Slow multiplicative AR(1) fluctuation of the coat size; never negative.
    e = np.empty(n)
    prev = 0.0
    for i in range(n):
        prev = 0.8 * prev + rng.normal(0.0, sd * 0.6)
        e[i] = prev
    return np.clip(1.0 + e, 0.3, None)


def _smoothstep(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def _pulse(n: int, center: float, width: float, amp: float) -> np.ndarray:
    t = np.arange(n, dtype=np.float64)
    return amp * np.exp(-((t - center) ** 2) / (2.0 * width**2))


def _productive_event(
    n: int, peak: float, cfg: SimulationConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, float]:
    tau = rng.uniform(0.7, 1.8)
    tail = max(1, round(tau * np.log(1.0 / 0.15)))
    pre = max(n - tail, 2)
    t = np.arange(n, dtype=np.float64)
    a0 = rng.uniform(0.15, 0.35)
    t_rise = max(1.0, rng.uniform(0.35, 0.8) * pre)
    shape = a0 + (1.0 - a0) * _smoothstep(t / t_rise)
    if rng.random() < 0.3:
        # Some productive pits shrink before scission, like abortive ones do.
        end_level = rng.uniform(0.55, 0.9)
        frac = np.clip((t - t_rise) / max(pre - t_rise, 1.0), 0.0, 1.0)
        shape *= 1.0 - (1.0 - end_level) * frac
    after = t >= pre
    shape[after] = shape[pre - 1] * np.exp(-(t[after] - pre + 1.0) / tau)
    clath = peak * shape * _fluctuation(n, rng, 0.08)
    # The burst grows with the coat left at scission (the end of the plateau, not the
    # peak), with a large unexplained spread: few molecules, stochastic recruitment.
    at_scission = float(np.mean(clath[max(0, pre - 3) : pre]))
    burst = (
        cfg.aux_burst_median
        * (at_scission / cfg.productive_peak_median) ** cfg.aux_coat_exponent
        * np.exp(rng.normal(0.0, cfg.aux_burst_sigma))
    )
    center = pre - 1 + rng.uniform(0.3, 1.8)
    aux = _pulse(n, center, rng.uniform(0.8, 1.8), burst)
    if rng.random() < cfg.gak_probability:
        aux += _pulse(n, center + rng.uniform(1.0, 3.0), rng.uniform(0.6, 1.0), 0.5 * burst)
    return clath, aux, burst


def _abortive_event(n: int, peak: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(n, dtype=np.float64)
    a0 = rng.uniform(0.2, 0.45)
    if rng.random() < 0.25:
        # Abrupt end after a plateau: the shape a productive pit has.
        tau = rng.uniform(0.7, 1.8)
        tail = max(1, round(tau * np.log(1.0 / 0.15)))
        pre = max(n - tail, 2)
        shape = a0 + (1.0 - a0) * _smoothstep(t / max(1.0, rng.uniform(0.35, 0.8) * pre))
        after = t >= pre
        shape[after] = shape[min(pre, n) - 1] * np.exp(-(t[after] - pre + 1.0) / tau)
    else:
        t_peak = max(1.0, rng.uniform(0.3, 0.7) * (n - 1))
        end_level = rng.uniform(0.15, 0.5)
        rise = a0 + (1.0 - a0) * _smoothstep(t / t_peak)
        fall = 1.0 - (1.0 - end_level) * np.clip((t - t_peak) / max(n - 1 - t_peak, 1.0), 0, 1)
        shape = np.where(t <= t_peak, rise, fall)
    clath = peak * shape * _fluctuation(n, rng, 0.1)
    return clath, np.zeros(n)


def _sample_pit(cfg: SimulationConfig, rng: np.random.Generator) -> dict:
    dt = cfg.frame_interval_s
    hotspot = rng.random() < cfg.hotspot_fraction
    productive = hotspot or rng.random() < cfg.productive_fraction
    if productive:
        n_events = int(rng.integers(2, 4)) if hotspot else 1
        clath_parts, aux_parts = [], []
        bursts = []
        for k in range(n_events):
            life_s = rng.gamma(
                cfg.productive_lifetime_shape,
                cfg.productive_lifetime_mean_s / cfg.productive_lifetime_shape,
            )
            n = max(3, round(np.clip(life_s, 15.0, 300.0) / dt))
            peak = cfg.productive_peak_median * np.exp(rng.normal(0.0, cfg.peak_sigma))
            c, a, b = _productive_event(n, peak, cfg, rng)
            if k > 0:
                # Re-initiation at the same site within the tracker's gap-closing reach.
                gap = int(rng.integers(0, 3))
                clath_parts.append(np.zeros(gap))
                aux_parts.append(np.zeros(gap))
            clath_parts.append(c)
            aux_parts.append(a)
            bursts.append(b)
        clath = np.concatenate(clath_parts)
        aux = np.concatenate(aux_parts)
        burst = float(np.mean(bursts))
        peak_a = float(clath.max())
    else:
        n_events = 1
        if rng.random() < cfg.stalled_fraction:
            # Stalled pits: as long-lived and nearly as large as productive ones, but
            # never released, so no auxilin burst.
            life_s = rng.gamma(
                cfg.productive_lifetime_shape,
                cfg.stalled_lifetime_mean_s / cfg.productive_lifetime_shape,
            )
            n = max(3, round(np.clip(life_s, 15.0, 300.0) / dt))
            peak = (
                cfg.stalled_peak_ratio
                * cfg.productive_peak_median
                * np.exp(rng.normal(0.0, cfg.peak_sigma))
            )
        else:
            life_s = cfg.abortive_lifetime_median_s * np.exp(
                rng.normal(0.0, cfg.abortive_lifetime_sigma)
            )
            n = max(3, round(np.clip(life_s, 3.0, 300.0) / dt))
            # Long-lived abortive pits grow larger, overlapping productive amplitudes.
            peak = (
                cfg.abortive_peak_median
                * max(n * dt / 8.0, 0.5) ** 0.5
                * np.exp(rng.normal(0.0, cfg.peak_sigma))
            )
        clath, aux = _abortive_event(n, peak, rng)
        burst = 0.0
        peak_a = float(clath.max())
    n = clath.size
    if cfg.clathrin_frame_noise > 0:
        clath = clath * np.clip(1.0 + rng.normal(0.0, cfg.clathrin_frame_noise, n), 0.0, None)
    # Single-frame auxilin blips (diffuse auxilin, vesicles passing through the field):
    # isolated significant frames, as the real auxilin channel has them.
    n_blip = int(rng.poisson(cfg.blip_aux_rate * n))
    if n_blip:
        where = rng.integers(0, n, size=n_blip)
        amps = cfg.blip_aux_median * np.exp(rng.normal(0.0, 0.4, size=n_blip))
        aux = aux.copy()
        np.add.at(aux, where, amps)
    n_stray = int(rng.poisson(cfg.stray_aux_rate * n))
    for _ in range(n_stray):
        amp = cfg.stray_aux_median * np.exp(rng.normal(0.0, 0.6))
        aux = aux + _pulse(n, rng.uniform(0, n - 1), rng.uniform(0.5, 1.0), amp)
    return {
        "productive": bool(productive),
        "hotspot": bool(hotspot),
        "n_events": n_events,
        "n_support": n,
        "lifetime_s": n * dt,
        "peak_A": peak_a,
        "aux_burst_A": burst,
        "n_stray": n_stray,
        "clathrin": clath,
        "auxilin": aux,
    }


def simulate_pits(
    config: SimulationConfig | None = None, seed: int = 0, *, place: bool = True
) -> GroundTruth:
    """Draw the pits of one cell: classes, lifetimes, amplitude traces, positions.

    Parameters
    ----------
    config : SimulationConfig, optional
        Defaults to ``SimulationConfig()``.
    seed : int
        Seed of ``numpy.random.default_rng``; same seed, same cell.
    place : bool
        Enforce ``min_separation_px`` between pits alive at the same time (needed for
        movies; trace-only simulations may skip it).

    Returns
    -------
    GroundTruth

    Examples
    --------
    >>> gt = simulate_pits(SimulationConfig(n_frames=100, shape=(64, 64), n_pits=20), seed=3)
    >>> len(gt.pits)
    20
    """
    cfg = config or SimulationConfig()
    rng = np.random.default_rng(seed)
    h, w = cfg.shape
    margin = 3.0
    rows = []
    placed = np.empty((0, 4))  # x, y, first frame, last frame
    for pit_id in range(cfg.n_pits):
        pit = _sample_pit(cfg, rng)
        n = pit["n_support"]
        # Uniform onset over every start that leaves part of the pit inside the movie,
        # so pits cut by the start or end of the movie occur at their natural rate.
        start = int(rng.integers(-(n - 1), cfg.n_frames))
        lo, hi = start - BUFFER_FRAMES, start + n - 1 + BUFFER_FRAMES
        for _ in range(200):
            x0 = rng.uniform(margin, w - 1 - margin)
            y0 = rng.uniform(margin, h - 1 - margin)
            if not place or placed.shape[0] == 0:
                break
            overlap = (placed[:, 2] <= hi) & (placed[:, 3] >= lo)
            d2 = (placed[:, 0] - x0) ** 2 + (placed[:, 1] - y0) ** 2
            if not np.any(overlap & (d2 < cfg.min_separation_px**2)):
                break
        else:
            logger.warning("pit %d: no free position after 200 tries; placed anyway", pit_id)
        placed = np.vstack([placed, [x0, y0, lo, hi]])
        steps = rng.normal(0.0, cfg.jitter_px, size=(n, 2))
        walk = np.clip(np.cumsum(steps, axis=0), -1.0, 1.0)
        pit.update(
            pit_id=pit_id,
            x0=x0,
            y0=y0,
            start=start,
            x=np.clip(x0 + walk[:, 0], 0, w - 1),
            y=np.clip(y0 + walk[:, 1], 0, h - 1),
        )
        rows.append(pit)
    pits = pd.DataFrame(rows)
    first = [
        "pit_id",
        "x0",
        "y0",
        "start",
        "n_support",
        "lifetime_s",
        "productive",
        "hotspot",
        "n_events",
        "peak_A",
        "aux_burst_A",
        "n_stray",
    ]
    pits = pits[first + [c for c in pits.columns if c not in first]]
    return GroundTruth(pits=pits, config=cfg)


# --------------------------------------------------------------------------- rendering


def _camera(expected: np.ndarray, cfg: SimulationConfig, rng: np.random.Generator) -> np.ndarray:
    photons = rng.poisson(np.clip(expected, 0.0, None) / cfg.gain).astype(np.float64)
    img = photons * cfg.gain + rng.normal(0.0, cfg.read_noise, size=expected.shape)
    return img


def render_movie(truth: GroundTruth, seed: int = 0) -> np.ndarray:
    """Render the two-channel movie of a cell as uint16, axes TCYX (C: clathrin, auxilin).

    Parameters
    ----------
    truth : GroundTruth
        From :func:`simulate_pits`.
    seed : int
        Seed of the camera noise.

    Returns
    -------
    ndarray, shape (T, 2, H, W), uint16

    Examples
    --------
    >>> gt = simulate_pits(SimulationConfig(n_frames=20, shape=(32, 32), n_pits=3), seed=0)
    >>> render_movie(gt).shape
    (20, 2, 32, 32)
    """
    cfg = truth.config
    rng = np.random.default_rng(seed)
    t_max = cfg.n_frames
    h, w = cfg.shape
    frames = truth.frames()
    movie = np.empty((t_max, 2, h, w), dtype=np.uint16)
    expected = np.empty((t_max, h, w))
    for ch, (col, sigma) in enumerate(
        zip(("A_clathrin", "A_auxilin"), cfg.psf_sigma_px, strict=False)
    ):
        expected[:] = cfg.background[ch]
        hw = window_half_width(sigma)
        offs = np.arange(-hw, hw + 1)
        f = frames["frame"].to_numpy()
        yy = frames["y"].to_numpy()
        xx = frames["x"].to_numpy()
        amp = frames[col].to_numpy()
        iy = np.rint(yy).astype(int)
        ix = np.rint(xx).astype(int)
        rows = iy[:, None] + offs[None, :]
        cols = ix[:, None] + offs[None, :]
        gy = np.exp(-((rows - yy[:, None]) ** 2) / (2 * sigma**2))
        gx = np.exp(-((cols - xx[:, None]) ** 2) / (2 * sigma**2))
        val = amp[:, None, None] * gy[:, :, None] * gx[:, None, :]
        rr = np.broadcast_to(rows[:, :, None], val.shape)
        cc = np.broadcast_to(cols[:, None, :], val.shape)
        ff = np.broadcast_to(f[:, None, None], val.shape)
        inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        np.add.at(expected, (ff[inside], rr[inside], cc[inside]), val[inside])
        for t in range(t_max):
            movie[t, ch] = np.clip(np.rint(_camera(expected[t], cfg, rng)), 0, 65535)
    return movie


def write_movie(path: str | Path, movie: np.ndarray, config: SimulationConfig) -> Path:
    """Write a TCYX uint16 movie as an ImageJ hyperstack TIFF with frame interval and pixel size.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> cfg = SimulationConfig(n_frames=10, shape=(16, 16), n_pits=1)
    >>> p = write_movie(pathlib.Path(tempfile.mkdtemp()) / "m.tif",
    ...                 np.zeros((10, 2, 16, 16), np.uint16), cfg)
    >>> p.suffix
    '.tif'
    """
    import tifffile

    path = Path(path)
    if movie.ndim != 4 or movie.shape[1] != 2:
        raise ValueError(f"{path}: movie must be TCYX with 2 channels, got shape {movie.shape}")
    px_um = config.pixel_size_nm / 1000.0

    def _write(tmp: str) -> None:
        tifffile.imwrite(
            tmp,
            movie.astype(np.uint16),
            imagej=True,
            resolution=(1.0 / px_um, 1.0 / px_um),
            metadata={
                "axes": "TCYX",
                "finterval": config.frame_interval_s,
                "unit": "um",
                "Labels": ["clathrin", "auxilin"] * movie.shape[0],
            },
        )

    atomic_write(path, _write)
    return path


# --------------------------------------------------------------------------- ideal tracker


def ideal_tracks(truth: GroundTruth, cell: str = "cell1", seed: int = 0) -> pd.DataFrame:
    """Tracks table of a perfect tracker: every pit is one track over its true support.

    Each pit-frame is rendered alone in a fitting window with the camera noise of the
    movie and fitted exactly as the tracker does, so ``X``, ``Y``, ``pval_Ar_Y`` carry
    realistic noise without rendering and tracking whole movies. Pits cut by the movie
    get catIdx 3 (4 when they span it), the others catIdx 1.

    Parameters
    ----------
    truth : GroundTruth
    cell : str
        Value of the ``cell`` column.
    seed : int
        Seed of the noise.

    Returns
    -------
    DataFrame
        The tracks table (see :mod:`molecular_partner.tables`) plus ``pit_id``.

    Examples
    --------
    >>> gt = simulate_pits(SimulationConfig(n_frames=60, shape=(32, 32), n_pits=4), seed=0)
    >>> tr = ideal_tracks(gt)
    >>> len(tr) == 4 and {"X", "Y", "pval_Ar_Y"} <= set(tr.columns)
    True
    """
    cfg = truth.config
    rng = np.random.default_rng(seed)
    t_max = cfg.n_frames
    dt = cfg.frame_interval_s
    # One window per pit-frame, track frames and buffers together.
    segs = []
    for p in truth.pits.itertuples(index=False):
        f_all = np.arange(p.start - BUFFER_FRAMES, p.start + p.n_support + BUFFER_FRAMES)
        keep = (f_all >= 0) & (f_all < t_max)
        idx = f_all - p.start
        inside = (idx >= 0) & (idx < p.n_support)
        clath = np.where(inside, np.asarray(p.clathrin)[np.clip(idx, 0, p.n_support - 1)], 0.0)
        aux = np.where(inside, np.asarray(p.auxilin)[np.clip(idx, 0, p.n_support - 1)], 0.0)
        xs = np.asarray(p.x)[np.clip(idx, 0, p.n_support - 1)]
        ys = np.asarray(p.y)[np.clip(idx, 0, p.n_support - 1)]
        segs.append((p, f_all[keep], idx[keep], clath[keep], aux[keep], xs[keep], ys[keep]))
    fits = []
    for ch, sigma in enumerate(cfg.psf_sigma_px):
        hw = window_half_width(sigma)
        offs = np.arange(-hw, hw + 1)
        amp = np.concatenate([s[3 + ch] for s in segs])
        xs = np.concatenate([s[5] for s in segs])
        ys = np.concatenate([s[6] for s in segs])
        dy = ys - np.rint(ys)
        dx = xs - np.rint(xs)
        gy = np.exp(-((offs[None, :] - dy[:, None]) ** 2) / (2 * sigma**2))
        gx = np.exp(-((offs[None, :] - dx[:, None]) ** 2) / (2 * sigma**2))
        expected = cfg.background[ch] + amp[:, None, None] * gy[:, :, None] * gx[:, None, :]
        windows = _camera(expected, cfg, rng)
        windows = np.clip(np.rint(windows), 0, 65535)
        fits.append(fit_amplitudes(windows, dy, dx, sigma))
    rows = []
    pos = 0
    for p, f, idx, _, _, xs, ys in segs:
        m = f.size
        sl = slice(pos, pos + m)
        pos += m
        in_track = (idx >= 0) & (idx < p.n_support)
        before = idx < 0
        after = idx >= p.n_support
        fx = {k: v[sl] for k, v in fits[0].items()}
        fy = {k: v[sl] for k, v in fits[1].items()}
        ff = f[in_track]
        # As a tracker sees it: present in the first or last frame means cut.
        vis = track_visibility(int(ff[0]), int(ff[-1]), t_max)
        # Single tracks without gaps: complete -> catIdx 1, cut -> 3, persistent -> 4.
        cat = {1: 1, 2: 3, 3: 4}[vis]
        rows.append(
            track_row(
                cell=cell,
                track_id=int(p.pit_id),
                catIdx=cat,
                frames=ff,
                n_frames=t_max,
                frame_interval_s=dt,
                x=xs[in_track],
                y=ys[in_track],
                gap=np.zeros(ff.size),
                fits=(fx, fy),
                track=in_track,
                start_buffer=before,
                end_buffer=after,
                pit_id=int(p.pit_id),
            )
        )
    return pd.DataFrame(rows)


def simulate_cells(
    n_cells: int,
    config: SimulationConfig | None = None,
    seed: int = 0,
    out_dir: str | Path | None = None,
    movies: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate several cells: ideal-tracker tables and ground truth, optionally movies.

    Parameters
    ----------
    n_cells : int
        Number of cells (``cell1`` ... ``cellN``), each with its own seed.
    config : SimulationConfig, optional
    seed : int
        Base seed; cell ``i`` uses ``seed * 1000 + i``.
    out_dir : path, optional
        When given, writes ``tracks.parquet`` (ideal tracker), ``truth.parquet`` and
        ``config.json``; with ``movies=True`` also ``<cell>.tif`` (TCYX uint16).
    movies : bool
        Render and write movies (slow for many large cells).

    Returns
    -------
    tracks, truth : DataFrame
        Tracks of all cells and ground-truth pits (with a ``cell`` column).

    Examples
    --------
    >>> tr, gt = simulate_cells(2, SimulationConfig(n_frames=50, shape=(32, 32), n_pits=5))
    >>> sorted(tr["cell"].unique())
    ['cell1', 'cell2']
    """
    cfg = config or SimulationConfig()
    if n_cells < 1:
        raise ValueError(f"n_cells must be >= 1, got {n_cells}")
    out = Path(out_dir) if out_dir is not None else None
    tracks, truths = [], []
    for i in tqdm(range(1, n_cells + 1), desc="cells", disable=None):
        cell = f"cell{i}"
        cell_seed = seed * 1000 + i
        gt = simulate_pits(cfg, seed=cell_seed, place=movies)
        tracks.append(ideal_tracks(gt, cell=cell, seed=cell_seed + 500))
        pits = gt.pits.copy()
        pits.insert(0, "cell", cell)
        truths.append(pits)
        if out is not None and movies:
            movie = render_movie(gt, seed=cell_seed + 700)
            write_movie(out / f"{cell}.tif", movie, cfg)
            logger.info("wrote %s", out / f"{cell}.tif")
    tracks_df = pd.concat(tracks, ignore_index=True)
    truth_df = pd.concat(truths, ignore_index=True)
    if out is not None:
        write_tracks_table(tracks_df, out / "tracks.parquet")
        write_tracks_table(truth_df, out / "truth.parquet")
        text = json.dumps({"seed": seed, "n_cells": n_cells, **asdict(cfg)}, indent=2)
        atomic_write(out / "config.json", lambda tmp: Path(tmp).write_text(text))
    return tracks_df, truth_df


# --------------------------------------------------------------------------- scoring


def truth_aux_positive(truth: GroundTruth, threshold: float | None = None) -> np.ndarray:
    """Ground-truth auxilin recruitment per pit, from the noise-free auxilin trace.

    A pit is aux+ when its true auxilin amplitude exceeds ``threshold`` in two consecutive
    support frames or exceeds 973 a.u. once, which mirrors the published rule
    (``y_consec_thresh``) applied without noise. The default threshold is the amplitude at
    which the cmeAnalysis test becomes significant, about 2.5 pixel noise units.

    Examples
    --------
    >>> gt = simulate_pits(SimulationConfig(n_frames=60, shape=(32, 32), n_pits=4), seed=0)
    >>> truth_aux_positive(gt).shape
    (4,)
    """
    cfg = truth.config
    thr = threshold if threshold is not None else 2.5 * cfg.pixel_noise
    out = []
    for p in truth.pits.itertuples(index=False):
        f = p.start + np.arange(p.n_support)
        keep = (f >= 0) & (f < cfg.n_frames)
        aux = np.asarray(p.auxilin)[keep]
        above = aux > thr
        consec = bool(np.any(above[1:] & above[:-1]))
        out.append(consec or bool(aux.size and aux.max() > 973.0))
    return np.array(out, dtype=bool)


def score_tracking(
    tracks: pd.DataFrame,
    truth: GroundTruth,
    *,
    match_radius_px: float = 2.0,
    detectable_snr: float = 4.0,
    min_detectable_frames: int = 3,
) -> dict:
    """Score tracks against ground truth, pit by pit.

    A pit is *detectable* when its true clathrin amplitude is at least ``detectable_snr``
    pixel-noise units in ``min_detectable_frames`` or more movie frames. Every track frame
    is matched to the nearest pit alive in that frame within ``match_radius_px``. A track
    belongs to the pit most of its frames match; its *purity* is that fraction, and its
    *completeness* the fraction of the pit's detectable frames it covers. A pit is
    *recovered* when one track is at least 80% complete and 80% pure.

    Returns
    -------
    dict
        ``n_detectable``, ``n_recovered``, ``recovery`` (fraction), ``tracks_per_pit``,
        ``recovered`` (DataFrame: pit_id, track index, completeness, purity).

    Examples
    --------
    >>> gt = simulate_pits(SimulationConfig(n_frames=60, shape=(32, 32), n_pits=4), seed=0)
    >>> score_tracking(ideal_tracks(gt), gt)["recovery"] > 0.9
    True
    """
    cfg = truth.config
    gt = truth.frames()
    thr = detectable_snr * cfg.pixel_noise
    det = gt[gt["A_clathrin"] >= thr]
    det_frames = {pid: set(g["frame"]) for pid, g in det.groupby("pit_id")}
    detectable = {pid for pid, s in det_frames.items() if len(s) >= min_detectable_frames}
    by_frame = {f: g for f, g in gt.groupby("frame")}
    best: dict[int, tuple[float, float, int]] = {}
    n_assigned = 0
    for ti, tr in enumerate(tracks.itertuples(index=False)):
        f0 = np.asarray(tr.f, dtype=int) - 1
        xs = np.asarray(tr.x)
        ys = np.asarray(tr.y)
        matches = []
        for f, x, y in zip(f0, xs, ys, strict=False):
            g = by_frame.get(int(f))
            if g is None:
                matches.append(-1)
                continue
            d2 = (g["x"].to_numpy() - x) ** 2 + (g["y"].to_numpy() - y) ** 2
            j = int(np.argmin(d2))
            matches.append(int(g["pit_id"].iloc[j]) if d2[j] <= match_radius_px**2 else -1)
        matches = np.array(matches)
        valid = matches[matches >= 0]
        if valid.size == 0:
            continue
        ids, counts = np.unique(valid, return_counts=True)
        pid = int(ids[np.argmax(counts)])
        purity = counts.max() / matches.size
        n_assigned += 1
        if pid not in det_frames:
            continue
        covered = set(f0[matches == pid]) & det_frames[pid]
        completeness = len(covered) / len(det_frames[pid])
        if pid not in best or completeness > best[pid][0]:
            best[pid] = (completeness, purity, ti)
    rec = [
        {"pit_id": pid, "track": v[2], "completeness": v[0], "purity": v[1]}
        for pid, v in best.items()
        if pid in detectable and v[0] >= 0.8 and v[1] >= 0.8
    ]
    n_det = len(detectable)
    return {
        "n_detectable": n_det,
        "n_recovered": len(rec),
        "recovery": len(rec) / n_det if n_det else float("nan"),
        "tracks_per_pit": n_assigned / n_det if n_det else float("nan"),
        "recovered": pd.DataFrame(rec, columns=["pit_id", "track", "completeness", "purity"]),
    }


def with_overrides(config: SimulationConfig, **kwargs) -> SimulationConfig:
    """Return a copy of ``config`` with fields replaced (a thin wrapper over ``replace``).

    Examples
    --------
    >>> with_overrides(SimulationConfig(), n_pits=10).n_pits
    10
    """
    return replace(config, **kwargs)
