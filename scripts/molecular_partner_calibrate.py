"""Calibrate the molecular-partner simulator on the baselines only.

simulate cells -> build the data set (split by cell, the last two cells held out, as in
the committed run) -> train the LSTM teacher of the regression outcome with the committed
run's teacher settings -> fit the baselines on all training cells and score the test
cells once, with bootstrap SDs: db5 top 6 per scale + OLS, hand features (lifetime, peak
amplitude, rise time) + OLS, the same hand features + xgboost (size and depth by
cross-validation grouped by cell, as ``evaluate`` chooses them).

No wavelet is distilled and no AWD student is fitted or scored: the simulator is tuned
against published relations between baselines (LSTM R² about 0.24, db5 top-6 + OLS about
0.83 times the LSTM, gradient boosting on hand features at or above the LSTM) without
looking at the method under test.

Usage::

    python scripts/molecular_partner_calibrate.py --seed 1 --out calib.json
    python scripts/molecular_partner_calibrate.py --physics v1 --seed 1 --out v1.json
    python scripts/molecular_partner_calibrate.py --sim productive_lifetime_mean_s=60 ...
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from molecular_partner.config import CONFIGS, OUTCOMES, load_config
from molecular_partner.data import (
    build_dataset,
    calibration_statistics,
    load_tracks,
    write_dataset,
)
from molecular_partner.pipeline import read_run_data
from molecular_partner.simulate import SimulationConfig, simulate_cells
from molecular_partner.student import (
    HandFeatures,
    TopCoefficients,
    grouped_cv_score,
    make_linear,
    make_xgboost,
    shape_ratios,
    xgboost_grid,
)
from molecular_partner.teacher import predict, train_teacher
from shared import DWT1d
from shared.evaluation import auc, bootstrap_draws, bootstrap_sd, paired_difference, r2
from shared.runs import environment_info, write_json

ROOT = Path(__file__).resolve().parents[1]
CONFIG = CONFIGS / "simulated.yaml"

logger = logging.getLogger("mp-calibrate")


def _sim_config(args: argparse.Namespace) -> SimulationConfig:
    fields = {f.name for f in dataclasses.fields(SimulationConfig)}
    kwargs: dict = {"n_pits": args.n_pits}
    if args.physics is not None:
        kwargs["physics"] = args.physics
    for item in args.sim:
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"--sim {item}: SimulationConfig has no field {key!r}")
        parsed = yaml.safe_load(value)
        kwargs[key] = tuple(parsed) if isinstance(parsed, list) else parsed
    return SimulationConfig(**kwargs)


def _simulate(args: argparse.Namespace, seed: int, work: Path) -> tuple[dict, dict, list[str]]:
    cfg = _sim_config(args)
    simulate_cells(args.n_cells, cfg, seed=seed, out_dir=work / "sim", movies=False)
    tracks = load_tracks([work / "sim" / "tracks.parquet"])
    test_cells = [f"cell{args.n_cells - 1}", f"cell{args.n_cells}"]
    ds = build_dataset(tracks, test_cells=test_cells, seed=seed)
    write_dataset(ds, work / "data")
    return dataclasses.asdict(cfg), {"meta": ds.meta, **calibration_statistics(tracks)}, test_cells


def _teacher(data, cfg, seeds: list[int]) -> tuple[list[np.ndarray], list[dict]]:
    x, is_val = data.traces("train"), data.is_val
    y = data.train[OUTCOMES["regression"]].to_numpy(dtype=np.float32)
    x_te = data.traces("test")
    preds, records = [], []
    for seed in seeds:
        settings = dataclasses.replace(cfg.teacher, seed=seed)
        tic = time.perf_counter()
        model, history = train_teacher(
            x[~is_val], y[~is_val], settings, loss="mse", x_val=x[is_val], y_val=y[is_val]
        )
        p_val = predict(model, x[is_val])
        records.append(
            {
                "seed": seed,
                "epochs_run": len(history),
                "val_r2": r2(y[is_val].astype(np.float64), p_val.astype(np.float64)),
                "seconds": time.perf_counter() - tic,
            }
        )
        preds.append(predict(model, x_te).astype(np.float64))
    return preds, records


def _xgboost(f_tr, y_tr, f_te, groups, s) -> tuple[np.ndarray, dict, list[dict]]:
    """xgboost with its size and depth chosen by grouped CV on the training cells."""
    best, grid = xgboost_grid(
        f_tr,
        y_tr,
        groups,
        "regression",
        estimators=s.xgb_estimators,
        depths=s.xgb_depths,
        learning_rate=s.xgb_learning_rate,
        seed=s.seed,
        folds=s.cv_folds,
    )
    xgb = make_xgboost(
        "regression", best["n_estimators"], best["max_depth"], s.xgb_learning_rate, s.seed
    )
    return xgb.fit(f_tr, y_tr).predict(f_te).astype(np.float64), best, grid


def _baselines(data, cfg, shape: bool = False) -> tuple[dict[str, np.ndarray], dict]:
    s = cfg.evaluate
    y_tr = data.train[OUTCOMES["regression"]].to_numpy(dtype=np.float64)
    groups = data.train["cell"].astype(str).to_numpy()
    x_tr, x_te = data.traces("train"), data.traces("test")
    feats = TopCoefficients(DWT1d("db5", 4, "zero"), k=s.top_k, length=x_tr.shape[1])
    hand = HandFeatures().fit(data.train)
    h_tr, h_te = hand(data.train), hand(data.test)
    f_tr, f_te = feats(x_tr), feats(x_te)
    cv = {
        "db5": grouped_cv_score(
            lambda: make_linear("regression"), f_tr, y_tr, groups, "regression", s.cv_folds
        ),
        "hand_features": grouped_cv_score(
            lambda: make_linear("regression"), h_tr, y_tr, groups, "regression", s.cv_folds
        ),
    }
    xgb_pred, best, grid = _xgboost(h_tr, y_tr, h_te, groups, s)
    cv["hand_features_xgboost"] = best["cv_score"]
    preds = {
        "db5": make_linear("regression").fit(f_tr, y_tr).predict(f_te),
        "hand_features": make_linear("regression").fit(h_tr, y_tr).predict(h_te),
        "hand_features_xgboost": xgb_pred,
    }
    selection = {"cv_r2": cv, "xgboost_choice": best, "xgboost_grid": grid}
    if shape:
        # The three hand features and how each track begins and ends against its peak
        # (shape_ratios; xgboost takes their NaN for short tracks as missing).
        sh_tr = np.hstack([h_tr, shape_ratios(data.train).to_numpy(dtype=np.float64)])
        sh_te = np.hstack([h_te, shape_ratios(data.test).to_numpy(dtype=np.float64)])
        pred, best, grid = _xgboost(sh_tr, y_tr, sh_te, groups, s)
        preds["hand_shape_features_xgboost"] = pred
        cv["hand_shape_features_xgboost"] = best["cv_score"]
        selection["xgboost_choice_with_shape"] = best
        selection["xgboost_grid_with_shape"] = grid
    return preds, selection


def _scores(y: np.ndarray, y_bin: np.ndarray, preds: dict[str, np.ndarray], n_boot: int) -> dict:
    """R² with bootstrap SD, paired differences against the teacher, and the AUC of the
    same regression predictions for the binary outcome (as the reference scored its one
    LSTM on both)."""
    draws = bootstrap_draws(len(y), n_boot, 0)
    out: dict = {"r2": {}, "paired_vs_teacher": {}, "auc_of_regression": {}}
    for name, p in preds.items():
        out["r2"][name] = {"value": r2(y, p), "sd": bootstrap_sd(r2, y, p, draws)}
        out["auc_of_regression"][name] = auc(y_bin, p)
        if name != "teacher":
            diff, sd = paired_difference(r2, y, p, preds["teacher"], draws)
            out["paired_vs_teacher"][name] = {"diff": diff, "sd": sd}
    out["ratio_db5_teacher"] = out["r2"]["db5"]["value"] / out["r2"]["teacher"]["value"]
    return out


def _one_seed(args: argparse.Namespace, seed: int) -> dict:
    """Simulate, build, train and score with simulation seed ``seed``."""
    work = args.work / args.out.stem / f"seed{seed}"
    seconds: dict[str, float] = {}
    tic = time.perf_counter()
    sim, stats, test_cells = _simulate(args, seed, work)
    seconds["simulate_and_build"] = time.perf_counter() - tic
    cfg = load_config(CONFIG)
    data = read_run_data(work / "data", cfg)
    y = data.test[OUTCOMES["regression"]].to_numpy(dtype=np.float64)
    y_bin = data.test[OUTCOMES["binary"]].to_numpy(dtype=np.float64).astype(int)
    step = time.perf_counter()
    teacher_preds, teachers = _teacher(data, cfg, args.teacher_seeds)
    seconds["teacher"] = time.perf_counter() - step
    step = time.perf_counter()
    preds, selection = _baselines(data, cfg, args.shape_features)
    seconds["baselines"] = time.perf_counter() - step
    per_teacher = [
        _scores(y, y_bin, {"teacher": p, **preds}, args.n_bootstrap) for p in teacher_preds
    ]
    seconds["total"] = time.perf_counter() - tic
    sc = per_teacher[0]
    logger.info(
        "seed %d: R2 teacher %.3f, db5 %.3f (ratio %.2f), hand OLS %.3f, hand xgboost %.3f; %.0f s",
        seed,
        sc["r2"]["teacher"]["value"],
        sc["r2"]["db5"]["value"],
        sc["ratio_db5_teacher"],
        sc["r2"]["hand_features"]["value"],
        sc["r2"]["hand_features_xgboost"]["value"],
        seconds["total"],
    )
    return {
        "seed": seed,
        "test_cells": test_cells,
        "n_train": len(data.train),
        "n_test": len(data.test),
        "simulation": sim,
        "statistics": {k: v for k, v in stats.items() if k != "meta"},
        "dataset_meta": stats["meta"],
        "teachers": teachers,
        "baseline_selection": selection,
        "scores": sc,
        "scores_per_teacher_seed": per_teacher,
        "seconds": seconds,
    }


def _summary(runs: list[dict]) -> dict:
    """Mean and SD over simulation seeds of every R², of the ratio and of the statistics."""
    out: dict = {"r2": {}, "paired_vs_teacher": {}}
    for name in runs[0]["scores"]["r2"]:
        values = [r["scores"]["r2"][name]["value"] for r in runs]
        sds = [r["scores"]["r2"][name]["sd"] for r in runs]
        out["r2"][name] = {
            "mean": float(np.mean(values)),
            "sd_over_seeds": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "mean_bootstrap_sd": float(np.mean(sds)),
        }
        if name != "teacher":
            diffs = [r["scores"]["paired_vs_teacher"][name]["diff"] for r in runs]
            out["paired_vs_teacher"][name] = {
                "mean_diff": float(np.mean(diffs)),
                "sd_over_seeds": float(np.std(diffs, ddof=1)) if len(diffs) > 1 else None,
            }
        out.setdefault("auc_of_regression", {})[name] = float(
            np.mean([r["scores"]["auc_of_regression"][name] for r in runs])
        )
    ratios = [r["scores"]["ratio_db5_teacher"] for r in runs]
    out["ratio_db5_teacher"] = {
        "of_means": out["r2"]["db5"]["mean"] / out["r2"]["teacher"]["mean"],
        "mean": float(np.mean(ratios)),
    }
    out["statistics"] = {
        k: float(np.mean([r["statistics"][k] for r in runs])) for k in runs[0]["statistics"]
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "mp_calibration")
    parser.add_argument("--out", type=Path, required=True, help="JSON file of the numbers.")
    parser.add_argument("--n-cells", type=int, default=8)
    parser.add_argument("--n-pits", type=int, default=1200)
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[1],
        help="Simulation seeds (0 made the committed run).",
    )
    parser.add_argument("--physics", default=None, help="SimulationConfig.physics.")
    parser.add_argument(
        "--sim", action="append", default=[], help="SimulationConfig field=value (repeatable)."
    )
    parser.add_argument("--teacher-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--shape-features",
        action="store_true",
        help="Also xgboost on the hand features plus four shape ratios of each track "
        "(hand_shape_features_xgboost).",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    tic = time.perf_counter()
    runs = [_one_seed(args, seed) for seed in args.seeds]
    summary = _summary(runs)
    command = [
        "python scripts/molecular_partner_calibrate.py",
        "--seeds " + " ".join(map(str, args.seeds)),
        f"--n-cells {args.n_cells}",
        f"--n-pits {args.n_pits}",
        *([f"--physics {args.physics}"] if args.physics else []),
        *[f"--sim {s}" for s in args.sim],
        "--teacher-seeds " + " ".join(map(str, args.teacher_seeds)),
        *(["--shape-features"] if args.shape_features else []),
        f"--out {args.out.name}",
    ]
    record = {
        "command": " ".join(command),
        "seeds": args.seeds,
        "n_cells": args.n_cells,
        "n_pits_per_cell": args.n_pits,
        "summary": summary,
        "runs": runs,
        "seconds": time.perf_counter() - tic,
        "environment": environment_info(args.seeds[0]),
    }
    write_json(args.out, record)
    r = summary["r2"]
    logger.info(
        "mean over %d seed(s): teacher %.3f, db5 %.3f (ratio %.2f), hand OLS %.3f, "
        "hand xgboost %.3f; %.0f s",
        len(runs),
        r["teacher"]["mean"],
        r["db5"]["mean"],
        summary["ratio_db5_teacher"]["of_means"],
        r["hand_features"]["mean"],
        r["hand_features_xgboost"]["mean"],
        record["seconds"],
    )
    if "hand_shape_features_xgboost" in r:
        logger.info(
            "hand + shape ratios + xgboost %.3f (paired vs teacher %+.3f)",
            r["hand_shape_features_xgboost"]["mean"],
            summary["paired_vs_teacher"]["hand_shape_features_xgboost"]["mean_diff"],
        )


if __name__ == "__main__":
    main()
