"""Would any wavelet bring the chosen cosmology student to the CNN? An oracle experiment.

The student chosen on validation in the standard evaluation (the wavelet l1-norm of each
band through a TaylorNet) is fitted on the training maps of a finished cosmology run with
every distilled grid point (gamma > 0) and with every orthogonal wavelet PyWavelets ships
up to ``--max-taps`` taps (Daubechies, symlets, coiflets; the run's levels and boundary
mode). Its channels and weight decay are chosen on the validation maps as in the
evaluation; the test maps are scored once per wavelet. Picking the wavelet by its **test**
RMSE is an oracle, not a model selection: it bounds what the best wavelet of the family, or
the best point of the grid, could have shown against the teacher with this student. Every
test RMSE is paired with the teacher's and with db5's over the evaluation's own bootstrap
resamples.

Example::

    python scripts/cosmology_wavelet_oracle.py --run RUN --out FOLDER
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cosmology.config import load_config
from cosmology.evaluate import PARAMETERS, context
from cosmology.student import WaveletL1Features, band_names
from cosmology.taylor import _factory
from cosmology.teacher import predict
from shared import DWT2d
from shared.evaluation import bootstrap_draws, mean_scaled_rmse, paired_difference, rmse
from shared.runs import RunDir, write_csv, write_json
from shared.wavelet import orthogonal_names

logger = logging.getLogger("cosmology-wavelet-oracle")


def candidate_wavelets(max_taps: int) -> list[str]:
    """PyWavelets' orthogonal wavelets (db, sym, coif) with at most ``max_taps`` taps; haar,
    sym2 and sym3 (equal to db1, db2 and db3) are left out."""
    return [n for n in orthogonal_names(max_taps) if n not in ("haar", "sym2", "sym3")]


def oracle_rows(run_dir: Path, max_taps: int) -> tuple[list[dict], dict]:
    run = RunDir.open(run_dir, "cosmology")
    cfg = load_config(run.root / "config.yaml")
    ctx = context(run, cfg)
    s, d, e = cfg.student, cfg.distill, cfg.evaluate
    transforms = {p["point"]: ctx.transforms[p["point"]] for p in ctx.grid if p["l1_attr"] > 0}
    kinds = dict.fromkeys(transforms, "grid point")
    for name in candidate_wavelets(max_taps):
        transforms[name] = DWT2d(name, levels=d.levels, mode=d.mode)
        kinds[name] = "pywavelets"
    ytr, yva, yte = ctx.targets("train"), ctx.targets("val"), ctx.targets("test")
    draws = bootstrap_draws(len(yte), e.n_bootstrap, e.bootstrap_seed)
    teacher = predict(ctx.teacher, ctx.maps("test"))
    preds: dict[str, np.ndarray] = {}
    chosen: dict[str, dict] = {}
    for name, transform in transforms.items():
        tic = time.perf_counter()
        feats = WaveletL1Features(transform, s.l1_bins, s.l1_coverage).fit(ctx.maps("train"))
        Xtr, Xva, Xte = (feats.transform(ctx.maps(split)) for split in ("train", "val", "test"))
        n_bands = len(band_names(transform.levels))
        best = None
        for channels in s.taylornet_channels:
            for wd in s.taylornet_weight_decays:
                model = _factory(ctx, n_bands, channels, wd)().fit(Xtr, ytr)
                score = mean_scaled_rmse(model.predict(Xva), yva, ctx.scale)
                if np.isfinite(score) and (best is None or score < best[0]):
                    best = (score, channels, wd, model)
        if best is None:
            logger.warning("%s: no TaylorNet setting gave finite predictions", name)
            continue
        score, channels, wd, model = best
        preds[name] = model.predict(Xte)
        chosen[name] = {"val_score": score, "channels": channels, "weight_decay": wd}
        logger.info("%s: val %.4f (%.0f s)", name, score, time.perf_counter() - tic)
    rows = []
    for name, p in preds.items():
        row = {"wavelet": name, "kind": kinds[name], "taps": len(transform_taps(transforms[name]))}
        row.update(chosen[name])
        for j, target in enumerate(PARAMETERS):
            row[f"test_rmse_{target}"] = rmse(yte[:, j], p[:, j])
            for other, ref in (("teacher", teacher), ("db5", preds.get("db5"))):
                if ref is None:
                    continue
                diff, sd = paired_difference(rmse, yte[:, j], p[:, j], ref[:, j], draws)
                row[f"{target}_minus_{other}"] = diff
                row[f"{target}_sd_{other}"] = sd
        rows.append(row)
    rows.sort(key=lambda r: r["test_rmse_omega_m"])
    summary: dict = {
        "run": run_dir.name,
        "n_test": len(yte),
        "split": "the run's split by realization: channels and weight decay chosen on the "
        "validation maps, RMSE on the test maps",
        "student": f"wavelet l1-norm ({s.l1_bins} bins per band) · TaylorNet",
        "teacher_test_rmse": {t: rmse(yte[:, j], teacher[:, j]) for j, t in enumerate(PARAMETERS)},
        "n_pywavelets": sum(r["kind"] == "pywavelets" for r in rows),
        "n_grid_points": sum(r["kind"] == "grid point" for r in rows),
    }
    for kind in ("pywavelets", "grid point"):
        of_kind = [r for r in rows if r["kind"] == kind]
        for target in PARAMETERS:
            key = f"best_on_test_{kind.replace(' ', '_')}_{target}"
            summary[key] = min(of_kind, key=lambda r, t=target: r[f"test_rmse_{t}"])
        summary[f"best_on_val_{kind.replace(' ', '_')}"] = min(
            of_kind, key=lambda r: r["val_score"]
        )
    return rows, summary


def transform_taps(transform) -> torch.Tensor:
    return transform.wavelet.h0.detach().reshape(-1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="A finished cosmology run.")
    ap.add_argument("--out", type=Path, required=True, help="Folder for the two files.")
    ap.add_argument("--max-taps", type=int, default=20, help="Longest filter tried.")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rows, summary = oracle_rows(args.run, args.max_taps)
    write_csv(args.out / "oracle_wavelets.csv", rows)
    write_json(args.out / "oracle_wavelets.json", summary)
    for r in rows[:8]:
        print(
            f"{r['wavelet']:<22} {r['kind']:<11} val {r['val_score']:.4f} "
            f"Ωm {r['test_rmse_omega_m']:.5f} ({r['omega_m_minus_teacher']:+.5f} ± "
            f"{r['omega_m_sd_teacher']:.5f} vs teacher) σ8 {r['test_rmse_sigma_8']:.5f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
