"""Paper figures rebuilt from saved run directories only (plotting never trains).

Every figure is written as PNG and PDF under the output folder together with a CSV of
the numbers it shows. A committed matplotlib style (``shared/style.mplstyle``) fixes the
look; PDFs are byte-stable: the creation date comes from ``SOURCE_DATE_EPOCH`` (0 when
unset) and no other varying metadata is written.

The core builds the figures it can read without domain knowledge (the simulation
experiment and every sweep's lambda x gamma heatmap); each domain adds its own through a
``make_figures(results: Path, out: Path, report: FigureReport)`` hook in its ``cli``
module, which builds through ``report.build`` (so missing inputs are named, not fatal).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from shared.plots import (
    SUPPORT_LABEL,
    plot_estimates,
    plot_filter_delta,
    plot_grid_heatmap,
    plot_wavelet,
)
from shared.runs import atomic_write, load_transform, write_csv
from shared.wavelet import LearnableWavelet

__all__ = [
    "STYLE",
    "FigureReport",
    "estimates_figure",
    "heatmap_figure",
    "make_core_figures",
    "save_figure",
    "style",
    "wavelet_figure",
]

logger = logging.getLogger(__name__)

#: The committed matplotlib style of every figure.
STYLE = Path(__file__).with_name("style.mplstyle")


@contextmanager
def style():
    """Context manager applying the committed figure style."""
    with plt.style.context(str(STYLE)):
        yield


def save_figure(fig, out: Path, name: str, rows: Iterable[Mapping] | pd.DataFrame) -> list[Path]:
    """Write ``name.png``, ``name.pdf`` (byte-stable) and ``name.csv`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = previous or "0"
    try:
        png, pdf, csv = out / f"{name}.png", out / f"{name}.pdf", out / f"{name}.csv"
        atomic_write(png, lambda p: fig.savefig(p, format="png", metadata={"Software": None}))
        atomic_write(
            pdf,
            lambda p: fig.savefig(p, format="pdf", metadata={"Creator": None, "Producer": None}),
        )
    finally:
        if previous is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
    write_csv(csv, records)
    plt.close(fig)
    return [png, pdf, csv]


class FigureReport:
    """What was built and what was missing (a missing input never stops the others)."""

    def __init__(self) -> None:
        self.written: list[Path] = []
        self.missing: list[str] = []

    def build(self, what: str, needs: list[Path], builder: Callable[[], list[Path]]) -> None:
        """Run ``builder`` when every file of ``needs`` exists; else, or when an input is
        unreadable (another format, a missing column), name it in ``missing``."""
        absent = [str(p) for p in needs if not p.exists()]
        if absent:
            self.missing.append(f"{what}: missing {', '.join(absent)}")
            logger.warning("skipping %s: missing %s", what, ", ".join(absent))
            return
        try:
            self.written.extend(builder())
        except (KeyError, ValueError) as err:
            self.missing.append(f"{what}: unreadable input ({type(err).__name__}: {err})")
            logger.warning("skipping %s: %s", what, err)


def _simulation_start(run: Path) -> LearnableWavelet | None:
    """The perturbed wavelet the experiment started from, rebuilt from its config."""
    import yaml

    path = run / "config.yaml"
    if not path.is_file():
        return None
    cfg = yaml.safe_load(path.read_text()) or {}
    if "init_noise" not in cfg:
        return None
    return LearnableWavelet(
        cfg.get("wavelet", "db5"), noise=float(cfg["init_noise"]), seed=cfg.get("seed", 0)
    )


def _before_after(ax, start: float, end: float, ylabel: str, title: str, fmt: str) -> None:
    bars = ax.bar([0, 1], [start, end], width=0.55, color=["C1", "C0"])
    ax.bar_label(bars, [format(start, fmt), format(end, fmt)], padding=2)
    ax.set_xticks([0, 1], ["start\n(perturbed db5)", "after AWD"])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_ylim(0, max(start, end) * 1.25 or 1.0)


def _simulation_figures(run: Path, out: Path) -> list[Path]:
    metrics = json.loads((run / "metrics.json").read_text())
    learned = load_transform(run / "wavelet").wavelet
    start = _simulation_start(run)
    level = metrics.get("planted_level")
    with style():
        fig, axd = plt.subplot_mosaic(
            [["phi", "phi", "psi", "psi", "delta", "delta"],
             ["dist", "dist", "dist", "share", "share", "share"]],
            figsize=(10.5, 5.6),
            height_ratios=[1.0, 0.8],
        )  # fmt: skip
        axes = [axd["phi"], axd["psi"]]
        plot_wavelet(learned, "db5", axes=axes, label="AWD (learned)", color="C0")
        filters = {"AWD (learned)": learned.h0.detach().numpy()}
        if start is not None:
            plot_wavelet(start, None, axes=axes, label="start (perturbed db5)", style=":",
                         color="C1")  # fmt: skip
            filters = {"start (perturbed db5)": start.h0.detach().numpy(), **filters}
        axes[0].legend()
        colors = {"AWD (learned)": "C0", "start (perturbed db5)": "C1"}
        plot_filter_delta(filters, "db5", ax=axd["delta"], colors=colors)
        # Each quantity on its own axis: a distance and a share have no common unit.
        _before_after(
            axd["dist"],
            metrics["distance_init"],
            metrics["distance_final"],
            "L2 distance of h0 to db5\n(min over shifts, sign flips)",
            "distance to the planted wavelet",
            ".3f",
        )
        _before_after(
            axd["share"],
            metrics["attribution_mass_init"],
            metrics["attribution_mass_final"],
            "share of |attribution|",
            f"attribution on the planted level{f' (j = {level})' if level else ''}",
            ".2f",
        )
        axd["share"].set_ylim(0, 1.05)
        labels = ["distance to db5", "share on planted level"]
        start_v = [metrics["distance_init"], metrics["attribution_mass_init"]]
        end_v = [metrics["distance_final"], metrics["attribution_mass_final"]]
        rows = [
            {"quantity": lab, "start": s, "end": e}
            for lab, s, e in zip(labels, start_v, end_v, strict=True)
        ]
        return save_figure(fig, out, "simulation_experiment", rows)


def heatmap_figure(
    table: pd.DataFrame,
    out: Path,
    name: str,
    *,
    value: str,
    label: str,
    lam: str = "lambda",
    gamma: str = "gamma",
    higher_is_better: bool = True,
    title: str | None = None,
) -> list[Path]:
    """A lambda x gamma heatmap of ``table[value]`` (one row per grid point), numbers printed.

    Written as ``heatmap_<name>``; ``title`` says what the grid is (default none).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> t = pd.DataFrame({"lambda": [0.1, 0.1], "gamma": [0.0, 1.0], "score": [0.5, 0.7]})
    >>> paths = heatmap_figure(t, pathlib.Path(tempfile.mkdtemp()), "h", value="score", label="R²")
    >>> [p.suffix for p in paths]
    ['.png', '.pdf', '.csv']
    """
    n_lam, n_gam = table[lam].nunique(), table[gamma].nunique()
    with style():
        fig, ax = plt.subplots(figsize=(2.4 + 0.8 * n_gam, 1.6 + 0.6 * n_lam))
        plot_grid_heatmap(
            ax,
            table[lam].tolist(),
            table[gamma].tolist(),
            table[value].tolist(),
            higher_is_better=higher_is_better,
            label=label,
        )
        if title:
            ax.set_title(title)
        return save_figure(fig, out, f"heatmap_{name}", table)


#: Titles of the sweeps ``awd figures`` knows by name.
_SWEEP_TITLES = {"simulation": "simulation experiment: λ × γ sweep"}
_METRIC_LABELS = {"r2": "R²", "rmse": "RMSE", "auc": "AUC", "accuracy": "accuracy"}


def _heatmap_figure(summary: Path, out: Path, name: str) -> list[Path]:
    table = pd.read_csv(summary)
    # A sweep's score may be better high (R²) or low (RMSE): the sweep recorded which.
    selected = json.loads(summary.with_name("selected.json").read_text())
    higher = bool(selected.get("greater_is_better", True))
    metric = next((k[len("test_") :] for k in selected if k.startswith("test_")), "")
    what = _METRIC_LABELS.get(metric, metric)
    label = f"validation {what} of the student" if what else "validation score"
    label += "\n(higher is better)" if higher else "\n(lower is better)"
    return heatmap_figure(
        table,
        out,
        name,
        value="val_score",
        label=label,
        lam="l1_coeffs",
        gamma="l1_attr",
        higher_is_better=higher,
        title=_SWEEP_TITLES.get(name, f"λ × γ sweep {name}"),
    )


def make_core_figures(results: Path, out: Path, report: FigureReport | None = None) -> FigureReport:
    """The simulation experiment and every sweep heatmap found under ``results``.

    Expects ``results/simulation/`` (a run of ``awd simulation run``) and sweep folders
    ``results/sweeps/NAME/summary.csv``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> rep = make_core_figures(pathlib.Path(tempfile.mkdtemp()), pathlib.Path(tempfile.mkdtemp()))
    >>> rep.written, len(rep.missing)
    ([], 2)
    """
    report = report or FigureReport()
    sim = results / "simulation"
    report.build(
        "simulation experiment",
        [sim / "metrics.json", sim / "wavelet.safetensors"],
        lambda: _simulation_figures(sim, out),
    )
    sweeps = sorted((results / "sweeps").glob("*/summary.csv"))
    if not sweeps:
        report.missing.append(f"λ×γ heatmaps: no {results / 'sweeps'}/*/summary.csv")
    for summary in sweeps:
        report.build(
            f"heatmap {summary.parent.name}",
            [summary, summary.with_name("selected.json")],
            functools.partial(_heatmap_figure, summary, out, summary.parent.name),
        )
    return report


# -- building blocks for the domains' figure hooks ---------------------------------------
def wavelet_figure(
    wavelets: Mapping[str, Path],
    out: Path,
    name: str,
    reference: str = "db5",
    xlabel: str = SUPPORT_LABEL,
) -> list[Path]:
    """φ/ψ of saved wavelets (``{label: path}``) against ``reference``, and their Δh0.

    The third panel draws each learned filter minus the reference (learned filters that
    barely moved draw φ and ψ on top of the reference's). CSV: the taps and their Δh0.
    """
    ref = LearnableWavelet(reference).h0.detach().numpy()
    with style():
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
        rows = []
        filters = {}
        for i, (label, path) in enumerate(wavelets.items()):
            wavelet = load_transform(path).wavelet
            plot_wavelet(
                wavelet,
                reference if i == 0 else None,
                axes=axes[:2],
                label=label,
                xlabel=xlabel,
                color=f"C{i}",
                style="-" if i == 0 else (0, (4, 2)),
            )
            h0 = wavelet.h0.detach().numpy()
            filters[label] = h0
            rows += [
                {
                    "wavelet": label,
                    "tap": k,
                    "h0": float(v),
                    f"h0_minus_{reference}": float(v - ref[k]) if len(h0) == len(ref) else None,
                }
                for k, v in enumerate(h0)
            ]
        plot_filter_delta(
            filters, reference, ax=axes[2], colors={k: f"C{i}" for i, k in enumerate(filters)}
        )
        return save_figure(fig, out, name, rows)


def estimates_figure(
    rows: pd.DataFrame,
    out: Path,
    name: str,
    panels: Sequence[tuple[str, str, str]],
    *,
    title: str = "",
    note: str = "",
) -> list[Path]:
    """Results as dots with ±1 SD bars: one panel per score, one row per method.

    Parameters
    ----------
    rows : DataFrame
        One row per method, top to bottom: ``label``, ``group`` (rows of a group share a
        colour), optional ``highlight`` (filled dot), and the columns ``panels`` name.
    out, name
        Where to write ``name.png``, ``.pdf`` and ``.csv`` (the CSV holds ``rows``).
    panels : sequence of (value column, SD column, axis label)
        One panel each, side by side, sharing the rows.
    title, note
        Figure title; a note under the panels (e.g. what is off the scale).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> rows = pd.DataFrame({"label": ["teacher", "AWD"], "group": ["teacher", "AWD"],
    ...                      "r2": [0.3, 0.29], "r2_sd": [0.01, 0.02]})
    >>> paths = estimates_figure(rows, pathlib.Path(tempfile.mkdtemp()), "res",
    ...                          [("r2", "r2_sd", "R² (test)")])
    >>> paths[0].suffix
    '.png'
    """
    n = len(rows)
    highlight = rows["highlight"].tolist() if "highlight" in rows else None
    with style():
        fig, axes = plt.subplots(
            1, len(panels), figsize=(2.2 + 3.0 * len(panels), 0.9 + 0.28 * n), sharey=True,
            squeeze=False,
        )  # fmt: skip
        for i, (value, sd, label) in enumerate(panels):
            plot_estimates(
                axes[0, i],
                rows["label"].tolist(),
                rows[value].tolist(),
                rows[sd].tolist(),
                groups=rows["group"].tolist(),
                highlight=highlight,
                xlabel=label,
                show_labels=i == 0,
            )
        if title:
            fig.suptitle(title)
        if note:
            fig.supxlabel(note, fontsize=8, color="0.3")
        return save_figure(fig, out, name, rows)
