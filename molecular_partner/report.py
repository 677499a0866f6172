"""The interpretation report: which timescales of the clathrin trace predict auxilin.

The page opens with the answer (:func:`headline`): the LSTM teacher, the AWD student, db5
with the same student and the best baseline, each R² with its bootstrap SD, the paired
differences of ``comparisons.csv`` (a difference counts only beyond two paired SD), and
which timescales the teacher and the student use, in seconds. Warnings follow (a student
worse than the training mean, a selection on too few training traces or cells, a learned
filter that barely moved from db5), then the results as a dot-and-error-bar figure and a
grouped table, the figures, and the full table in a collapsible appendix.

Timescales: every trace is resampled to ``L`` (40) points over its track's lifetime, so
one sample lasts ``lifetime_s / L`` seconds, a different duration for every track; the
report states it for the median test track (the ``lifetime_s`` column of the run's data
set). Wavelet level ``j`` covers about ``2**j`` samples.

Every figure is a pure function of a run's ``evaluate/`` folder (``metrics.csv``,
``comparisons.csv``, ``methods.json``, ``selection.csv``, ``predictions.csv``,
``importance.json``, ``examples.json``, ``wavelets/``) and of the data set's lifetimes:
nothing is retrained or recomputed. :func:`write_report` writes ``RUN/report/``: a
self-contained ``report.html`` (on the shell of :mod:`shared.report`), its PNGs,
``headline.json`` and ``results.md``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
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
from shared.plots import filter_change, plot_estimates, plot_filter_delta, plot_wavelet
from shared.report import (
    GROUPS,
    MIN_SELECTION_ITEMS,
    Headline,
    Section,
    format_estimate,
    paired_words,
)
from shared.report import method_group as _method_group
from shared.report import write_report as write_page
from shared.runs import RunDir, atomic_write

__all__ = [
    "FIGURES",
    "GROUPS",
    "Timescale",
    "fig_examples",
    "fig_importance",
    "fig_pred_vs_true",
    "fig_results",
    "fig_selection",
    "fig_wavelets",
    "headline",
    "method_group",
    "results_markdown",
    "results_rows",
    "write_report",
]

logger = logging.getLogger(__name__)

METHOD_ORDER = ["awd", "awd_gamma0", "db5", "awd_xgboost", "awd_taylornet", "db5_taylornet"]
METHOD_ORDER += ["teacher", "hand_features", "hand_features_xgboost", "hand_shape_xgboost"]
METHOD_ORDER += ["train_mean"]
LABELS = {
    "awd": "AWD (top-6/scale + OLS)",
    "awd_gamma0": "AWD, gamma=0 (ablation)",
    "db5": "db5 (top-6/scale + OLS)",
    "awd_xgboost": "AWD values+positions + xgboost",
    "awd_taylornet": "AWD (top-6/scale + TaylorNet)",
    "db5_taylornet": "db5 (top-6/scale + TaylorNet)",
    "teacher": "LSTM teacher",
    "hand_features": "lifetime, peak, rise time",
    "hand_features_xgboost": "lifetime, peak, rise time + xgboost",
    "hand_shape_xgboost": "lifetime, peak, rise time, 4 shape ratios + xgboost",
    "train_mean": "training mean",
}
#: Names in words (the report and the CLI; ``LABELS`` are those of ``results.md``).
NAMES = {
    "awd": "learned wavelet, top 6 per scale · OLS",
    "awd_gamma0": "learned wavelet (γ = 0), top 6 per scale · OLS",
    "awd_xgboost": "learned wavelet, top values + positions · xgboost",
    "db5": "db5, top 6 per scale · OLS",
    "awd_taylornet": "learned wavelet, top 6 per scale · TaylorNet",
    "db5_taylornet": "db5, top 6 per scale · TaylorNet",
    "teacher": "LSTM teacher",
    "hand_features": "hand features (lifetime, peak amplitude, rise time) · OLS",
    "hand_features_xgboost": "hand features (lifetime, peak amplitude, rise time) · xgboost",
    "hand_shape_xgboost": "hand features + 4 shape ratios · xgboost",
    "train_mean": "training mean",
}
#: The groups of the results table, in order.
LEGEND = {
    "top 6 per scale": "the paper's features: the 6 largest coefficients of each of the 5 "
    "scales (cA4, cD4 … cD1) of the wavelet transform of the trace",
    "γ = 0": "the wavelet distilled without the attribution penalty (the ablation)",
    "top values + positions": "the same coefficients and where in the trace they sit",
    "OLS": "ordinary least squares (a logistic regression for the binary outcome)",
    "xgboost": "gradient-boosted trees; their number and depth chosen by the same grouped CV",
    "shape ratios": "how each raw track begins and ends against its peak: the mean of its "
    "first 3 frames, of frames −6 to −4, of its last 3 frames and of the whole track, each "
    "over the peak",
    "TaylorNet": "a coarse-grained Taylor-series network on the same features laid out as "
    "scales × ranks (a logistic link for the binary outcome; provisional)",
    "R²": "auxilin signal (Y_sig_mean_normalized), regression",
    "AUC, F1, accuracy": "auxilin recruited or not (y_consec_thresh); the teacher of this "
    "outcome is a separate LSTM trained with BCE",
    "compression rate": "the paper's measure of how few coefficients carry the trace "
    "(lower is more compact)",
}
REGRESSION, BINARY = "Y_sig_mean_normalized", "y_consec_thresh"
#: A learned filter closer than this (relative L2 distance of h0) to db5 "barely moved".
BARELY_MOVED = 1e-2


def method_group(method: str) -> str:
    """The group of a method in the results table (one of :data:`GROUPS`).

    Examples
    --------
    >>> [method_group(m) for m in ("teacher", "awd_xgboost", "db5", "hand_features")]
    ['Teacher', 'AWD students (learned wavelet)', 'Fixed-wavelet students (db5)', 'Baselines']
    """
    return _method_group(method, trivial="train_mean")


@dataclass(frozen=True)
class Timescale:
    """Seconds per resampled sample: traces are resampled to ``length`` points over their
    track's lifetime, so a sample lasts ``lifetime_s / length``; stated for the median
    test track, with the middle half of the lifetimes.

    Examples
    --------
    >>> ts = Timescale(length=40, median_s=40.0, q1_s=20.0, q3_s=60.0)
    >>> ts.sample_s, ts.band_s("cD2"), ts.band_words("cA4")
    (1.0, 4.0, '~16 samples ≈ 16 s')
    """

    length: int
    median_s: float | None = None
    q1_s: float | None = None
    q3_s: float | None = None

    @property
    def sample_s(self) -> float | None:
        """Seconds per sample of the median test track."""
        return None if self.median_s is None else self.median_s / self.length

    @staticmethod
    def band_samples(band: str) -> int:
        """Samples a band covers: ``2**j`` for ``cAj`` and ``cDj``."""
        return 2 ** int(band[2:])

    def band_s(self, band: str) -> float | None:
        """Seconds a band covers for the median test track."""
        return None if self.sample_s is None else self.band_samples(band) * self.sample_s

    def band_words(self, band: str) -> str:
        """``~16 samples ≈ 15 s`` (samples alone when no lifetimes are known)."""
        n = self.band_samples(band)
        seconds = self.band_s(band)
        return f"~{n} samples" + ("" if seconds is None else f" ≈ {seconds:.2g} s")

    def sentence(self) -> str:
        """How samples convert to seconds, in one sentence."""
        if self.median_s is None:
            return (
                f"Traces are resampled to {self.length} points over each track's lifetime, so "
                f"one sample lasts lifetime/{self.length} seconds (the data set's lifetimes "
                "were not found, so scales are given in samples)."
            )
        return (
            f"Traces are resampled to {self.length} points over each track's lifetime, so one "
            f"sample lasts lifetime/{self.length}: {self.sample_s:.2g} s for the median test "
            f"track (lifetime {self.median_s:.0f} s; the middle half of the test tracks "
            f"{self.q1_s:.0f}–{self.q3_s:.0f} s). Scale j covers ~2ʲ samples."
        )


def lifetimes_of_test_tracks(run: RunDir | None) -> np.ndarray | None:
    """``lifetime_s`` of the test tracks, in the evaluation's order (None when unreadable)."""
    if run is None:
        return None
    path = run.data_path
    path = path / "dataset.parquet" if path.is_dir() else path
    try:
        table = pd.read_parquet(path, columns=["split", "lifetime_s"])
    except (OSError, ValueError, KeyError) as err:
        logger.debug("no lifetimes for the timescale (%s)", err)
        return None
    life = table.loc[table["split"] == "test", "lifetime_s"].to_numpy(dtype=np.float64)
    return life if len(life) else None


def timescale(lifetimes: np.ndarray | None, length: int) -> Timescale:
    """The :class:`Timescale` of test tracks with these lifetimes (samples only if None).

    Examples
    --------
    >>> timescale(np.array([20.0, 40.0, 60.0]), 40).sample_s
    1.0
    """
    if lifetimes is None or len(lifetimes) == 0:
        return Timescale(length)
    q1, med, q3 = np.percentile(lifetimes, [25, 50, 75])
    return Timescale(length, float(med), float(q1), float(q3))


def _read_json(run: Path, name: str) -> dict[str, Any]:
    path = run / name
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; run `awd molecular-partner evaluate` first")
    return json.loads(path.read_text())


def fig_wavelets(run_dir: str | Path, timescale_: Timescale | None = None) -> Figure:
    """Learned scaling function φ and wavelet ψ against db5's, and their Δh0.

    The learned filters often stay close to db5, so their φ and ψ lie on db5's; the third
    panel draws the difference of the filters, which shows whether and where they moved.

    Examples
    --------
    >>> # fig = fig_wavelets("results/molecular_partner/simulated/evaluate")
    """
    run = Path(run_dir)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
    filters = {}
    colors = {}
    for i, name in enumerate(("awd", "awd_gamma0")):
        path = run / "wavelets" / f"{name}.safetensors"
        if not path.exists():
            continue
        wavelet = load_transform(path).wavelet
        label = "AWD" if name == "awd" else "AWD, γ = 0"
        colors[label] = f"C{i}"
        sample = timescale_.sample_s if timescale_ is not None else None
        xlabel = "support (samples" + (f"; 1 ≈ {sample:.2g} s)" if sample else ")")
        plot_wavelet(
            wavelet,
            "db5" if not filters else None,
            axes=axes[:2],
            label=label,
            color=f"C{i}",
            style="-" if i == 0 else (0, (4, 2)),
            xlabel=xlabel,
        )
        filters[label] = wavelet.h0.detach().numpy()
    plot_filter_delta(filters, "db5", ax=axes[2], colors=colors)
    return fig


def _trace_times(e: dict, n: int, lifetimes: np.ndarray | None) -> tuple[np.ndarray, str]:
    if lifetimes is not None and 0 <= e.get("index", -1) < len(lifetimes):
        return np.arange(n) * lifetimes[e["index"]] / n, "time since the track appeared (s)"
    return np.arange(n, dtype=np.float64), f"resampled time point (of {n})"


def fig_examples(run_dir: str | Path, lifetimes: np.ndarray | None = None) -> Figure:
    """Example recruiting (aux+) and non-recruiting (aux-) test traces, with each wavelet
    coefficient's attribution drawn at the time it covers.

    Each coefficient of scale j is drawn at the time it covers (its position scaled to the
    trace); the marker colour is the teacher's input x gradient attribution of that
    coefficient (red: raises the predicted auxilin, blue: lowers it), the size its
    magnitude. With ``lifetimes`` (seconds, of the test tracks in evaluation order) the time
    axis is in seconds since the track appeared.
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
    fig, axes = plt.subplots(n_rows, 2, figsize=(10, 2.7 * n_rows), squeeze=False)
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
            t, xlabel = _trace_times(e, len(trace), lifetimes)
            ax.plot(t, trace, color="k", lw=1.2)
            lo, hi = trace.min(), trace.max()
            span = (hi - lo) or 1.0
            step = t[1] - t[0] if len(t) > 1 else 1.0
            for j, b in enumerate(bands):
                a = np.asarray(e["attributions"][b])
                centres = (np.arange(len(a)) + 0.5) * len(trace) / len(a) * step
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
                ax.text(-1.5 * step, yrow, b, ha="right", va="center", fontsize=7)
            ax.set_xlim(-6 * step, t[-1] + step)
            ax.set_yticks([lo, hi], [f"{lo:.2g}", f"{hi:.2g}"])
            ax.set_ylabel("clathrin\n(normalised)")
            kind = "recruits auxilin (aux+)" if e["aux_positive"] else "no auxilin (aux−)"
            y = f"{e['y']:.2f}" if e.get("y") is not None else "n/a"
            ax.set_title(
                f"{kind}, {e['cell']}: auxilin signal {y}, LSTM {e['teacher']:.2f} (z-scored)",
                fontsize=8.5,
            )
            if row == n_rows - 1:
                ax.set_xlabel(xlabel)
    fig.suptitle("clathrin trace (black) and, per scale, each coefficient's attribution")
    return fig


def fig_importance(run_dir: str | Path, timescale_: Timescale | None = None) -> Figure:
    """Importance of each scale: the teacher's attributions and the students' weights."""
    imp = _read_json(Path(run_dir), "importance.json")
    bands = imp["bands"]
    series = [(k, imp[k]) for k in ("teacher_awd", "teacher_db5", "student_awd", "student_db5")]
    series = [(k, v) for k, v in series if v]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    width = 0.8 / max(len(series), 1)
    labels = {
        "teacher_awd": "LSTM attribution, AWD wavelet",
        "teacher_db5": "LSTM attribution, db5",
        "student_awd": "AWD student (|w| × SD)",
        "student_db5": "db5 student (|w| × SD)",
    }
    for i, (key, values) in enumerate(series):
        ax.bar(
            np.arange(len(bands)) + (i - (len(series) - 1) / 2) * width,
            [values[b] for b in bands],
            width,
            label=labels[key],
        )
    ts = timescale_ or Timescale(40)
    ax.set_xticks(np.arange(len(bands)))
    ax.set_xticklabels([f"{b}\n{ts.band_words(b).replace(' ≈ ', chr(10) + '≈ ')}" for b in bands])
    ax.set_ylabel("share of importance")
    ax.set_xlabel(
        "scale, coarse to fine" + (" (seconds for the median test track)" if ts.sample_s else "")
    )
    ax.legend(fontsize=7)
    return fig


def fig_pred_vs_true(run_dir: str | Path) -> Figure:
    """Predicted against true auxilin (regression outcome) on the test cells."""
    pred = pd.read_csv(Path(run_dir) / "predictions.csv")
    methods = [m for m in ("awd", "teacher", "db5", "awd_xgboost") if f"pred_{m}" in pred]
    fig, axes = plt.subplots(1, max(len(methods), 1), figsize=(3.0 * len(methods), 3.4))
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
        ax.set_title(f"{NAMES[m].replace(' · ', chr(10))}\nR² {r2:.3f}", fontsize=8.5)
        ax.set_xlabel("true auxilin signal (z-scored)")
    axes[0].set_ylabel("predicted")
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
        ax.plot(x, g["cv_score"], marker="o", label=f"λ = {lam:g}")
        zero = g[g["gamma"] == 0]
        if not zero.empty:
            ax.axhline(
                float(zero["cv_score"].iloc[0]), ls=":", lw=0.8, color=ax.lines[-1].get_color()
            )
    db5 = sel[sel["wavelet"] == "db5"]
    if not db5.empty:
        ax.axhline(float(db5["cv_score"].iloc[0]), color="k", ls="--", lw=1, label="db5")
    ax.set_xscale("log")
    ax.set_xlabel("γ, attribution penalty (dotted: γ = 0)")
    ax.set_ylabel("CV R² (grouped by cell)")
    ax.legend(fontsize=7)
    return fig


FIGURES = {
    "results": lambda run_dir: fig_results(
        results_rows(read_metrics(run_dir), _read_json(Path(run_dir), "methods.json"))
    ),
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
        # A tie is a tie for "≥" too: within its paired noise it is not shown reached.
        word = words[verdict(diff, sd, greater_is_better=True)]
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
    if "hand_features_xgboost" in set(metrics["method"]):
        lines.append(
            "- `hand_features_xgboost`: xgboost on the three hand features, its size and "
            "depth chosen by the same grouped CV. On the real data set, gradient boosting on "
            "(many more) hand features reached R² 0.268 against the LSTM's 0.237 (the "
            "reference's own results)."
        )
    if "hand_shape_xgboost" in set(metrics["method"]):
        lines.append(
            "- `hand_shape_xgboost`: the same three hand features plus four shape ratios of "
            "each raw track (the mean of its first 3 frames, of frames −6 to −4, of its "
            "last 3 frames and of the whole track, each over its peak: an abrupt end at "
            "scission against a fade), xgboost chosen by the same grouped CV."
        )
    lines.append(
        "- Binary outcome (`y_consec_thresh`): students are logistic regressions / xgboost "
        "on the wavelets distilled from the regression teacher; the `teacher` row is a "
        "separate LSTM trained with BCE."
    )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the answer

_METRIC_ORDER = (("r2", "R²"), ("auc", "AUC"), ("f1", "F1"), ("accuracy", "accuracy"))


def results_rows(
    metrics: pd.DataFrame, info: dict, headline_methods: set[str] | None = None
) -> pd.DataFrame:
    """One row per method, grouped: name, group, every metric and SD, size, time.

    ``metrics`` is a run's ``metrics.csv``, ``info`` its ``methods.json`` (compression
    rates); ``highlight`` marks ``headline_methods`` (default the teacher, AWD, db5, the
    best baseline and the training mean).
    """
    if headline_methods is None:
        headline_methods = _headline_methods(metrics)
    methods = sorted(dict.fromkeys(metrics["method"]), key=lambda m: GROUPS.index(method_group(m)))
    rows = []
    for m in methods:
        row: dict[str, Any] = {
            "group": method_group(m),
            "label": NAMES.get(m, m),
            "method": m,
            "highlight": m in headline_methods,
        }
        for metric, _ in _METRIC_ORDER:
            row[metric] = _value(metrics, m, metric)
            row[f"{metric}_sd"] = _value(metrics, m, metric, "sd")
        reg = info.get("methods", {}).get(m, {}).get("regression", {})
        rate = reg.get("compression_rate")
        row["compression_rate"] = float("nan") if rate is None else float(rate)
        sub = metrics[metrics["method"] == m]
        row["n_parameters"] = float(sub["n_parameters"].iloc[0]) if len(sub) else float("nan")
        row["seconds_per_trace"] = float(sub["seconds_per_item"].iloc[0]) if len(sub) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def fig_results(rows: pd.DataFrame) -> Figure:
    """R² and AUC of every method on the test cells: dots with ±1 bootstrap SD."""
    panels = [(m, label) for m, label in (("r2", "R²"), ("auc", "AUC")) if rows[m].notna().any()]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(3.0 + 3.4 * len(panels), 1.2 + 0.32 * len(rows)), sharey=True,
        squeeze=False,
    )  # fmt: skip
    what = {"r2": "auxilin signal", "auc": "recruited or not"}
    for i, (metric, label) in enumerate(panels):
        plot_estimates(
            axes[0, i],
            rows["label"].tolist(),
            rows[metric].tolist(),
            rows[f"{metric}_sd"].tolist(),
            groups=rows["group"].tolist(),
            highlight=rows["highlight"].tolist(),
            xlabel=f"test {label} ({what[metric]})",
            show_labels=i == 0,
        )
    return fig


def _best_baseline(metrics: pd.DataFrame) -> str | None:
    """The baseline with the highest test R²: the strongest competitor, reported only."""
    scores = {
        m: _value(metrics, m, "r2")
        for m in dict.fromkeys(metrics["method"])
        if method_group(m) == GROUPS[3] and math.isfinite(_value(metrics, m, "r2"))
    }
    return max(scores, key=scores.__getitem__) if scores else None


def _est(metrics: pd.DataFrame, method: str, metric: str) -> str:
    return format_estimate(_value(metrics, method, metric), _value(metrics, method, metric, "sd"))


def _answer(metrics: pd.DataFrame, comparisons: pd.DataFrame, info: dict) -> str:
    split = info.get("split", {})
    methods = set(metrics["method"])
    test_cells = ", ".join(split.get("test_cells", [])) or "the test cells"
    n_train_cells = len(split.get("train_cells", []))
    text = [
        f"On {split.get('n_test', '?'):,} test traces from the held-out cells ({test_cells}), "
        f"the AWD student ({NAMES['awd']}, chosen by cross-validation grouped by cell on the "
        f"{n_train_cells} training cells) reaches R² {_est(metrics, 'awd', 'r2')}; the LSTM "
        f"teacher {_est(metrics, 'teacher', 'r2')}. Against the teacher: "
        f"{paired_words(*_paired(comparisons, 'awd', 'teacher'), True)}."
    ]
    if "db5" in methods:
        text.append(
            f"With db5 in place of the learned wavelet the same student reaches "
            f"{_est(metrics, 'db5', 'r2')}; AWD against it: "
            f"{paired_words(*_paired(comparisons, 'awd', 'db5'), True)}."
        )
    best = _best_baseline(metrics)
    if best is not None:
        sentence = (
            f"The best baseline, {NAMES.get(best, best)}, reaches {_est(metrics, best, 'r2')}"
        )
        if not comparisons[(comparisons.a == "awd") & (comparisons.b == best)].empty:
            sentence += (
                f"; AWD against it: {paired_words(*_paired(comparisons, 'awd', best), True)}"
            )
        text.append(sentence + f". The training mean: {_est(metrics, 'train_mean', 'r2')}.")
    if math.isfinite(_value(metrics, "awd", "auc")):
        text.append(
            f"Recruited or not (AUC): AWD {_est(metrics, 'awd', 'auc')}, teacher "
            f"{_est(metrics, 'teacher', 'auc')}, db5 {_est(metrics, 'db5', 'auc')}; AWD "
            f"against the teacher: "
            f"{paired_words(*_paired(comparisons, 'awd', 'teacher', 'auc'), True)}."
        )
    t_awd = _value(metrics, "awd", "r2", "seconds_per_item")
    t_lstm = _value(metrics, "teacher", "r2", "seconds_per_item")
    n_awd = _value(metrics, "awd", "r2", "n_parameters")
    n_lstm = _value(metrics, "teacher", "r2", "n_parameters")
    if all(math.isfinite(v) and v > 0 for v in (t_awd, t_lstm, n_awd, n_lstm)):
        text.append(
            f"The student takes {1e6 * t_awd:.2g} µs per trace against the LSTM's "
            f"{1e6 * t_lstm:.2g} µs (end to end, one thread; {t_lstm / t_awd:.1f}× faster) "
            f"and stores {int(n_awd):,} parameters against the LSTM's {int(n_lstm):,}."
        )
    text.append(
        "(R² and AUC ± bootstrap SD over the test traces; a paired difference over the same "
        "traces counts only beyond 2 paired SD.)"
    )
    return " ".join(text)


def _shares_words(shares: dict[str, float], ts: Timescale, n: int = 3) -> str:
    top = sorted(shares.items(), key=lambda kv: -kv[1])[:n]
    parts = [f"{100 * v:.0f} % on {b} ({ts.band_words(b)})" for b, v in top]
    return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]


def scales_sentences(importance: dict | None, ts: Timescale) -> list[str]:
    """Which timescales the teacher and the student use, in seconds (and samples)."""
    sentences = [ts.sentence()]
    if not importance:
        return sentences
    if importance.get("teacher_awd"):
        sentences.append(
            "The LSTM's attribution (input × gradient through the AWD wavelet) lies "
            f"{_shares_words(importance['teacher_awd'], ts)}."
        )
    if importance.get("student_awd"):
        sentences.append(
            "The AWD student's weight (|coefficient| × feature SD) lies "
            f"{_shares_words(importance['student_awd'], ts)}."
        )
    return sentences


def _warnings(metrics: pd.DataFrame, info: dict, ev: Path) -> list[str]:
    out = []
    who = {"awd": f"The AWD student ({NAMES['awd']})", "teacher": "The LSTM teacher"}
    for method in ("awd", "teacher"):
        for metric, label in (("r2", "R²"), ("auc", "AUC")):
            v, t = _value(metrics, method, metric), _value(metrics, "train_mean", metric)
            if math.isfinite(v) and math.isfinite(t) and v < t:
                trivial = _est(metrics, "train_mean", metric)
                out.append(
                    f"{who[method]} is worse than the training mean on {label}: "
                    f"{_est(metrics, method, metric)} against {trivial}."
                )
    split = info.get("split", {})
    n_train, cells = int(split.get("n_train", 0)), len(split.get("train_cells", []))
    if n_train < MIN_SELECTION_ITEMS or cells < 3:
        out.append(
            f"The students were chosen by cross-validation over {cells} training cells "
            f"({n_train} traces): too few to select on; the choice of wavelet and xgboost "
            "settings is within noise. Use more cells."
        )
    path = ev / "wavelets" / "awd.safetensors"
    if path.exists():
        change = filter_change(load_transform(path).wavelet.h0.detach().numpy(), "db5")
        if math.isfinite(change) and change < BARELY_MOVED:
            out.append(
                f"The learned filter moved from db5 by only {change:.1e} (relative L2 "
                "distance of h0): the AWD student reads practically db5's coefficients, so "
                "AWD and db5 cannot differ here (the wavelet figure draws the difference)."
            )
    return out


def _verdict(metrics: pd.DataFrame, comparisons: pd.DataFrame) -> str:
    line = (
        f"molecular partner: the AWD student ({NAMES['awd']}) has test R² "
        f"{_est(metrics, 'awd', 'r2')} against the LSTM's {_est(metrics, 'teacher', 'r2')}, "
        f"{paired_words(*_paired(comparisons, 'awd', 'teacher'), True)}"
    )
    if "db5" in set(metrics["method"]):
        line += (
            f"; against db5 with the same student, "
            f"{paired_words(*_paired(comparisons, 'awd', 'db5'), True)}"
        )
    return line + "."


def _headline_methods(metrics: pd.DataFrame) -> set[str]:
    best = _best_baseline(metrics)
    return {"teacher", "awd", "db5", "train_mean"} | ({best} if best else set())


def _headline(ev: Path, ts: Timescale) -> Headline:
    metrics = read_metrics(ev)
    comparisons = _comparisons(ev)
    info = _read_json(ev, "methods.json")
    importance = (
        json.loads((ev / "importance.json").read_text())
        if (ev / "importance.json").exists()
        else None
    )
    chosen = _headline_methods(metrics)
    rows = results_rows(metrics, info)
    table = [
        {
            "method": r.label,
            "R²": format_estimate(r.r2, r.r2_sd),
            "AUC": format_estimate(r.auc, r.auc_sd),
        }
        for r in rows.itertuples()
        if r.method in chosen
    ]
    return Headline(
        domain="molecular-partner",
        verdict=_verdict(metrics, comparisons),
        answer=_answer(metrics, comparisons, info),
        scales=" ".join(scales_sentences(importance, ts)),
        warnings=_warnings(metrics, info, ev),
        table=table,
    )


def headline(run_dir: str | Path) -> Headline:
    """What an evaluated molecular-partner run found: verdict, answer, scales, warnings.

    Reads ``RUN/evaluate/`` and the test tracks' lifetimes from the run's data set; the
    report opens with it and ``awd molecular-partner evaluate`` prints it.

    Examples
    --------
    >>> # print(headline("runs/mp/run").answer)
    """
    run = RunDir.open(run_dir, DOMAIN)
    length = _trace_length(run.root / "evaluate")
    return _headline(run.root / "evaluate", timescale(lifetimes_of_test_tracks(run), length))


def _trace_length(ev: Path) -> int:
    path = ev / "examples.json"
    if path.exists():
        examples = json.loads(path.read_text()).get("examples", [])
        if examples:
            return len(examples[0]["trace"])
    return 40


def _table(rows: pd.DataFrame, metrics: tuple[str, ...] = ("r2", "auc")) -> pd.DataFrame:
    out = pd.DataFrame({"group": rows["group"], "highlight": rows["highlight"]})
    out["method"] = rows["label"]
    for metric, label in _METRIC_ORDER:
        if metric not in metrics:
            continue
        out[label] = [
            format_estimate(v, sd) for v, sd in zip(rows[metric], rows[f"{metric}_sd"], strict=True)
        ]
    out["compression rate"] = [
        "–" if not math.isfinite(v) else f"{v:.3f}" for v in rows["compression_rate"]
    ]
    out["parameters"] = [
        "–" if not math.isfinite(v) else f"{int(v):,}" for v in rows["n_parameters"]
    ]
    out["µs / trace"] = [
        "–" if not math.isfinite(v) else f"{1e6 * v:.2g}" for v in rows["seconds_per_trace"]
    ]
    return out


CAPTIONS = {
    "results": "Test R² (auxilin signal) and AUC (recruited or not) of every method, ±1 "
    "bootstrap SD over the test traces; filled: the rows of the answer above.",
    "importance": "Which timescales matter: the share of the LSTM's attribution per scale "
    "(what the teacher uses) and of the students' weights (what the distilled model uses), "
    "with each scale's duration for the median test track.",
    "wavelets": "The learned wavelets against db5: φ, ψ and the difference of the lowpass "
    "filters, Δh0 (φ and ψ overlap when the filter barely moved; Δh0 shows by how much).",
    "examples": "Example recruiting (left) and non-recruiting (right) test traces; under "
    "each trace, one row per scale (cA4 coarsest, cD1 finest): every coefficient's "
    "contribution to the LSTM's prediction (red raises it, blue lowers it), placed at the "
    "time it covers.",
    "pred_vs_true": "Predicted against true auxilin signal on the held-out cells.",
    "selection": "Selection: grouped-CV R² of the OLS student along the γ path (training "
    "cells only).",
}


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write the PNGs, ``report.html`` (self-contained), ``headline.json`` and ``results.md``.

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
    info = _read_json(ev, "methods.json")
    markdown = results_markdown(ev)
    atomic_write(out / "results.md", lambda p: p.write_text(markdown))
    lifetimes = lifetimes_of_test_tracks(run)
    ts = timescale(lifetimes, _trace_length(ev))
    head = _headline(ev, ts)
    importance = (
        json.loads((ev / "importance.json").read_text())
        if (ev / "importance.json").exists()
        else None
    )
    rows = results_rows(metrics, info, _headline_methods(metrics))
    makers = {
        "results": lambda: fig_results(rows),
        "importance": lambda: fig_importance(ev, ts),
        "wavelets": lambda: fig_wavelets(ev, ts),
        "examples": lambda: fig_examples(ev, lifetimes),
        "pred_vs_true": lambda: fig_pred_vs_true(ev),
        "selection": lambda: fig_selection(ev),
    }
    answer = Section("").paragraph(head.answer, css="answer")
    for w in head.warnings:
        answer.warning(f"Warning: {w}")
    answer.paragraph("Which timescales matter:")
    answer.bullets(scales_sentences(importance, ts))
    split = info.get("split", {})
    results = Section("Results (held-out cells)")
    results.figure("results", makers["results"], CAPTIONS["results"])
    results.table(
        _table(rows),
        caption="Value ± bootstrap SD over the test traces; bold: the rows of the answer; "
        "prediction time per trace end to end (one thread). F1 and accuracy: the appendix.",
        group="group",
        highlight="highlight",
        legend=LEGEND,
    )
    results.paragraph(
        f"Split by cell: training cells {', '.join(split.get('train_cells', []))} "
        f"({split.get('n_train', '?'):,} traces), test cells "
        f"{', '.join(split.get('test_cells', []))} ({split.get('n_test', '?'):,} traces). "
        "Selection by cross-validation grouped by cell on the training cells only; the test "
        "cells are scored once."
    )
    figures = Section("Figures")
    for name in ("importance", "wavelets", "examples", "pred_vs_true", "selection"):
        figures.figure(name, makers[name], CAPTIONS[name])
    appendix = Section("Appendix").details(
        "All metrics of every method, grouped (F1 and accuracy of the binary outcome too)",
        Section("").table(
            _table(rows, tuple(m for m, _ in _METRIC_ORDER)),
            caption="Value ± bootstrap SD over the test traces.",
            group="group",
            highlight="highlight",
        ),
    )
    appendix.details(
        "All metrics (one row per method, outcome and metric)",
        Section("").table(
            metrics.assign(
                method=[NAMES.get(m, m) for m in metrics["method"]],
                value=[format_estimate(v) for v in metrics["value"]],
                sd=[format_estimate(v) for v in metrics["sd"]],
            )[["method", "target", "metric", "value", "sd", "n_test", "n_parameters"]]
        ),
    )
    path = write_page(
        out,
        "Which timescales of the clathrin trace predict auxilin recruitment?",
        [answer, results, figures, appendix],
        headline=head,
    )
    logger.debug("report written to %s", path)
    return path
