"""The committed molecular-partner run on simulated cells, end to end.

simulate 8 cells -> build the data set (split by cell) -> train the LSTM teachers (MSE for
the regression outcome, BCE for the binary) -> distil the lambda x gamma grid with warm
starts along gamma -> evaluate every student and baseline (selection by grouped CV on
training cells only) -> report. The work directory keeps every run directory; the small
outputs are copied to ``results/molecular_partner/simulated``.

Usage::

    python scripts/molecular_partner_simulated.py            # about 40 min on one thread
    python scripts/molecular_partner_simulated.py --quick    # a smoke run in a minute
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

import torch

from molecular_partner.config import CONFIGS
from molecular_partner.data import build_dataset, load_tracks, write_dataset
from molecular_partner.evaluate import run_evaluate
from molecular_partner.pipeline import run_distill, run_train_teacher, start_run
from molecular_partner.report import write_report
from molecular_partner.simulate import SimulationConfig, simulate_cells
from shared.runs import environment_info, write_json

ROOT = Path(__file__).resolve().parents[1]
CONFIG = CONFIGS / "simulated.yaml"
#: What is copied from the run's evaluate/ and report/ folders.
COPIED = {
    "evaluate": (
        "metrics.csv",
        "comparisons.csv",
        "selection.csv",
        "methods.json",
        "predictions.csv",
    ),
    "report": (
        "results.md",
        "report.html",
        "wavelets.png",
        "examples.png",
        "importance.png",
        "pred_vs_true.png",
        "selection.png",
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work",
        type=Path,
        help="Work folder (default runs/molecular_partner_simulated, _<physics> after it "
        "for a physics other than v1).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="Results folder (default results/molecular_partner/simulated, "
        "simulated_<physics> for a physics other than v1).",
    )
    parser.add_argument("--n-cells", type=int, default=8)
    parser.add_argument("--n-pits", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--physics",
        default="v1",
        help="Simulator physics (molecular_partner.simulate.PHYSICS); v1 made the committed run.",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="Tiny settings, for a smoke run.")
    parser.add_argument(
        "--force",
        action="store_true",
        help="Redo the steps whose settings changed, removing results made from the old ones.",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="Config override section.key=value (repeatable).",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # One thread: the machine is shared, and timings compare single-threaded pipelines.
    torch.set_num_threads(args.threads)
    # Each physics has its own folders: a v2 run never overwrites the committed v1 one.
    tail = "" if args.physics == "v1" else f"_{args.physics}"
    work = args.work or ROOT / "runs" / f"molecular_partner_simulated{tail}"
    out = args.out or ROOT / "results" / "molecular_partner" / f"simulated{tail}"
    tic = time.perf_counter()
    overrides = list(args.overrides)
    if args.quick:
        overrides += [
            "teacher.epochs=5",
            "distill.train.epochs=2",
            "distill.lambdas=[0.001]",
            "distill.gammas=[0,0.01]",
            "evaluate.n_bootstrap=50",
            "evaluate.xgb_estimators=[50]",
        ]
    n_cells = args.n_cells
    test_cells = [f"cell{n_cells - 1}", f"cell{n_cells}"]  # the reference holds out 2 of 8 cells
    simulate_cells(
        n_cells,
        SimulationConfig(n_pits=args.n_pits, physics=args.physics),
        seed=args.seed,
        out_dir=work / "sim",
        movies=False,
    )
    tracks = load_tracks([work / "sim" / "tracks.parquet"])
    write_dataset(build_dataset(tracks, test_cells=test_cells, seed=args.seed), work / "data")
    run, cfg = start_run(work / "run", work / "data", CONFIG, overrides)
    # Seconds of each step in this invocation; a step kept from an earlier one (its
    # settings and inputs unchanged) takes about none, and its own time is in its record.
    steps: dict[str, float] = {}
    step_tic = time.perf_counter()
    run_train_teacher(run, cfg, force=args.force)  # kept when its settings are unchanged
    steps["teacher"] = time.perf_counter() - step_tic
    for name, step in (
        ("distill", lambda: run_distill(run, cfg, force=args.force)),
        ("evaluate", lambda: run_evaluate(run, cfg, force=args.force)),
        ("report", lambda: write_report(run.root)),
    ):
        step_tic = time.perf_counter()
        step()
        steps[name] = time.perf_counter() - step_tic

    out.mkdir(parents=True, exist_ok=True)
    for step, names in COPIED.items():
        for name in names:
            shutil.copy2(run.root / step / name, out / name)
    (out / "wavelets").mkdir(exist_ok=True)
    for name in ("awd", "awd_gamma0"):
        for suffix in (".safetensors", ".json"):
            src = run.root / "evaluate" / "wavelets" / f"{name}{suffix}"
            if src.exists():
                shutil.copy2(src, out / "wavelets" / f"{name}{suffix}")
    shutil.copy2(work / "data" / "meta.json", out / "dataset_meta.json")
    shutil.copy2(run.root / "distill" / "grid.json", out / "grid.json")
    shutil.copy2(run.root / "teacher" / "metrics.json", out / "teacher_metrics.json")
    shutil.copy2(run.root / "config.yaml", out / "config.yaml")
    write_json(
        out / "run.json",
        {
            "command": "python scripts/molecular_partner_simulated.py"
            + (" --quick" if args.quick else "")
            + (f" --physics {args.physics}" if args.physics != "v1" else ""),
            "physics": args.physics,
            "n_cells": n_cells,
            "n_pits_per_cell": args.n_pits,
            "seed": args.seed,
            "test_cells": test_cells,
            "threads": args.threads,
            "overrides": overrides,
            "seconds": time.perf_counter() - tic,
            "step_seconds": steps,
            "environment": environment_info(args.seed),
        },
    )
    logging.getLogger("mp-script").info("done in %.0f s -> %s", time.perf_counter() - tic, out)


if __name__ == "__main__":
    main()
