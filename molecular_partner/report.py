"""The interpretation report: which timescales of the clathrin trace predict auxilin.

Every figure is a pure function of a run's ``evaluate/`` folder (``metrics.csv``,
``comparisons.csv``, ``methods.json``, ``selection.csv``, ``predictions.csv``,
``importance.json``, ``examples.json``, ``wavelets/``): nothing is retrained or
recomputed from data. :func:`write_report` writes ``RUN/report/``: a self-contained
``report.html`` (on the shell of :mod:`shared.report`), its PNGs and ``results.md``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from molecular_partner.config import DOMAIN
from molecular_partner.evaluate import read_metrics
from shared import LearnableWavelet, load_transform
from shared.evaluation import COMPARISON_COLUMNS, verdict
from shared.report import Section
from shared.report import write_report as write_page
from shared.runs import RunDir, atomic_write

__all__ = [
    "FIGURES",
    "fig_examples",
    "fig_importance",
    "fig_pred_vs_true",
    "fig_selection",
    "fig_wavelets",
    "results_markdown",
    "write_report",
]

logger = logging.getLogger(__name__)

METHOD_ORDER = ["awd", "awd_gamma0", "db5", "awd_xgboost", "teacher", "hand_features"]
METHOD_ORDER += ["train_mean"]
LABELS = {
    "awd": "AWD (top-6/scale + OLS)",
    "awd_gamma0": "AWD, gamma=0 (ablation)",
    "db5": "db5 (top-6/scale + OLS)",
    "awd_xgboost": "AWD values+positions + xgboost",
    "teacher": "LSTM teacher",
    "hand_features": "lifetime, peak, rise time",
    "train_mean": "training mean",
}


def _read_json(run: Path, name: str) -> dict[str, Any]:
    path = run / name
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; run `awd molecular-partner evaluate` first")
    return json.loads(path.read_text())


def fig_wavelets(run_dir: str | Path) -> Figure:
    """Learned scaling function phi and wavelet psi against db5's.

    Examples
    --------
    >>> # fig = fig_wavelets("results/molecular_partner/simulated/evaluate")
    """
    run = Path(run_dir)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    curves = [("db5", LearnableWavelet("db5"), "0.5", "--")]
    for name, color in (("awd", "C3"), ("awd_gamma0", "C0")):
        path = run / "wavelets" / f"{name}.safetensors"
        if path.exists():
            curves.append((LABELS[name].split(" (")[0], load_transform(path).wavelet, color, "-"))
    for label, wavelet, color, style in curves:
        phi, psi, x = (t.detach().numpy() for t in wavelet.wavefun(level=6))
        axes[0].plot(x, phi, color=color, ls=style, label=label)
        axes[1].plot(x, psi, color=color, ls=style, label=label)
    axes[0].set_title("scaling function $\\phi$")
    axes[1].set_title("wavelet $\\psi$")
    for ax in axes:
        ax.axhline(0, color="0.85", lw=0.8)
        ax.set_xlabel("support (samples of the finest scale)")
    axes[1].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def fig_examples(run_dir: str | Path) -> Figure:
    """Example aux+ and aux- test traces with each coefficient's attribution on the trace.

    Each coefficient of scale j is drawn at the time it covers (its position scaled to the
    trace length); the marker colour is the teacher's input x gradient attribution of that
    coefficient (red: raises the predicted auxilin, blue: lowers it), the size its magnitude.
    """
    data = _read_json(Path(run_dir), "examples.json")
    examples, bands = data["examples"], data["bands"]
    if not examples:
        fig = plt.figure(figsize=(4, 1))
        fig.text(0.5, 0.5, "no example traces", ha="center")
        return fig
    pos = [e for e in examples if e["aux_positive"]]
    neg = [e for e in examples if not e["aux_positive"]]
    n_rows = max(len(pos), len(neg))
    fig, axes = plt.subplots(n_rows, 2, figsize=(10, 2.6 * n_rows), squeeze=False)
    scale = max(
        (max(abs(v) for b in bands for v in e["attributions"][b]) for e in examples),
        default=1.0,
    )
    scale = scale or 1.0
    for col, group in enumerate((pos, neg)):
        for row in range(n_rows):
            ax = axes[row, col]
            if row >= len(group):
                ax.axis("off")
                continue
            e = group[row]
            trace = np.asarray(e["trace"])
            t = np.arange(len(trace))
            ax.plot(t, trace, color="k", lw=1.2)
            lo, hi = trace.min(), trace.max()
            span = (hi - lo) or 1.0
            for j, b in enumerate(bands):
                a = np.asarray(e["attributions"][b])
                centres = (np.arange(len(a)) + 0.5) * len(trace) / len(a)
                yrow = lo - (j + 1) * 0.22 * span
                ax.scatter(
                    centres,
                    np.full(len(a), yrow),
                    c=a,
                    cmap="coolwarm",
                    vmin=-scale,
                    vmax=scale,
                    s=8 + 120 * np.abs(a) / scale,
                    edgecolors="none",
                )
                ax.text(-1.5, yrow, b, ha="right", va="center", fontsize=7)
            ax.set_xlim(-6, len(trace))
            ax.set_yticks([])
            title = "aux+" if e["aux_positive"] else "aux-"
            y = f"{e['y']:.2f}" if e.get("y") is not None else "n/a"
            ax.set_title(f"{title} ({e['cell']}): auxilin {y}, LSTM {e['teacher']:.2f}", fontsize=9)
            if row == n_rows - 1:
                ax.set_xlabel("resampled time point (of 40)")
    fig.suptitle("clathrin trace (black) and the attribution of each wavelet coefficient", y=1.0)
    fig.tight_layout()
    return fig


def fig_importance(run_dir: str | Path) -> Figure:
    """Importance of each scale: the teacher's attributions and the students' weights."""
    imp = _read_json(Path(run_dir), "importance.json")
    bands = imp["bands"]
    series = [(k, imp[k]) for k in ("teacher_awd", "teacher_db5", "student_awd", "student_db5")]
    series = [(k, v) for k, v in series if v]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / max(len(series), 1)
    labels = {
        "teacher_awd": "LSTM attribution, AWD wavelet",
        "teacher_db5": "LSTM attribution, db5",
        "student_awd": "AWD student (|w| x SD)",
        "student_db5": "db5 student (|w| x SD)",
    }
    for i, (key, values) in enumerate(series):
        ax.bar(
            np.arange(len(bands)) + (i - (len(series) - 1) / 2) * width,
            [values[b] for b in bands],
            width,
            label=labels[key],
        )
    ax.set_xticks(np.arange(len(bands)))
    coarse = [f"{b}\n(~{2 ** int(b[2:])} samples)" for b in bands]
    ax.set_xticklabels(coarse)
    ax.set_ylabel("share of importance")
    ax.set_title("which timescales matter (coarse -> fine)")
    ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def fig_pred_vs_true(run_dir: str | Path) -> Figure:
    """Predicted against true auxilin (regression outcome) on the test cells."""
    pred = pd.read_csv(Path(run_dir) / "predictions.csv")
    methods = [m for m in ("awd", "teacher", "db5", "awd_xgboost") if f"pred_{m}" in pred]
    fig, axes = plt.subplots(1, max(len(methods), 1), figsize=(3.2 * len(methods), 3.2))
    axes = np.atleast_1d(axes)
    if "y_regression" not in pred:
        return fig
    y = pred["y_regression"].to_numpy()
    for ax, m in zip(axes, methods, strict=False):
        p = pred[f"pred_{m}"].to_numpy()
        ax.scatter(y, p, s=4, alpha=0.4)
        lims = [min(y.min(), p.min()), max(y.max(), p.max())]
        ax.plot(lims, lims, color="0.6", lw=0.8)
        r2 = 1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2)
        ax.set_title(f"{LABELS[m].split(' (')[0]}: R$^2$ {r2:.3f}", fontsize=9)
        ax.set_xlabel("true (z-scored auxilin)")
    axes[0].set_ylabel("predicted")
    fig.tight_layout()
    return fig


def fig_selection(run_dir: str | Path) -> Figure:
    """Grouped-CV score of the OLS student against gamma, one line per lambda."""
    sel = pd.read_csv(Path(run_dir) / "selection.csv")
    sel = sel[(sel["outcome"] == "regression") & ~sel["wavelet"].str.contains("xgboost")]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    grid = sel[sel["wavelet"] != "db5"]
    for lam, g in grid.groupby("lambda"):
        g = g.sort_values("gamma")
        x = g["gamma"].replace(0, np.nan)
        ax.plot(x, g["cv_score"], marker="o", label=f"lambda={lam:g}")
        zero = g[g["gamma"] == 0]
        if not zero.empty:
            ax.axhline(
                float(zero["cv_score"].iloc[0]), ls=":", lw=0.8, color=ax.lines[-1].get_color()
            )
    db5 = sel[sel["wavelet"] == "db5"]
    if not db5.empty:
        ax.axhline(float(db5["cv_score"].iloc[0]), color="k", ls="--", lw=1, label="db5")
    ax.set_xscale("log")
    ax.set_xlabel("gamma (dotted: gamma = 0)")
    ax.set_ylabel("CV R$^2$ (grouped by cell)")
    ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


FIGURES = {
    "wavelets": fig_wavelets,
    "examples": fig_examples,
    "importance": fig_importance,
    "pred_vs_true": fig_pred_vs_true,
    "selection": fig_selection,
}


def _value(metrics: pd.DataFrame, method: str, metric: str, col: str = "value") -> float:
    row = metrics[(metrics["method"] == method) & (metrics["metric"] == metric)]
    return float(row[col].iloc[0]) if len(row) else float("nan")


def _comparisons(run_dir: str | Path) -> pd.DataFrame:
    path = Path(run_dir) / "comparisons.csv"
    if not path.exists():
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    return pd.read_csv(path)


def _paired(comparisons: pd.DataFrame, a: str, b: str, metric: str = "r2") -> tuple[float, float]:
    row = comparisons[
        (comparisons["a"] == a) & (comparisons["b"] == b) & (comparisons["metric"] == metric)
    ]
    if row.empty:
        return float("nan"), float("nan")
    return float(row["diff"].iloc[0]), float(row["sd"].iloc[0])


def goal_notes(metrics: pd.DataFrame, comparisons: pd.DataFrame | None = None) -> list[str]:
    """Whether each goal is reached, with the numbers: a difference counts only beyond
    2 paired bootstrap SD (``comparisons.csv``); anything less is a tie.

    Examples
    --------
    >>> m = pd.DataFrame({"method": ["awd", "teacher", "db5"], "metric": ["r2"] * 3,
    ...                   "value": [0.3, 0.2, 0.1], "sd": [0.01] * 3, "n_test": [9] * 3,
    ...                   "seconds_per_item": [1e-7, 1e-5, 1e-7]})
    >>> c = pd.DataFrame({"a": ["awd", "awd"], "b": ["teacher", "db5"], "target": ["y"] * 2,
    ...                   "metric": ["r2"] * 2, "diff": [0.1, 0.0006], "sd": [0.01, 0.0029]})
    >>> [n.split(":")[0] for n in goal_notes(m, c)[:2]]
    ['Reached', 'Tie']
    """
    comparisons = (
        comparisons if comparisons is not None else pd.DataFrame(columns=COMPARISON_COLUMNS)
    )
    words = {"better": "Reached", "worse": "Not reached", "tie": "Tie"}
    notes = []
    awd = _value(metrics, "awd", "r2")
    for other, label in (("teacher", "AWD R² ≥ LSTM R²"), ("db5", "AWD R² > db5 R²")):
        diff, sd = _paired(comparisons, "awd", other)
        word = words[verdict(diff, sd, greater_is_better=True)]
        if other == "teacher" and word == "Tie":
            word = "Reached (tie within 2 paired SD)"
        notes.append(
            f"{word}: {label} ({awd:.3f} vs {_value(metrics, other, 'r2'):.3f}; paired "
            f"difference {diff:+.4f} ± {sd:.4f})."
        )
    g0 = _value(metrics, "awd_gamma0", "r2")
    diff, sd = _paired(comparisons, "awd", "awd_gamma0")
    notes.append(
        f"Ablation: AWD with gamma = 0 reaches R² {g0:.3f} (AWD minus it: {diff:+.4f} ± {sd:.4f}, "
        f"{verdict(diff, sd, True)})."
    )
    t_awd = _value(metrics, "awd", "r2", "seconds_per_item")
    t_lstm = _value(metrics, "teacher", "r2", "seconds_per_item")
    ratio = t_lstm / t_awd if t_awd > 0 else float("nan")
    notes.append(
        f"{'Reached' if ratio >= 10 else 'Not reached'}: end-to-end prediction >= 10x faster "
        f"than the LSTM ({t_awd * 1e6:.2f} us vs {t_lstm * 1e6:.2f} us per trace, {ratio:.1f}x; "
        "transform, feature extraction and predictor included, one thread each)."
    )
    return notes


def results_markdown(run_dir: str | Path) -> str:
    """The results as a Markdown table with the split, parameter counts and goal notes."""
    run = Path(run_dir)
    metrics = read_metrics(run)
    info = _read_json(run, "methods.json")
    split = info["split"]
    lines = [
        "# Molecular partner: clathrin trace -> auxilin, held-out cells",
        "",
        f"Split by cell: train {', '.join(split['train_cells'])} ({split['n_train']} traces), "
        f"test {', '.join(split['test_cells'])} ({split['n_test']} traces). Selection by "
        "cross-validation grouped by cell on the training cells only; the test cells are "
        "scored once. SD: bootstrap over test traces.",
        "",
        "| method | R2 | AUC | F1 | accuracy | parameters | end-to-end s/trace |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in METHOD_ORDER:
        sub = metrics[metrics["method"] == m]
        if sub.empty:
            continue
        cells = []
        for metric in ("r2", "auc", "f1", "accuracy"):
            v = _value(metrics, m, metric)
            s = _value(metrics, m, metric, "sd")
            cells.append("-" if np.isnan(v) else f"{v:.3f} ({s:.3f})")
        params = info["methods"].get(m, {}).get("regression", {}).get("n_parameters")
        params = params if params is not None else "-"
        t = float(sub["seconds_per_item"].iloc[0])
        lines.append(f"| {LABELS.get(m, m)} | " + " | ".join(cells) + f" | {params} | {t:.2e} |")
    chosen = info.get("chosen", {}).get("regression", {})
    lines += ["", "## Notes", ""]
    for m in ("awd", "awd_gamma0"):
        if m in chosen:
            d = info["methods"][m]["regression"]
            lines.append(
                f"- `{m}` wavelet: lambda={d['lambda']:g}, gamma={d['gamma']:g} "
                f"(grouped-CV R2 {d['cv_score']:.3f})."
            )
    for m in ("awd", "awd_gamma0"):
        path = run / "wavelets" / f"{m}.safetensors"
        if path.exists():
            h0 = load_transform(path).wavelet.h0.detach().numpy()
            db5 = LearnableWavelet("db5").h0.detach().numpy()
            if h0.shape == db5.shape:
                lines.append(
                    f"- `{m}` filter moved from db5 by max |dh0| = {np.abs(h0 - db5).max():.2e} "
                    f"(relative L2 {np.linalg.norm(h0 - db5) / np.linalg.norm(db5):.2e})."
                )
    lines += [f"- {n}" for n in goal_notes(metrics, _comparisons(run))]
    lines.append(
        "- Binary outcome (`y_consec_thresh`): students are logistic regressions / xgboost "
        "on the wavelets distilled from the regression teacher; the `teacher` row is a "
        "separate LSTM trained with BCE."
    )
    return "\n".join(lines) + "\n"


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write the PNGs, ``report.html`` (self-contained) and ``results.md``.

    Parameters
    ----------
    run_dir : path
        An evaluated run directory.
    out_dir : path, optional
        Where to write (default: ``RUN/report``).

    Returns
    -------
    Path
        The HTML report.
    """
    run = RunDir.open(run_dir, DOMAIN)
    ev = run.root / "evaluate"
    out = Path(out_dir) if out_dir is not None else run.step_dir("report")
    metrics = read_metrics(ev)
    markdown = results_markdown(ev)
    atomic_write(out / "results.md", lambda p: p.write_text(markdown))
    captions = {
        "wavelets": "Learned wavelets against db5. The learned filters are what the "
        "students read the traces through.",
        "examples": "Example aux+ (left) and aux- (right) test traces; under each trace, one "
        "row per scale (cA4 coarsest, cD1 finest): every coefficient's contribution to the "
        "LSTM's prediction, placed at the time it covers.",
        "importance": "Share of importance per scale: the LSTM's attributions (what the "
        "teacher uses) and the students' weights (what the distilled model uses).",
        "pred_vs_true": "Predicted against true auxilin on the held-out cells.",
        "selection": "Selection: grouped-CV R² of the OLS student along the gamma path.",
    }
    intro = Section("").paragraph(
        "Adaptive wavelet distillation of an LSTM teacher; students read the top "
        "coefficients of each scale of the learned wavelet. All numbers are on held-out cells."
    )
    goals = Section("Goals").bullets(goal_notes(metrics, _comparisons(ev)))
    table = _wide_table(metrics, _read_json(ev, "methods.json"))
    results = Section("Results").table(table, caption="Value ± bootstrap SD over test traces.")
    figures = Section("Figures")
    for name, fn in FIGURES.items():
        figures.figure(name, lambda fn=fn: fn(ev), captions[name])
    long = Section("").details("All metrics (long form)", Section("").table(metrics))
    path = write_page(
        out,
        "Which timescales of the clathrin trace predict auxilin recruitment?",
        [intro, goals, results, figures, long],
    )
    logger.info("report written to %s", path)
    return path


def _wide_table(metrics: pd.DataFrame, info: dict) -> pd.DataFrame:
    rows = []
    for m in METHOD_ORDER:
        if m not in set(metrics["method"]):
            continue
        row: dict[str, Any] = {"method": LABELS.get(m, m)}
        for metric, label in (("r2", "R²"), ("auc", "AUC"), ("f1", "F1"), ("accuracy", "accuracy")):
            v, sd = _value(metrics, m, metric), _value(metrics, m, metric, "sd")
            row[label] = "–" if np.isnan(v) else f"{v:.3f} ± {sd:.3f}"
        params = info["methods"].get(m, {}).get("regression", {}).get("n_parameters")
        row["parameters"] = "–" if params is None else int(params)
        t = metrics[metrics["method"] == m]["seconds_per_item"].iloc[0]
        row["s / trace"] = f"{t:.2e}"
        rows.append(row)
    return pd.DataFrame(rows)
