"""Time tracking one simulated 300-frame 256x256 two-channel TIRF movie (~300 pits).

Writes results/benchmarks/molecular_partner_tracking.md. A plain script, not a test:
``python bench/molecular_partner_tracking.py``.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

from molecular_partner.data import add_outcomes
from molecular_partner.simulate import (
    SimulationConfig,
    render_movie,
    score_tracking,
    simulate_pits,
    truth_aux_positive,
    write_movie,
)
from molecular_partner.tracking import TrackingConfig, detect_spots, link_spots, track_movie

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks"


def main() -> None:
    cfg = SimulationConfig(n_frames=300, shape=(256, 256), n_pits=300)
    gt = simulate_pits(cfg, seed=2024)
    movie = render_movie(gt, seed=2025)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = write_movie(Path(tmp) / "bench.tif", movie, cfg)
        size_mb = path.stat().st_size / 1e6
        # Stage timings on the in-memory movie, then the whole file-to-table call, 3 runs.
        t0 = time.perf_counter()
        spots = detect_spots(movie[:, 0].astype("float32"), TrackingConfig())
        t_detect = time.perf_counter() - t0
        t0 = time.perf_counter()
        link_spots(spots, TrackingConfig())
        t_link = time.perf_counter() - t0
        totals = []
        for _ in range(3):
            t0 = time.perf_counter()
            tracks = track_movie(path)
            totals.append(time.perf_counter() - t0)
    sc = score_tracking(tracks, gt)
    rec = sc["recovered"]
    labels = add_outcomes(tracks.iloc[rec["track"].to_numpy()])["y_consec_thresh"].to_numpy()
    agree = float((labels == truth_aux_positive(gt)[rec["pit_id"].to_numpy()]).mean())
    rows = [
        ("movie", f"300 frames x 256 x 256 px x 2 channels, uint16 TIFF ({size_mb:.0f} MB)"),
        ("pit sites (ground truth)", f"{len(gt.pits)}"),
        ("detections (clathrin)", f"{len(spots)}"),
        ("tracks", f"{len(tracks)}"),
        ("detection (LoG + Gaussian fit), s", f"{t_detect:.2f}"),
        ("linking (laptrack, gap 2, merge/split), s", f"{t_link:.2f}"),
        (
            "track_movie total (read, detect, link, fit 2 channels + buffers), s",
            f"{min(totals):.2f} best / {sorted(totals)[1]:.2f} median of 3",
        ),
        ("goal, s", "< 60"),
        (
            "detectable pits recovered (>= 80% complete, >= 80% pure)",
            f"{sc['recovery']:.3f} ({sc['n_recovered']}/{sc['n_detectable']})",
        ),
        ("tracks per detectable pit", f"{sc['tracks_per_pit']:.2f}"),
        ("aux+ agreement with ground truth (recovered pits)", f"{agree:.3f}"),
    ]
    lines = [
        "# Molecular-partner tracking benchmark",
        "",
        "One simulated cell (`SimulationConfig()` defaults, seed 2024), tracked from the TIFF",
        "file by `molecular_partner.track_movie`. Produced by",
        "`bench/molecular_partner_tracking.py`.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python "
        f"{platform.python_version()}.",
        "",
        "| quantity | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in rows],
        "",
    ]
    OUT.mkdir(parents=True, exist_ok=True)
    target = OUT / "molecular_partner_tracking.md"
    fd, tmp = tempfile.mkstemp(dir=OUT, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines))
    os.replace(tmp, target)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
