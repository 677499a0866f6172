"""Plots shared by the domain reports and the figures.

Every function draws on a given (or new) matplotlib ``Axes`` and returns it; none trains
or loads anything, so figures stay pure functions of saved results.

- :func:`plot_wavelet`: scaling function φ and wavelet ψ, against a pywt reference;
- :func:`plot_filter_delta`: the taps of learned filters minus the reference's (Δh0),
  which shows a difference that φ and ψ, drawn on top of each other, cannot;
- :func:`plot_estimates`: a dot-and-error-bar plot of one score per method, in groups;
- :func:`plot_attribution_by_band`, :func:`plot_grid_heatmap`.
"""

from __future__ import annotations

import io
from base64 import b64encode
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from shared.wavelet import LearnableWavelet

__all__ = [
    "figure_to_base64",
    "filter_change",
    "plot_attribution_by_band",
    "plot_estimates",
    "plot_filter_delta",
    "plot_grid_heatmap",
    "plot_wavelet",
    "plt",
]

#: The x label of φ and ψ: the cascade grid is in samples of the finest scale.
SUPPORT_LABEL = "support (samples of the finest scale)"


def plot_wavelet(
    wavelet: LearnableWavelet,
    reference: str | None = "db5",
    *,
    level: int = 6,
    axes: Sequence[Axes] | None = None,
    label: str = "learned",
    xlabel: str = SUPPORT_LABEL,
    style: str | tuple[float, tuple[float, ...]] = "-",
    color: str | None = None,
) -> Sequence[Axes]:
    """Scaling function φ and wavelet ψ of ``wavelet``, with a pywt reference.

    Parameters
    ----------
    wavelet : LearnableWavelet
        The (learned) wavelet.
    reference : str, optional
        A pywt orthogonal wavelet drawn dashed grey for comparison; ``None`` for none.
    level : int
        Cascade refinement level.
    axes : pair of Axes, optional
        Where to draw φ and ψ; a new 1x2 figure by default.
    label : str
        Legend label of the learned wavelet.
    xlabel : str
        Label of both x axes (the support's unit).
    style, color : str, optional
        Line style and colour of the learned wavelet.

    Examples
    --------
    >>> axes = plot_wavelet(LearnableWavelet("db5", noise=0.05, seed=0))
    >>> [a.get_title() for a in axes]
    ['scaling function φ', 'wavelet ψ']
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(8, 3))
    curves: list[tuple[LearnableWavelet, str, Any, str | None]] = []
    if reference is not None:
        ref = LearnableWavelet(reference)
        curves.append((ref, reference, "--", "0.45"))
    curves.append((wavelet, label, style, color))
    for w, name, ls, col in curves:
        phi, psi, x = (t.detach().cpu().numpy() for t in w.wavefun(level))
        axes[0].plot(x, phi, ls=ls, color=col, label=name)
        axes[1].plot(x, psi, ls=ls, color=col, label=name)
    axes[0].set_title("scaling function φ")
    axes[1].set_title("wavelet ψ")
    for ax in axes:
        ax.axhline(0, color="0.85", lw=0.6, zorder=0)
        ax.set_xlabel(xlabel)
    axes[0].legend()
    return axes


def filter_change(h0: Sequence[float] | np.ndarray, reference: str = "db5") -> float:
    """Relative L2 distance ``‖h0 − h0_ref‖ / ‖h0_ref‖`` of a lowpass filter to a pywt one.

    NaN when the lengths differ.

    Examples
    --------
    >>> ref = LearnableWavelet("db5").h0.detach().numpy()
    >>> filter_change(ref), round(filter_change(ref * 1.01), 4)
    (0.0, 0.01)
    """
    h = np.asarray(h0, dtype=np.float64)
    ref = LearnableWavelet(reference).h0.detach().numpy()
    if h.shape != ref.shape:
        return float("nan")
    return float(np.linalg.norm(h - ref) / np.linalg.norm(ref))


def plot_filter_delta(
    wavelets: Mapping[str, np.ndarray | Sequence[float]],
    reference: str = "db5",
    *,
    ax: Axes | None = None,
    colors: Mapping[str, str] | None = None,
) -> Axes:
    """The taps of learned lowpass filters minus the reference's: Δh0 per tap.

    Learned filters that stayed close to their start draw φ and ψ on top of the
    reference's; their difference is what shows whether and where they moved. Each legend
    entry gives the relative L2 distance (:func:`filter_change`); ``colors`` maps labels to
    colours (default the cycle in order).

    Examples
    --------
    >>> h = LearnableWavelet("db5", noise=0.01, seed=0).h0.detach().numpy()
    >>> ax = plot_filter_delta({"AWD": h})
    >>> ax.get_ylabel()
    'h0 − h0(db5)'
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 3))
    ref = LearnableWavelet(reference).h0.detach().numpy()
    n = len(wavelets)
    width = 0.7 / max(n, 1)
    for i, (label, h0) in enumerate(wavelets.items()):
        h = np.asarray(h0, dtype=np.float64)
        if h.shape != ref.shape:
            continue
        taps = np.arange(len(h)) + (i - (n - 1) / 2) * width
        dist = filter_change(h, reference)
        color = (colors or {}).get(label, f"C{i}")
        ax.vlines(taps, 0, h - ref, lw=1.2, color=color)
        ax.plot(taps, h - ref, "o", ms=3.5, color=color, label=f"{label}: ‖Δh0‖/‖h0‖ = {dist:.1e}")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xticks(range(len(ref)))
    ax.set_xlabel("filter tap")
    ax.set_ylabel(f"h0 − h0({reference})")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    # Below the axes: the stems fill the plot area, the exponent sits above it.
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.2), borderaxespad=0.0)
    return ax


def plot_estimates(
    ax: Axes,
    labels: Sequence[str],
    values: Sequence[float],
    sds: Sequence[float],
    *,
    groups: Sequence[str] | None = None,
    highlight: Sequence[bool] | None = None,
    xlabel: str = "",
    k: float = 1.0,
    show_labels: bool = True,
) -> Axes:
    """A dot-and-error-bar plot: one row per method, top to bottom, ``±k`` SD bars.

    Rows of one group are drawn in one colour and separated from the next group by a thin
    line; ``highlight`` draws a row's dot filled (others hollow).

    Examples
    --------
    >>> fig, ax = plt.subplots()
    >>> ax = plot_estimates(ax, ["teacher", "AWD"], [0.3, 0.29], [0.01, 0.02],
    ...                     groups=["teacher", "AWD students"], xlabel="R²")
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['teacher', 'AWD']
    >>> plt.close(fig)
    """
    n = len(labels)
    groups = list(groups) if groups is not None else [""] * n
    highlight = list(highlight) if highlight is not None else [True] * n
    order = list(dict.fromkeys(groups))
    y = np.arange(n)[::-1]
    for i in range(n):
        color = f"C{order.index(groups[i]) % 8}"
        v, s = float(values[i]), float(sds[i])
        err = None if not np.isfinite(s) else k * s
        ax.errorbar(
            v,
            y[i],
            xerr=err,
            fmt="o",
            color=color,
            mfc=color if highlight[i] else "white",
            ms=5,
            capsize=2.5,
            lw=1.2,
        )
    for i in range(1, n):
        if groups[i] != groups[i - 1]:
            ax.axhline(y[i] + 0.5, color="0.8", lw=0.6)
    if show_labels:
        ax.set_yticks(y, labels)
        for tick, g in zip(ax.get_yticklabels(), groups, strict=True):
            tick.set_color(f"C{order.index(g) % 8}")
    else:
        # A panel beside the labelled one (often sharing its y axis): ticks, no labels.
        ax.set_yticks(y)
        ax.tick_params(labelleft=False)
    ax.set_ylim(-0.6, n - 0.4)
    # Few ticks: RMSE-like values with four decimals collide when matplotlib picks eight.
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.grid(axis="x", color="0.92", lw=0.6)
    ax.set_axisbelow(True)
    ax.set_xlabel(xlabel)
    return ax


def plot_attribution_by_band(
    shares: dict[str, float], *, ax: Axes | None = None, title: str = "attribution share"
) -> Axes:
    """Bar chart of the share of attribution mass per band (e.g. ``{"cA4": 0.1, ...}``).

    Examples
    --------
    >>> ax = plot_attribution_by_band({"cA2": 0.2, "cD2": 0.5, "cD1": 0.3})
    >>> len(ax.patches)
    3
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    names = list(shares)
    ax.bar(range(len(names)), [shares[n] for n in names], color="C0")
    ax.set_xticks(range(len(names)), names, rotation=45)
    ax.set_ylabel("share of |attribution|")
    ax.set_ylim(0, max(1e-12, max(shares.values())) * 1.15)
    ax.set_title(title)
    return ax


def plot_grid_heatmap(
    ax: Axes,
    lambdas: Sequence[float],
    gammas: Sequence[float],
    scores: Sequence[float],
    *,
    higher_is_better: bool = True,
    best: tuple[float, float] | None = None,
    label: str = "validation score",
    annotate: bool = True,
):
    """A lambda x gamma heatmap of one score per grid point; returns the colour bar.

    The better end of the scale is always yellow; ``best`` (lambda, gamma) is starred and
    each cell prints its score when ``annotate``.

    Examples
    --------
    >>> fig, ax = plt.subplots()
    >>> bar = plot_grid_heatmap(ax, [0.1, 0.1, 1.0], [0.0, 1.0, 0.0], [0.5, 0.7, 0.6])
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['0.1', '1']
    >>> plt.close(fig)
    """
    lams, gams = sorted(set(lambdas)), sorted(set(gammas))
    grid = np.full((len(lams), len(gams)), np.nan)
    for lam, gam, score in zip(lambdas, gammas, scores, strict=True):
        grid[lams.index(lam), gams.index(gam)] = score
    image = ax.imshow(grid, cmap="viridis" if higher_is_better else "viridis_r", aspect="auto")
    if annotate:
        for i, j in zip(*np.nonzero(np.isfinite(grid)), strict=True):
            # White on the dark half of the colour map, black on the light half.
            shade = float(np.asarray(image.norm(grid[i : i + 1, j])).item())
            dark = shade < 0.5 if higher_is_better else shade > 0.5
            ax.text(j, i, f"{grid[i, j]:.3g}", ha="center", va="center", fontsize=6,
                    color="w" if dark else "k")  # fmt: skip
    if best is not None:
        ax.plot(gams.index(best[1]), lams.index(best[0]), "r*", markersize=12)
    ax.set_xticks(range(len(gams)), [f"{g:.3g}" for g in gams], rotation=45)
    ax.set_yticks(range(len(lams)), [f"{v:.3g}" for v in lams])
    ax.set_xlabel("γ (attribution penalty)")
    ax.set_ylabel("λ (sparsity penalty)")
    return ax.figure.colorbar(image, ax=ax, label=label)


def figure_to_base64(fig: Figure, dpi: int = 100) -> str:
    """PNG of a figure as a base64 string, for self-contained HTML reports.

    Examples
    --------
    >>> fig, _ = plt.subplots()
    >>> figure_to_base64(fig)[:8]
    'iVBORw0K'
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return b64encode(buffer.getvalue()).decode("ascii")
