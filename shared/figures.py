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
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from shared.plots import plot_grid_heatmap, plot_wavelet
from shared.runs import atomic_write, load_transform, write_csv

__all__ = [
    "STYLE",
    "FigureReport",
    "cells_figure",
    "heatmap_figure",
    "make_core_figures",
    "save_figure",
    "style",
    "table_figure",
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
        absent = [str(p) for p in needs if not p.exists()]
        if absent:
            self.missing.append(f"{what}: missing {', '.join(absent)}")
            logger.warning("skipping %s: missing %s", what, ", ".join(absent))
            return
        self.written.extend(builder())


def _simulation_figures(run: Path, out: Path) -> list[Path]:
    metrics = json.loads((run / "metrics.json").read_text())
    transform = load_transform(run / "wavelet")
    with style():
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
        plot_wavelet(transform.wavelet, "db5", axes=axes[:2], label="AWD (learned)")
        labels = ["distance to db5", "share on planted level"]
        start = [metrics["distance_init"], metrics["attribution_mass_init"]]
        end = [metrics["distance_final"], metrics["attribution_mass_final"]]
        x = range(len(labels))
        axes[2].bar([i - 0.2 for i in x], start, width=0.4, label="start (perturbed db5)")
        axes[2].bar([i + 0.2 for i in x], end, width=0.4, label="after AWD")
        axes[2].set_xticks(list(x), labels)
        axes[2].legend(frameon=False, fontsize="small")
        axes[2].set_title("simulation experiment")
        fig.tight_layout()
        rows = [
            {"quantity": lab, "start": s, "end": e}
            for lab, s, e in zip(labels, start, end, strict=True)
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
) -> list[Path]:
    """A lambda x gamma heatmap of ``table[value]`` (one row per grid point), numbers printed.

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
        fig, ax = plt.subplots(figsize=(1.5 + 0.8 * n_gam, 1.2 + 0.6 * n_lam))
        plot_grid_heatmap(
            ax,
            table[lam].tolist(),
            table[gamma].tolist(),
            table[value].tolist(),
            higher_is_better=higher_is_better,
            label=label,
        )
        ax.set_title(name)
        fig.tight_layout()
        return save_figure(fig, out, f"heatmap_{name}", table)


def _heatmap_figure(summary: Path, out: Path, name: str) -> list[Path]:
    table = pd.read_csv(summary)
    # A sweep's score may be better high (R²) or low (RMSE): the sweep recorded which.
    selected = json.loads(summary.with_name("selected.json").read_text())
    higher = bool(selected["greater_is_better"])
    return heatmap_figure(
        table,
        out,
        name,
        value="val_score",
        label="validation score",
        lam="l1_coeffs",
        gamma="l1_attr",
        higher_is_better=higher,
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
    wavelets: Mapping[str, Path], out: Path, name: str, reference: str = "db5"
) -> list[Path]:
    """phi/psi of saved wavelets (``{label: path}``) against ``reference``; CSV of the taps."""
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(8, 3))
        rows = []
        for i, (label, path) in enumerate(wavelets.items()):
            wavelet = load_transform(path).wavelet
            plot_wavelet(wavelet, reference if i == 0 else None, axes=axes, label=label)
            rows += [
                {"wavelet": label, "tap": k, "h0": float(v)}
                for k, v in enumerate(wavelet.h0.detach().tolist())
            ]
        fig.tight_layout()
        return save_figure(fig, out, name, rows)


def cells_figure(
    cells: pd.DataFrame, numbers: pd.DataFrame, out: Path, name: str, title: str
) -> list[Path]:
    """A table of formatted ``cells`` (index = row labels) drawn as a figure; CSV of ``numbers``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> cells = pd.DataFrame({"R²": ["0.29 (0.04)"]}, index=["awd"])
    >>> paths = cells_figure(cells, cells, pathlib.Path(tempfile.mkdtemp()), "t", "results")
    >>> paths[-1].name
    't.csv'
    """
    with style():
        fig, ax = plt.subplots(figsize=(1.8 + 1.6 * cells.shape[1], 0.6 + 0.28 * len(cells)))
        ax.axis("off")
        ax.table(
            cellText=cells.to_numpy().tolist(),
            rowLabels=[str(r) for r in cells.index],
            colLabels=[str(c) for c in cells.columns],
            loc="center",
        )
        ax.set_title(title)
        fig.tight_layout()
        return save_figure(fig, out, name, numbers)


def table_figure(
    metrics: Path, out: Path, name: str, *, index: str, columns: str, values: str, sd: str
) -> list[Path]:
    """A results table (``values (sd)`` per ``index`` row and ``columns`` column) as a figure."""
    table = pd.read_csv(metrics)
    wide = table.pivot_table(index=index, columns=columns, values=values, sort=False)
    spread = table.pivot_table(index=index, columns=columns, values=sd, sort=False)
    cells = pd.DataFrame(
        [
            [
                f"{wide.loc[r, c]:.4g} ({spread.loc[r, c]:.2g})" if pd.notna(wide.loc[r, c]) else ""
                for c in wide.columns
            ]
            for r in wide.index
        ],
        index=wide.index,
        columns=[str(c) for c in wide.columns],
    )
    return cells_figure(cells, wide.reset_index(), out, name, f"{values} (SD), test split")
