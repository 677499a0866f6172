"""How much room above db5 does any wavelet leave the paper's student? An oracle experiment.

The paper's student (the top values of each scale, then OLS) is fitted on the training
cells of a finished molecular-partner run with every orthogonal wavelet PyWavelets ships
(Daubechies, symlets, coiflets; the run's levels and boundary mode) and with every point of
the run's distilled grid, then scored on the test cells. Choosing the wavelet by its
**test** score is an oracle, not a model selection: it bounds what the best wavelet of
that family, or the best grid point, could have shown. The grouped-CV score on the training
cells (the run's own selection rule) is written beside it. Every test score is paired with
db5's, and with the LSTM teacher's, over the same bootstrap resamples of the test traces
the evaluation uses.

Example::

    python scripts/molecular_partner_wavelet_oracle.py --run RUN \\
        --out results/molecular_partner/simulated_v2/oracle_wavelets
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from molecular_partner.config import load_config
from molecular_partner.evaluate import _teacher_scored, context
from molecular_partner.student import TopCoefficients, grouped_cv_score, make_linear
from shared import DWT1d
from shared.evaluation import bootstrap_draws, paired_difference, r2
from shared.runs import RunDir, write_csv, write_json
from shared.wavelet import orthogonal_names

KIND = "regression"


def candidate_wavelets(length_limit: int) -> list[str]:
    """PyWavelets' orthogonal wavelets (db, sym, coif) with at most ``length_limit`` taps."""
    return [n for n in orthogonal_names(length_limit) if n != "haar"]  # haar is db1


def oracle_rows(run_dir: Path, length_limit: int) -> tuple[list[dict], dict]:
    run = RunDir.open(run_dir, "molecular-partner")
    cfg = load_config(run.root / "config.yaml")
    ctx = context(run, cfg)
    if KIND not in ctx.kinds:
        raise SystemExit(f"error: {run_dir}: the run has no regression outcome")
    grid = [n for n in ctx.transforms if n != "db5"]
    first = ctx.transforms["db5"]
    for name in candidate_wavelets(length_limit):
        if name != "db5":
            ctx.transforms[name] = DWT1d(name, levels=first.levels, mode=first.mode)
    s = ctx.s
    y_tr, y_te = ctx.y(KIND, "train"), ctx.y(KIND, "test")
    draws = bootstrap_draws(ctx.n_test, s.n_bootstrap, s.seed)
    preds: dict[str, np.ndarray] = {}
    cv: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for name, transform in ctx.transforms.items():
        try:
            feats = TopCoefficients(transform, k=s.top_k, length=ctx.x_tr.shape[1])
        except ValueError as err:  # a band shorter than top_k (the shortest filters)
            skipped[name] = str(err)
            continue
        f_tr, f_te = feats(ctx.x_tr), feats(ctx.x_te)
        model = make_linear(KIND).fit(f_tr, y_tr)
        preds[name] = model.predict(f_te)
        cv[name] = grouped_cv_score(
            lambda: make_linear(KIND), f_tr, y_tr, ctx.groups, KIND, s.cv_folds
        )
    for name in skipped:
        del ctx.transforms[name]
    teacher = _teacher_scored(ctx, KIND)
    rows = []
    for name, p in preds.items():
        diff, sd = paired_difference(r2, y_te, p, preds["db5"], draws)
        vs_teacher = (
            paired_difference(r2, y_te, p, teacher.pred, draws)
            if teacher is not None
            else (None, None)
        )
        rows.append(
            {
                "wavelet": name,
                "kind": "grid point" if name in grid else "pywavelets",
                "taps": len(ctx.transforms[name].wavelet),
                "cv_r2_train_cells": cv[name],
                "test_r2": r2(y_te, p),
                "test_r2_minus_db5": diff,
                "sd": sd,
                "test_r2_minus_teacher": vs_teacher[0],
                "sd_teacher": vs_teacher[1],
            }
        )
    rows.sort(key=lambda r: -r["test_r2"])
    summary = {
        "run": run_dir.name,
        "n_test": ctx.n_test,
        "split": "the run's split by cell; CV on the training cells, test on the test cells",
        "student": f"top {s.top_k} values per scale, OLS",
        "n_pywavelets": sum(r["kind"] == "pywavelets" for r in rows),
        "n_grid_points": len(grid),
        "skipped": skipped,
    }
    for kind in ("pywavelets", "grid point"):
        best = next(r for r in rows if r["kind"] == kind)
        by_cv = max((r for r in rows if r["kind"] == kind), key=lambda r: r["cv_r2_train_cells"])
        summary[f"best_on_test_{kind.replace(' ', '_')}"] = best
        summary[f"best_on_cv_{kind.replace(' ', '_')}"] = by_cv
    summary["db5"] = next(r for r in rows if r["wavelet"] == "db5")
    summary["teacher_test_r2"] = None if teacher is None else r2(y_te, teacher.pred)
    return rows, summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="A finished run directory.")
    ap.add_argument("--out", type=Path, required=True, help="Folder for the two files.")
    ap.add_argument("--max-taps", type=int, default=20, help="Longest filter tried.")
    args = ap.parse_args(argv)
    rows, summary = oracle_rows(args.run, args.max_taps)
    write_csv(args.out / "oracle_wavelets.csv", rows)
    write_json(args.out / "oracle_wavelets.json", summary)
    for r in rows[:8]:
        print(
            f"{r['wavelet']:<22} {r['kind']:<11} cv {r['cv_r2_train_cells']:.4f} "
            f"test {r['test_r2']:.4f} vs db5 {r['test_r2_minus_db5']:+.4f} ± {r['sd']:.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
