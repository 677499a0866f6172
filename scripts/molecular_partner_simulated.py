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

from shared.cli import _register_domains, app
from shared.runs import environment_info, write_json

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "molecular_partner" / "configs" / "simulated.yaml"
COPIED = (
    "metrics.csv",
    "results.md",
    "report.html",
    "wavelets.png",
    "examples.png",
    "importance.png",
    "pred_vs_true.png",
    "selection.png",
    "selection.csv",
    "methods.json",
    "predictions.csv",
)


def _run(*args: object) -> None:
    logging.getLogger("mp-script").info("awd molecular-partner %s", " ".join(map(str, args)))
    app(["molecular-partner", *map(str, args)], standalone_mode=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "molecular_partner_simulated")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "results" / "molecular_partner" / "simulated"
    )
    parser.add_argument("--n-cells", type=int, default=8)
    parser.add_argument("--n-pits", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="Tiny settings, for a smoke run.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # One thread: the machine is shared, and timings compare single-threaded pipelines.
    torch.set_num_threads(args.threads)
    _register_domains()
    work, tic = args.work, time.perf_counter()
    quick = []
    if args.quick:
        quick = [
            "--set", "teacher.epochs=5", "--set", "distill.epochs=2",
            "--set", "distill.lambdas=0.001", "--set", "distill.gammas=0,0.01",
            "--set", "evaluate.n_bootstrap=50", "--set", "evaluate.xgb_estimators=50",
        ]  # fmt: skip
    cfg = ["--config", CONFIG, *quick]
    n_cells = args.n_cells
    test_cells = f"cell{n_cells - 1},cell{n_cells}"  # the reference holds out 2 of 8 cells
    _run(
        "simulate", "--out", work / "sim", "--n-cells", n_cells, "--n-pits", args.n_pits,
        "--seed", args.seed, "--no-movies",
    )  # fmt: skip
    _run(
        "build-dataset", work / "sim" / "tracks.parquet", "--out", work / "data",
        "--test-cells", test_cells, "--seed", args.seed,
    )  # fmt: skip
    _run("train-teacher", work / "data", "--out", work / "teacher", *cfg)
    _run("train-teacher", work / "data", "--out", work / "teacher_bin", "--outcome", "binary", *cfg)
    _run("distill", work / "data", "--teacher", work / "teacher", "--out", work / "distill", *cfg)
    _run(
        "evaluate", work / "data", "--teacher", work / "teacher", "--teacher-binary",
        work / "teacher_bin", "--distilled", work / "distill", "--out", work / "evaluate", *cfg,
    )  # fmt: skip
    _run("report", work / "evaluate")

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        shutil.copy2(work / "evaluate" / name, out / name)
    (out / "wavelets").mkdir(exist_ok=True)
    for name in ("awd", "awd_gamma0"):
        for suffix in (".safetensors", ".json"):
            src = work / "evaluate" / "wavelets" / f"{name}{suffix}"
            if src.exists():
                shutil.copy2(src, out / "wavelets" / f"{name}{suffix}")
    shutil.copy2(work / "data" / "meta.json", out / "dataset_meta.json")
    shutil.copy2(work / "distill" / "grid.json", out / "grid.json")
    shutil.copy2(work / "teacher" / "metrics.json", out / "teacher_metrics.json")
    shutil.copy2(CONFIG, out / "config.yaml")
    write_json(
        out / "run.json",
        {
            "command": "python scripts/molecular_partner_simulated.py"
            + (" --quick" if args.quick else ""),
            "n_cells": n_cells,
            "n_pits_per_cell": args.n_pits,
            "seed": args.seed,
            "test_cells": test_cells.split(","),
            "threads": args.threads,
            "seconds": time.perf_counter() - tic,
            "environment": environment_info(args.seed),
        },
    )
    logging.getLogger("mp-script").info("done in %.0f s -> %s", time.perf_counter() - tic, out)


if __name__ == "__main__":
    main()
