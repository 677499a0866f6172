"""Paired RMSE differences between the students of two cosmology runs on the same test maps.

An experiment run (a copy of a run directory, distilled or evaluated with other settings)
is compared with the run it was copied from: both ``evaluate/predictions.npz`` must hold
the same test targets, and both runs must record the same data fingerprint, so that the
differences are paired over the same maps. The SDs come from the bootstrap draws the
evaluation itself uses (``evaluate.n_bootstrap``, ``evaluate.bootstrap_seed`` of run A).

Example::

    python scripts/cosmology_compare_runs.py --a RUN_EXPERIMENT --b RUN_BASE \\
        --pair awd_taylornet:awd_taylornet --pair awd_taylornet:scattering_xgboost \\
        --out results/cosmology/ten_cosmologies/steps3000/cross_run_comparisons.csv
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from cosmology.config import load_config
from cosmology.evaluate import PARAMETERS
from shared.evaluation import bootstrap_draws, paired_difference, rmse
from shared.runs import write_csv


def _predictions(run: Path) -> dict[str, np.ndarray]:
    path = run / "evaluate" / "predictions.npz"
    if not path.is_file():
        raise SystemExit(f"error: {path}: no predictions (run `awd cosmology evaluate` first)")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _data_fingerprint(run: Path) -> str:
    path = run / "run.json"
    if not path.is_file():
        raise SystemExit(f"error: {path}: not a run directory")
    return str(json.loads(path.read_text())["data"]["fingerprint"])


def compare(a: Path, b: Path, pairs: list[tuple[str, str]]) -> list[dict]:
    """Rows ``(a, b, target, metric, diff, sd, rmse_a, rmse_b)``, method names prefixed
    ``A:`` and ``B:``; ``diff`` < 0 means run A's method is better."""
    if _data_fingerprint(a) != _data_fingerprint(b):
        raise SystemExit(f"error: {a} and {b} were made from different data")
    pa, pb = _predictions(a), _predictions(b)
    if not np.array_equal(pa["y_test"], pb["y_test"]):
        raise SystemExit(f"error: {a} and {b} have different test maps")
    e = load_config(a / "config.yaml").evaluate
    y = pa["y_test"]
    draws = bootstrap_draws(len(y), e.n_bootstrap, e.bootstrap_seed)
    rows = []
    for ma, mb in pairs:
        for name, preds, run in ((ma, pa, a), (mb, pb, b)):
            if name not in preds:
                raise SystemExit(f"error: {run}: no method {name!r} in its predictions")
        for j, target in enumerate(PARAMETERS):
            diff, sd = paired_difference(rmse, y[:, j], pa[ma][:, j], pb[mb][:, j], draws)
            rows.append(
                {
                    "a": f"A:{ma}",
                    "b": f"B:{mb}",
                    "target": target,
                    "metric": "rmse",
                    "diff": diff,
                    "sd": sd,
                    "rmse_a": rmse(y[:, j], pa[ma][:, j]),
                    "rmse_b": rmse(y[:, j], pb[mb][:, j]),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", type=Path, required=True, help="Run directory A (the experiment).")
    ap.add_argument("--b", type=Path, required=True, help="Run directory B (the base).")
    ap.add_argument(
        "--pair",
        action="append",
        required=True,
        help="METHOD_A:METHOD_B (repeatable): the method of run A against that of run B.",
    )
    ap.add_argument("--out", type=Path, required=True, help="CSV to write.")
    args = ap.parse_args(argv)
    pairs = []
    for p in args.pair:
        ma, sep, mb = p.partition(":")
        if not sep or not ma or not mb:
            ap.error(f"--pair {p!r}: expected METHOD_A:METHOD_B")
        pairs.append((ma, mb))
    rows = compare(args.a, args.b, pairs)
    write_csv(args.out, rows)
    for r in rows:
        size = f"{abs(r['diff']) / r['sd']:.1f} SD" if r["sd"] > 0 else "identical predictions"
        print(
            f"{r['a']:<32} {r['b']:<32} {r['target']:<8} {r['diff']:+.5f} ± {r['sd']:.5f} ({size})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
