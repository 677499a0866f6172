"""The standard cosmology evaluation, end to end, and its committed results.

Simulates the ten AWD cosmologies (128^2 maps over 3.5 deg, LSST-like shape noise
n_gal = 30 / arcmin^2, sigma_e = 0.26, 1' Gaussian smoothing), trains the small CNN
teacher, distils the lambda x gamma grid, evaluates every student and baseline (selection
on validation only) and writes the report; then copies the small outputs (metrics,
tables, report, PNGs) to ``results/cosmology/<name>/``. Every step resumes: rerunning
the same command skips finished work.

Variants: ``--noiseless`` (the paper-faithful, shortcut-prone setting) and ``--design
lhs`` (a Latin hypercube, for the continuous students).

Examples
--------
Full size (about an hour on a few CPU cores)::

    python scripts/cosmology_ten_cosmologies.py

A quick look (minutes)::

    python scripts/cosmology_ten_cosmologies.py --n-maps 100 --name quick
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

from cosmology.config import CONFIGS
from cosmology.cosmologies import design_lhs, design_ten
from cosmology.evaluate import run_evaluate
from cosmology.noise import ShapeNoise
from cosmology.pipeline import load_splits, run_distill, run_train_teacher, start_run
from cosmology.report import write_report
from cosmology.simulate import simulate_dataset
from shared.runs import write_json

logger = logging.getLogger("cosmology_ten_cosmologies")

CONFIG = CONFIGS / "ten_cosmologies.yaml"
RESULT_FILES = ("metrics.csv", "comparisons.csv", "metrics.md", "selection.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", default=None, help="Run name (default from the variant).")
    ap.add_argument("--n-maps", type=int, default=1000, help="Maps per cosmology.")
    ap.add_argument("--size", type=int, default=128, help="Map size in pixels.")
    ap.add_argument("--design", default="ten", help="'ten' or 'lhs'.")
    ap.add_argument("--n-cosmologies", type=int, default=50, help="Cosmologies of --design lhs.")
    ap.add_argument("--noiseless", action="store_true", help="No shape noise, no smoothing.")
    ap.add_argument("--work", type=Path, default=Path("runs/cosmology"), help="Maps and runs.")
    ap.add_argument("--results", type=Path, default=Path("results/cosmology"))
    ap.add_argument("--results-name", default=None, help="Folder under --results (default --name).")
    ap.add_argument(
        "--force",
        action="store_true",
        help="Redo the steps whose settings changed, removing results made from the old ones.",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="Simulation processes.")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="Config override section.key=value (repeatable), e.g. distill.n_maps=300.",
    )
    args = ap.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    variant = "noiseless" if args.noiseless else "noisy"
    name = args.name or (
        "ten_cosmologies"
        if args.design == "ten" and not args.noiseless
        else f"{args.design}_{variant}"
    )
    data_root = args.work / "data" / f"{args.design}_{variant}_{args.size}"
    run_dir = args.work / name
    times: dict[str, float] = {}

    tic = time.perf_counter()
    design = (
        design_ten(include_neutrinos=True)
        if args.design == "ten"
        else design_lhs(args.n_cosmologies, seed=args.seed)
    )
    simulate_dataset(
        data_root,
        design,
        n_maps=args.n_maps,
        n_pix=args.size,
        side_angle_deg=3.5,
        z_s=1.0,
        noise=None if args.noiseless else ShapeNoise(sigma_e=0.26, n_gal=30.0),
        smoothing_arcmin=None if args.noiseless else 1.0,
        seed=args.seed,
        workers=args.workers,
    )
    times["simulate"] = time.perf_counter() - tic

    run, cfg = start_run(run_dir, data_root, CONFIG, args.overrides)
    tic = time.perf_counter()
    splits = load_splits(run.data_path, cfg)
    times["load"] = time.perf_counter() - tic

    tic = time.perf_counter()
    # Kept when trained with these settings on these data; refused (or, with --force,
    # redone) when they differ.
    run_train_teacher(run, cfg, resume=True, splits=splits, force=args.force)
    times["teacher"] = time.perf_counter() - tic

    tic = time.perf_counter()
    run_distill(run, cfg, splits=splits, force=args.force)
    times["distill"] = time.perf_counter() - tic

    tic = time.perf_counter()
    run_evaluate(run, cfg, splits=splits, force=args.force)
    times["evaluate"] = time.perf_counter() - tic

    tic = time.perf_counter()
    write_report(run.root)
    times["report"] = time.perf_counter() - tic

    dest = args.results / (args.results_name or name)
    dest.mkdir(parents=True, exist_ok=True)
    for f in RESULT_FILES:
        shutil.copyfile(run_dir / "evaluate" / f, dest / f)
    for f in (run_dir / "report").iterdir():
        if f.suffix in (".png", ".html", ".csv"):
            shutil.copyfile(f, dest / f.name)
    shutil.copyfile(run_dir / "config.yaml", dest / "config.yaml")
    shutil.copyfile(run_dir / "env.json", dest / "env.json")
    shutil.copyfile(run_dir / "teacher" / "history.json", dest / "teacher_history.json")
    shutil.copyfile(run_dir / "distill" / "grid.json", dest / "distill_grid.json")
    # The filters of the selected grid points, for `awd figures`.
    selection = json.loads((run_dir / "evaluate" / "selection.json").read_text())["selection"]
    (dest / "wavelets").mkdir(exist_ok=True)
    for method in ("awd", "awd_gamma0"):
        point = selection.get(method, {}).get("wavelet")
        if point is None:
            continue
        for suffix in (".safetensors", ".json"):
            src = run_dir / "distill" / point / f"wavelet{suffix}"
            shutil.copyfile(src, dest / "wavelets" / f"{method}{suffix}")
    write_json(
        dest / "run_summary.json",
        {
            "n_maps_per_cosmology": args.n_maps,
            "size": args.size,
            "design": args.design,
            "noiseless": args.noiseless,
            "seconds": times,
            "overrides": args.overrides,
        },
    )
    logger.info("results copied to %s; step seconds %s", dest, times)


if __name__ == "__main__":
    main()
