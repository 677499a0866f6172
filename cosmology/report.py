"""``awd cosmology report``: one self-contained HTML file and PNGs from a run's saved results.

Every figure is a pure function of files the earlier steps wrote (``evaluate/*.json``,
``evaluate/*.npz``, ``evaluate/metrics.csv``, ``distill/grid.json``); nothing is
recomputed from maps or models, so a report can be rebuilt anywhere from a run directory.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from cosmology.config import DOMAIN
from cosmology.evaluate import PARAMETERS, metrics_markdown, read_metrics
from shared import LearnableWavelet
from shared.plots import plot_grid_heatmap
from shared.report import Section
from shared.report import write_report as write_page
from shared.runs import RunDir, atomic_write, write_csv

__all__ = ["FIGURES", "write_report"]

logger = logging.getLogger(__name__)

KERNELS = ("LL", "LH", "HL", "HH")
LABELS = {"omega_m": r"$\Omega_m$", "sigma_8": r"$\sigma_8$"}

#: The figures of a report, by file name, with their captions.
FIGURES = {
    "wavelet": "Learned scaling function phi and wavelet psi (selected AWD wavelet) "
    "against the db5 initialisation.",
    "filters_2d": "The 2D filters (outer products of the analysis filters) and the "
    "3x3 kernels the paper's student cuts from them, learned and db5.",
    "peak_histograms": "Mean peak histograms of the four AWD kernels per test "
    "cosmology, coloured by Omega_m.",
    "attribution_bands": "TRIM attribution mass of the teacher per wavelet level and "
    "band (saliency and input x gradient), per parameter.",
    "top_coefficients": "A test map and the maps rebuilt from its most-attributed "
    "wavelet coefficients (input x gradient), per parameter.",
    "fourier_trim": "TRIM over Fourier annuli: which angular scales (multipoles) the "
    "teacher uses, per parameter.",
    "pred_vs_true": "Predicted against true parameters on the test split.",
    "validation_grid": "Validation score of the paper's student over the lambda x gamma "
    "grid (best histogram range per point); the selection uses validation only.",
    "constraints": "Residuals of the orthogonal-wavelet conditions of the selected wavelet.",
}


def _load(run_dir: Path) -> dict[str, Any]:
    ev = run_dir / "evaluate"
    for name in ("selection.json", "interpretation.json", "validation.json"):
        if not (ev / name).is_file():
            raise FileNotFoundError(f"{ev / name}: missing; run 'awd cosmology evaluate' first")
    with np.load(ev / "interpretation.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    with np.load(ev / "predictions.npz", allow_pickle=False) as z:
        preds = {k: z[k] for k in z.files}
    return {
        "metrics": read_metrics(ev / "metrics.csv"),
        "selection": json.loads((ev / "selection.json").read_text()),
        "interp": json.loads((ev / "interpretation.json").read_text()),
        "validation": json.loads((ev / "validation.json").read_text()),
        "arrays": arrays,
        "preds": preds,
    }


def _wavelet_fig(interp: dict, init: str = "db5"):
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    chosen = interp.get("wavelet")
    learned = LearnableWavelet(torch.tensor(interp["h0"][chosen], dtype=torch.float64))
    for w, style, label in ((LearnableWavelet(init), "--", init), (learned, "-", f"AWD {chosen}")):
        phi, psi, x = (t.detach().numpy() for t in w.wavefun(level=8))
        axes[0].plot(x, phi, style, label=label)
        axes[1].plot(x, psi, style, label=label)
    axes[0].set_title("scaling function phi")
    axes[1].set_title("wavelet psi")
    axes[0].legend(fontsize=8)
    return fig


def _filters_fig(interp: dict, arrays: dict, init: str = "db5"):
    chosen = interp.get("wavelet")
    learned = LearnableWavelet(torch.tensor(interp["h0"][chosen], dtype=torch.float64))
    fig, axes = plt.subplots(4, 4, figsize=(8, 8))
    for row, (w, name) in enumerate(((LearnableWavelet(init), init), (learned, "AWD"))):
        lo, hi = w.dec_lo.detach().numpy(), w.dec_hi.detach().numpy()
        for col, (a, b, tag) in enumerate(
            ((lo, lo, "LL"), (lo, hi, "LH"), (hi, lo, "HL"), (hi, hi, "HH"))
        ):
            ax = axes[row, col]
            ax.imshow(np.outer(a, b), cmap="RdBu_r")
            ax.set_title(f"{name} {tag}", fontsize=8)
        key = "kernels_db5" if row == 0 else "kernels_awd"
        for col in range(4):
            ax = axes[row + 2, col]
            ax.imshow(arrays[key][col], cmap="RdBu_r")
            ax.set_title(f"{name} 3x3 {['LL', 'LH', 'HL', 'HH'][col]}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def _hist_fig(arrays: dict):
    means, edges, params = arrays["hist_mean"], arrays["hist_edges"], arrays["hist_params"]
    fig, axes = plt.subplots(1, 4, figsize=(13, 3))
    om = params[:, 0]
    cmap = plt.get_cmap("viridis")
    norm = plt.Normalize(om.min(), om.max() if om.max() > om.min() else om.min() + 1)
    for k, ax in enumerate(axes):
        centres = 0.5 * (edges[k][1:] + edges[k][:-1])
        for c in range(len(means)):
            ax.plot(centres, means[c, k], color=cmap(norm(om[c])), lw=1)
        ax.set_title(KERNELS[k])
        ax.set_xlabel("filtered value at peak")
    axes[0].set_ylabel("mean peaks per map")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, label="Omega_m")
    return fig


def _attr_fig(interp: dict):
    bands = interp["bands"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    for ax, method in zip(axes, ("saliency", "input_x_gradient"), strict=True):
        data = interp[f"wavelet_{method}"]
        x = np.arange(len(bands))
        for i, p in enumerate(PARAMETERS):
            v = np.asarray(data[p])
            ax.bar(x + (i - 0.5) * 0.4, v / v.sum(), 0.4, label=LABELS[p])
        ax.set_xticks(x, bands, fontsize=8)
        ax.set_title(f"{method} mass per band (fraction)")
    axes[0].legend()
    return fig


def _top_fig(interp: dict, arrays: dict):
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    panels = [("example_map", "test map")] + [
        (f"top_{p}", f"top {100 * interp['top_fraction']:g}% coefficients for {p}")
        for p in PARAMETERS
    ]
    for ax, (key, title) in zip(axes, panels, strict=True):
        im = ax.imshow(arrays[key], cmap="magma")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


def _fourier_fig(interp: dict):
    edges = np.asarray(interp["fourier_ell_edges"])
    fig, ax = plt.subplots(figsize=(6, 3.4))
    labels = [f"{edges[i]:.0f}-{edges[i + 1]:.0f}" for i in range(len(edges) - 1)]
    x = np.arange(len(labels))
    for i, p in enumerate(PARAMETERS):
        v = np.asarray(interp["fourier_input_x_gradient"][p])
        ax.bar(x + (i - 0.5) * 0.4, v / v.sum(), 0.4, label=LABELS[p])
    ax.set_xticks(x, labels, rotation=45, fontsize=7)
    ax.set_xlabel("multipole band (ell)")
    ax.set_ylabel("attribution fraction")
    ax.legend()
    fig.tight_layout()
    return fig


def _pred_fig(preds: dict, metrics: pd.DataFrame):
    y = preds["y_test"]
    wanted = ["awd", "awd_multiscale_xgboost", "teacher", "power_peaks_pooled"]
    methods = [m for m in wanted if m in preds]
    fig, axes = plt.subplots(2, len(methods), figsize=(3.2 * len(methods), 6.2), squeeze=False)
    for col, m in enumerate(methods):
        for row, p in enumerate(PARAMETERS):
            ax = axes[row, col]
            ax.scatter(y[:, row], preds[m][:, row], s=3, alpha=0.3)
            lo, hi = y[:, row].min(), y[:, row].max()
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            r = metrics[(metrics.method == m) & (metrics.target == p)].value
            ax.set_title(f"{m}: {p} RMSE {r.iloc[0]:.4f}" if len(r) else m, fontsize=8)
            ax.set_xlabel("true")
            ax.set_ylabel("predicted")
    fig.tight_layout()
    return fig


def grid_scores(validation: list, grid_points: list) -> pd.DataFrame:
    """Best validation score of the paper's student per distilled grid point.

    Columns ``lambda, gamma, wavelet, val_score`` (mean RMSE / SD over the parameters,
    lower is better; the best histogram coverage of that wavelet). Points at gamma = 0
    are scored as the ``awd_gamma0`` family, the others as ``awd``.

    Examples
    --------
    >>> v = [{"method": "awd", "wavelet": "a", "val_score": 0.4},
    ...      {"method": "awd", "wavelet": "a", "val_score": 0.3}]
    >>> grid_scores(v, [{"l1_coeffs": 0.1, "l1_attr": 0.01, "point": "a"}]).val_score.tolist()
    [0.3]
    """
    rows = []
    for p in grid_points:
        fam = "awd" if p["l1_attr"] > 0 else "awd_gamma0"
        scores = [
            r["val_score"]
            for r in validation
            if r["method"] == fam and r.get("wavelet") == p["point"]
        ]
        rows.append(
            {
                "lambda": p["l1_coeffs"],
                "gamma": p["l1_attr"],
                "wavelet": p["point"],
                "val_score": min(scores) if scores else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=["lambda", "gamma", "wavelet", "val_score"])


def peak_histogram_table(arrays: dict) -> pd.DataFrame:
    """Mean peak counts per map of each AWD kernel and bin, per test cosmology (long form).

    Examples
    --------
    >>> arrays = {"hist_mean": np.ones((2, 4, 3)), "hist_edges": np.tile(np.arange(4.0), (4, 1)),
    ...           "hist_params": np.array([[0.3, 0.8], [0.2, 0.9]])}
    >>> t = peak_histogram_table(arrays)
    >>> len(t), list(t.columns)[:3]
    (24, ['omega_m', 'sigma_8', 'kernel'])
    """
    means, edges, params = arrays["hist_mean"], arrays["hist_edges"], arrays["hist_params"]
    rows = [
        {
            "omega_m": float(params[c, 0]),
            "sigma_8": float(params[c, 1]),
            "kernel": KERNELS[k],
            "bin": b,
            "lo": float(edges[k][b]),
            "hi": float(edges[k][b + 1]),
            "mean_peaks_per_map": float(means[c, k, b]),
        }
        for c in range(means.shape[0])
        for k in range(means.shape[1])
        for b in range(means.shape[2])
    ]
    return pd.DataFrame(rows)


def _grid_fig(scores: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(6, 3))
    plot_grid_heatmap(
        ax,
        scores["lambda"].tolist(),
        scores["gamma"].tolist(),
        scores["val_score"].tolist(),
        higher_is_better=False,
        label="val mean RMSE / SD",
    )
    fig.tight_layout()
    return fig


def _constraint_fig(interp: dict):
    res = interp.get("constraint_residuals", {})
    names = list(res)
    vals = [max(abs(v) for v in res[n]) if res[n] else 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(names, np.maximum(vals, 1e-16))
    ax.set_yscale("log")
    ax.set_ylabel("max |residual|")
    ax.set_title(f"wavelet constraints of {interp.get('wavelet')}")
    fig.tight_layout()
    return fig


def _answer(data: dict[str, Any]) -> str:
    """The opening paragraph: the AWD student, the teacher, db5 and the trivial predictor."""
    m = data["metrics"]
    sel = data["selection"]

    def cell(method: str, p: str) -> str:
        row = m[(m.method == method) & (m.target == p)]
        if row.empty:
            return "n/a"
        return f"{row.value.iloc[0]:.4f} ± {row.sd.iloc[0]:.4f}"

    default = sel.get("default_student") or "awd"
    db5 = default.replace("awd", "db5", 1)
    parts = [
        f"On {sel['n_test']} test maps ({sel['n_pix']}² pixels over {sel['side_angle_deg']:g}°), "
        f"the AWD student selected on validation ({default}) reaches RMSE "
        f"Ω_m {cell(default, 'omega_m')} and σ_8 {cell(default, 'sigma_8')}; "
        f"the teacher {cell('teacher', 'omega_m')} and {cell('teacher', 'sigma_8')}"
    ]
    if db5 in set(m.method):
        parts.append(f"db5 with the same student {cell(db5, 'omega_m')} and {cell(db5, 'sigma_8')}")
    parts.append(
        f"the training mean {cell('trivial', 'omega_m')} and {cell('trivial', 'sigma_8')}"
        " (RMSE ± bootstrap SD)."
    )
    return "; ".join(parts)


def _table(metrics: pd.DataFrame, parameters: dict[str, int]) -> pd.DataFrame:
    rows = []
    for method, group in metrics.groupby("method", sort=False):
        row: dict[str, Any] = {"method": method}
        for p in PARAMETERS:
            r = group[group.target == p]
            row[f"RMSE {p}"] = f"{r.value.iloc[0]:.5f} ± {r.sd.iloc[0]:.5f}" if len(r) else "–"
        row["seconds per map"] = f"{group.seconds_per_item.iloc[0]:.3g}"
        row["parameters"] = int(group.n_parameters.iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write ``report.html`` (figures embedded as base64 PNG) and the PNGs.

    Parameters
    ----------
    run_dir
        An evaluated cosmology run directory.
    out
        Output folder (default ``RUN/report``).

    Returns
    -------
    Path
        The HTML file.

    Raises
    ------
    ValueError, FileNotFoundError
        Not a cosmology run directory, or not evaluated yet.
    """
    run = RunDir.open(run_dir, DOMAIN)
    out = Path(out) if out is not None else run.step_dir("report")
    data = _load(run.root)
    grid = json.loads((run.root / "distill" / "grid.json").read_text())["points"]
    interp, arrays = data["interp"], data["arrays"]
    scores = grid_scores(data["validation"], grid)
    # The numbers behind two figures, as tables (``awd figures`` redraws from them).
    write_csv(out / "validation_grid.csv", scores.to_dict("records"))
    write_csv(out / "peak_histograms.csv", peak_histogram_table(arrays).to_dict("records"))
    sel = data["selection"]
    makers = {
        "wavelet": lambda: _wavelet_fig(interp),
        "filters_2d": lambda: _filters_fig(interp, arrays),
        "peak_histograms": lambda: _hist_fig(arrays),
        "attribution_bands": lambda: _attr_fig(interp),
        "top_coefficients": lambda: _top_fig(interp, arrays),
        "fourier_trim": lambda: _fourier_fig(interp),
        "pred_vs_true": lambda: _pred_fig(data["preds"], data["metrics"]),
        "validation_grid": lambda: _grid_fig(scores),
        "constraints": lambda: _constraint_fig(interp),
    }
    answer = Section("").paragraph(_answer(data), css="answer")
    answer.paragraph(
        f"Split: {sel.get('split', '')}. Train/val/test {sel.get('n_train')}/"
        f"{sel.get('n_val')}/{sel.get('n_test')} maps; {sel.get('n_train_cosmologies')} "
        f"training cosmologies. Selected AWD wavelet: {interp.get('wavelet')}."
    )
    results = Section("Results (test split)").table(
        _table(data["metrics"], sel.get("parameters", {})),
        caption="RMSE ± bootstrap SD; end-to-end prediction time per map (one thread); "
        "parameters the predictor stores.",
    )
    figures = Section("Figures")
    for name, caption in FIGURES.items():
        figures.figure(name, makers[name], caption)
    selection = pd.DataFrame(
        [{"method": m, **{k: v for k, v in c.items()}} for m, c in sel.get("selection", {}).items()]
    )
    details = Section("").details(
        "Settings chosen on validation, per method",
        Section("").table(selection),
    )
    path = write_page(out, "Adaptive wavelet distillation: weak-lensing (Ω_m, σ_8)",
                      [answer, results, figures, details])  # fmt: skip
    atomic_write(out / "metrics.md", lambda p: p.write_text(metrics_markdown(data["metrics"])))
    logger.info("report written to %s", path)
    return path
